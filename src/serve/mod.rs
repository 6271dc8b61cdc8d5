//! `cairn serve`: one long-running HTTP service for the endpoints that sit in front of
//! a registry and a cluster (the push hook, the admission webhook, `GET /healthz`).
//!
//! The server is hyper (HTTP/1.1) on tokio, with rustls for TLS. It serves plain HTTP
//! only on a loopback address; anywhere else it requires a certificate. Each request
//! gets a deadline for its header, its TLS handshake and its body; a body over
//! [`MAX_BODY`] is refused with 413 before it is read further. Endpoints are
//! [`Handler`]s, looked up in a route table by method and path and called on a blocking
//! thread with the body read whole, since they verify, pull and write the ledger. On
//! SIGTERM (or SIGINT) the listener closes, the requests in flight finish, and then every
//! handler's [`Handler::shutdown`] runs, so nothing is left half-recorded. Logs are one
//! JSON object per line on stderr ([`log`]); they never carry a request body or a secret.

pub mod admit;
pub mod events;

use crate::keys::{SigningKey, VerifyingKey};
use crate::ledger::LedgerStore;
use crate::registry::Client;
use crate::verify::Policy;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// The largest request body read (1 MiB, as the Kubernetes API server caps webhook
/// requests well below it); a larger one gets 413.
pub const MAX_BODY: usize = 1 << 20;

/// How long in-flight requests may take to finish after SIGTERM before the server
/// stops waiting for them.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);
/// How long a connection accepted before the drain, that has sent nothing yet, has to
/// begin its request.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(2);

/// One request, its body read whole (<= [`MAX_BODY`]).
pub struct Request {
    pub method: http::Method,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
}

/// A JSON answer.
pub struct Response {
    pub status: http::StatusCode,
    pub body: serde_json::Value,
}

impl Response {
    pub fn new(status: http::StatusCode, body: serde_json::Value) -> Response {
        Response { status, body }
    }
}

/// An endpoint. Called on a blocking thread (it may verify, pull, write the ledger).
pub trait Handler: Send + Sync {
    fn handle(&self, request: Request) -> Response;
    /// After the listener closed and in-flight requests finished (SIGTERM): finish or
    /// hand back queued work so nothing is half-recorded.
    fn shutdown(&self) {}
}

/// The endpoints, by method and path.
pub type Routes = HashMap<(http::Method, &'static str), Arc<dyn Handler>>;

/// Seconds since the Unix epoch, read by `main.rs` (the one clock): for entry times and
/// cache ages.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What every endpoint shares: where to record, with which key, what to trust, and
/// where the service runs.
pub struct Settings {
    pub ledger: Box<dyn LedgerStore>,
    /// Signs every entry the service records.
    pub ledger_key: SigningKey,
    /// Who records (`--identity`), with the key id, in every entry.
    pub identity: String,
    /// Keys trusted to sign attestations (`--key`).
    pub trusted: Vec<VerifyingKey>,
    pub policy: Policy,
    /// `sha256:<hex>` of the policy file, recorded with verdicts (none: the default
    /// policy).
    pub policy_sha256: Option<String>,
    /// The environment deployments go to (`--env`), and the cluster (`--cluster`).
    pub env: Option<String>,
    pub cluster: Option<String>,
    /// Pulls images to verify (plain HTTP to a loopback registry with `--insecure`).
    pub registry: Client,
    /// The shared secret registry notifications must carry (`--hook-secret-file`).
    pub hook_secret: Option<String>,
    pub clock: Clock,
}

impl Settings {
    /// The current time as entries carry it (RFC 3339 UTC).
    pub fn now_rfc3339(&self) -> String {
        crate::oci::time::rfc3339((self.clock)())
    }
}

/// How and where the server listens.
pub struct ServerOptions {
    pub listen: SocketAddr,
    /// Certificate chain and key files (PEM); required unless `listen` is loopback.
    pub tls: Option<TlsFiles>,
    /// The deadline for a request's header, for the TLS handshake, and for the body.
    pub request_timeout: Duration,
}

pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("refusing to serve plain HTTP on {address}, which is not a loopback address")]
    TlsRequired { address: SocketAddr },
    #[error("cannot read {path}: {source}")]
    TlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no {what} in PEM")]
    TlsPem { path: PathBuf, what: &'static str },
    #[error("the TLS certificate and key do not make a server configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the server's runtime: {0}")]
    Runtime(std::io::Error),
}

impl crate::diag::Diagnose for ServeError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            ServeError::TlsRequired { .. } => Some(
                "give --tls-cert and --tls-key, or listen on 127.0.0.1 (behind a TLS proxy)".into(),
            ),
            ServeError::Bind { .. } => {
                Some("is another service on that port? (`ss -ltnp` shows listeners)".into())
            }
            _ => None,
        }
    }
}

/// Writes one log line on stderr: `{"event": EVENT, ...fields}`. Never pass a request
/// body or a secret.
pub fn log(event: &str, fields: serde_json::Value) {
    let mut line = serde_json::Map::new();
    line.insert("event".to_string(), event.into());
    if let serde_json::Value::Object(fields) = fields {
        line.extend(fields);
    }
    // One write per line: concurrent requests' lines never interleave, and stderr,
    // unbuffered, is not written piece by piece as the value is formatted.
    let mut text = serde_json::Value::Object(line).to_string();
    text.push('\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
}

/// Serves `routes` until SIGTERM or SIGINT, then drains and shuts the handlers down.
/// Logs `listening` with the bound address first (port 0 picks a free one).
pub fn run(options: ServerOptions, routes: Routes) -> Result<(), ServeError> {
    let tls = match &options.tls {
        Some(files) => Some(tls_acceptor(files)?),
        None if options.listen.ip().is_loopback() => None,
        None => {
            return Err(ServeError::TlsRequired {
                address: options.listen,
            })
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let routes = Arc::new(routes);
    runtime.block_on(serve(options, tls, routes.clone()))?;
    for handler in unique_handlers(&routes) {
        handler.shutdown();
    }
    log("stopped", serde_json::json!({}));
    Ok(())
}

/// Each handler once, though it may serve several routes.
fn unique_handlers(routes: &Routes) -> Vec<&Arc<dyn Handler>> {
    let mut seen: Vec<&Arc<dyn Handler>> = Vec::new();
    for handler in routes.values() {
        if !seen.iter().any(|h| Arc::ptr_eq(h, handler)) {
            seen.push(handler);
        }
    }
    seen
}

fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ServeError::TlsFile {
            path: path.to_path_buf(),
            source,
        })
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(&files.cert)?)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(ServeError::TlsPem {
            path: files.cert.clone(),
            what: "certificate",
        });
    }
    let key =
        PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|_| ServeError::TlsPem {
            path: files.key.clone(),
            what: "private key",
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts connections until a termination signal, then waits (up to
/// [`DRAIN_DEADLINE`]) for the connections to finish their requests.
async fn serve(
    options: ServerOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
    routes: Arc<Routes>,
) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: options.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(ServeError::Runtime)?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeError::Runtime)?;
    log(
        "listening",
        serde_json::json!({"address": address.to_string(), "tls": tls.is_some()}),
    );
    // Every connection holds a receiver; the drain ends when all are dropped.
    let (stop, stopped) = watch::channel(false);
    let timeout = options.request_timeout;
    let spawn = |stream: tokio::net::TcpStream, peer: SocketAddr| {
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let tls = tls.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(stream, peer, routes, timeout, stopped).await,
                Some(acceptor) => {
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, peer, routes, timeout, stopped).await,
                        Ok(Err(e)) => log(
                            "tls_failed",
                            serde_json::json!({"peer": peer.to_string(), "error": e.to_string()}),
                        ),
                        Err(_) => log("tls_timeout", serde_json::json!({"peer": peer.to_string()})),
                    }
                }
            }
        });
    };
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    log("accept_failed", serde_json::json!({"error": e.to_string()}));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        spawn(stream, peer);
    }
    // Connections the kernel completed before the signal may already carry a request:
    // closing the listener over them would reset them, so they are served too.
    for (stream, peer) in pending_connections(listener) {
        spawn(stream, peer);
    }
    log("draining", serde_json::json!({}));
    let _ = stop.send(true);
    drop(stopped);
    if tokio::time::timeout(DRAIN_DEADLINE, stop.closed())
        .await
        .is_err()
    {
        log(
            "drain_timeout",
            serde_json::json!({"connections": stop.receiver_count()}),
        );
    }
    Ok(())
}

/// Takes the connections waiting in the listener's backlog, without waiting for more,
/// and closes the listener.
fn pending_connections(
    listener: tokio::net::TcpListener,
) -> Vec<(tokio::net::TcpStream, SocketAddr)> {
    // The accept system call, not tokio's readiness, which may not have seen them yet.
    let Ok(listener) = listener.into_std() else {
        return Vec::new();
    };
    std::iter::from_fn(|| listener.accept().ok())
        .filter_map(|(stream, peer)| {
            stream.set_nonblocking(true).ok()?;
            Some((tokio::net::TcpStream::from_std(stream).ok()?, peer))
        })
        .collect()
}

/// Serves one connection's requests (HTTP/1.1 keep-alive) until it closes, or until the
/// server stops: then it finishes the request in flight and closes.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    routes: Arc<Routes>,
    timeout: Duration,
    mut stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Set once hyper has parsed the first request's head.
    let (begun_tx, mut begun) = watch::channel(false);
    let service = hyper::service::service_fn(move |request| {
        begun_tx.send_replace(true);
        let routes = routes.clone();
        async move { Ok::<_, std::convert::Infallible>(respond(request, peer, routes, timeout).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // Without a timer the header timeout does nothing.
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    // Borrowed, not moved: the receiver must live until the connection has finished,
    // since the server's drain waits for every receiver to be dropped.
    let stop = async {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop => {
            // hyper closes at once a connection it has read nothing from, which resets a
            // client whose request is already in the socket: give it a moment to begin.
            if !*begun.borrow() {
                tokio::select! {
                    _ = conn.as_mut() => return,
                    _ = tokio::time::timeout(FIRST_REQUEST_GRACE, begun.wait_for(|b| *b)) => {}
                }
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Reads the body (refusing one over [`MAX_BODY`] or one that does not arrive in time),
/// calls the route's handler on a blocking thread, and logs the outcome.
async fn respond(
    request: http::Request<Incoming>,
    peer: SocketAddr,
    routes: Arc<Routes>,
    timeout: Duration,
) -> http::Response<Full<Bytes>> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    let response = match route(&routes, &method, &path) {
        Err(response) => response,
        Ok(handler) => match read_body(&parts.headers, body, timeout).await {
            Err(response) => response,
            Ok(body) => {
                let request = Request {
                    method: parts.method,
                    path: path.clone(),
                    headers: parts.headers,
                    body,
                    peer,
                };
                tokio::task::spawn_blocking(move || handler.handle(request))
                    .await
                    .unwrap_or_else(|_| {
                        Response::new(
                            http::StatusCode::INTERNAL_SERVER_ERROR,
                            serde_json::json!({"error": "the handler failed"}),
                        )
                    })
            }
        },
    };
    log(
        "request",
        serde_json::json!({
            "method": method.as_str(),
            "path": path,
            "peer": peer.to_string(),
            "status": response.status.as_u16(),
            "ms": started.elapsed().as_secs_f64() * 1000.0,
        }),
    );
    let body = serde_json::to_vec(&response.body).expect("a JSON value serializes");
    let mut answer = http::Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = response.status;
    answer.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    answer
}

/// The handler for `method` `path`: 404 for an unknown path, 405 for a known path
/// asked with another method.
fn route(routes: &Routes, method: &http::Method, path: &str) -> Result<Arc<dyn Handler>, Response> {
    if let Some(handler) = routes.get(&(method.clone(), path)) {
        return Ok(handler.clone());
    }
    let allowed: Vec<&str> = routes
        .keys()
        .filter(|(_, p)| *p == path)
        .map(|(m, _)| m.as_str())
        .collect();
    Err(if allowed.is_empty() {
        Response::new(
            http::StatusCode::NOT_FOUND,
            serde_json::json!({"error": format!("no endpoint {path}")}),
        )
    } else {
        Response::new(
            http::StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"error": format!("{path} takes {}", allowed.join(", "))}),
        )
    })
}

async fn read_body(
    headers: &http::HeaderMap,
    body: Incoming,
    timeout: Duration,
) -> Result<Bytes, Response> {
    let too_large = || {
        Response::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            serde_json::json!({"error": format!("the body is over {MAX_BODY} bytes")}),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Response::new(
            http::StatusCode::BAD_REQUEST,
            serde_json::json!({"error": format!("reading the body: {e}")}),
        )),
        Err(_) => Err(Response::new(
            http::StatusCode::REQUEST_TIMEOUT,
            serde_json::json!({"error": format!("the body did not arrive within {} s", timeout.as_secs())}),
        )),
    }
}

/// `GET /healthz`: 200 while the ledger answers, 503 when it does not (so a load
/// balancer stops sending admissions that would be denied for want of a ledger).
pub struct Healthz {
    pub settings: Arc<Settings>,
}

impl Handler for Healthz {
    fn handle(&self, _request: Request) -> Response {
        match self.settings.ledger.exists() {
            Ok(_) => Response::new(http::StatusCode::OK, serde_json::json!({"status": "ok"})),
            Err(e) => Response::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"status": "ledger unreachable", "error": e.to_string()}),
            ),
        }
    }
}
