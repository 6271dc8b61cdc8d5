//! The HTTP side of the client: one blocking `ureq` agent, authentication on demand
//! (a request answered 401 is re-sent once with Basic or a bearer token, whichever the
//! challenge asks for), bounded retries with exponential backoff on 5xx, 429 and
//! dropped connections, and the registry's own error messages in every error.
//! Every request runs under the [`Deadlines`]: the stall window for connecting, each
//! read and write and the response headers, a minimum transfer rate for bodies, and
//! what is left of the command's overall budget.

use super::auth::{self, Challenge, Credentials, TokenResponse};
use super::deadline::{self, Budget, Deadlines, Fired, MinRateReader};
use super::reference::{hostname_of, Reference};
use super::RegistryError;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use ureq::http::{self, Method, StatusCode};

/// How the client talks to registries. The CLI fills it from flags, the Docker
/// config file and the environment.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub credentials: Credentials,
    /// Plain HTTP instead of HTTPS. Allowed only for loopback hosts (`localhost`,
    /// `127.0.0.0/8`, `::1`); a request to any other host is refused.
    pub insecure: bool,
    /// Attempts per request (and per blob upload) before giving up; at least 1.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// Blobs larger than this are uploaded in chunks of this size (PATCH); smaller
    /// ones in one PUT. Both stream from the file.
    pub chunk_size: u64,
    /// Sent as `User-Agent`.
    pub user_agent: String,
    /// The stall window, the minimum transfer rate and the overall budget.
    pub deadlines: Deadlines,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: Credentials::default(),
            insecure: false,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            chunk_size: 64 << 20,
            user_agent: format!("cairn/{}", env!("CARGO_PKG_VERSION")),
            deadlines: Deadlines::default(),
        }
    }
}

/// A request body that can be sent again (after a 401 or a dropped connection).
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of `path` from `offset`, streamed; `progress` hears of each read.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
        progress: &'a dyn Fn(u64),
    },
}

pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: String,
    pub image: &'a Reference,
    /// Needs push access (for the bearer token's scope).
    pub push: bool,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
    /// Retry on transient failures (off for upload steps, which are retried whole).
    pub retry: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, url: String, image: &'a Reference) -> Self {
        let push = !matches!(method, Method::GET | Method::HEAD);
        Request {
            method,
            url,
            image,
            push,
            headers: Vec::new(),
            body: Body::Empty,
            retry: true,
        }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn body(mut self, body: Body<'a>) -> Self {
        self.body = body;
        self
    }
    pub fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }
}

pub(crate) type Response = http::Response<ureq::Body>;

/// A distribution-spec registry client. Cheap to share by reference across threads;
/// tokens are cached per registry and repository.
pub struct Client {
    agent: ureq::Agent,
    opts: ClientOptions,
    /// The time spent waiting on registries, against `opts.deadlines.overall`.
    budget: Budget,
    /// `Authorization` values: by `registry/repository` (bearer), or by `registry`
    /// (basic).
    auth: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("opts", &self.opts)
            .field("auth", &"<redacted>")
            .finish()
    }
}

impl Client {
    pub fn new(opts: ClientOptions) -> Client {
        let stall = Some(opts.deadlines.stall);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Never from the environment: the library reads no environment.
            .proxy(None)
            // Never forward `Authorization` on a redirect (ureq's default, stated
            // here because credentials depend on it).
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
            .timeout_resolve(stall)
            .timeout_connect(stall)
            .timeout_per_read(stall)
            .timeout_per_write(stall)
            .timeout_recv_response(stall)
            .user_agent(opts.user_agent.as_str())
            .build()
            .into();
        Client {
            agent,
            budget: Budget::new(opts.deadlines.overall),
            opts,
            auth: Mutex::new(HashMap::new()),
        }
    }

    /// A client with the same options and tokens, and an overall budget of its own:
    /// for a service that makes one bounded operation per request it serves.
    pub fn for_one_operation(&self) -> Client {
        Client {
            agent: self.agent.clone(),
            opts: self.opts.clone(),
            budget: Budget::new(self.opts.deadlines.overall),
            auth: Mutex::new(self.auth.lock().expect("auth cache lock").clone()),
        }
    }

    /// Runs one HTTP exchange under the deadlines: the rest of the overall budget
    /// bounds it whole (body included), and the time until its headers counts
    /// against the budget (reading the body counts too: `body_reader`,
    /// `read_limited`).
    fn run<B: ureq::AsSendBody>(&self, request: http::Request<B>) -> Result<Response, ureq::Error> {
        let remaining = self.budget.remaining();
        if remaining == Some(Duration::ZERO) {
            return Err(ureq::Error::Timeout(ureq::Timeout::Global));
        }
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(remaining)
            .build();
        let _busy = self.budget.busy();
        self.agent.run(request)
    }

    /// The error for a request or transfer `error` ended: the deadline that fired, or
    /// else the connection failure.
    pub(crate) fn transfer_error(
        &self,
        method: &Method,
        url: &str,
        attempts: u32,
        error: ureq::Error,
    ) -> RegistryError {
        let deadlines = Deadlines {
            overall: self.budget.limit(),
            ..self.opts.deadlines
        };
        if let Some(fired) = deadline::fired(&error, &deadlines) {
            return deadline_error(method, url, fired);
        }
        if is_plain_http_answer(&error) {
            let (host, _) = host_and_path(url);
            return RegistryError::PlainHttpAnswer {
                loopback: is_loopback(hostname_of(&host)),
                host,
            };
        }
        RegistryError::Connect {
            url: redact_url(url),
            attempts,
            error,
        }
    }

    /// A body reader that fails below the minimum transfer rate; the time until it
    /// is dropped counts against the overall budget.
    pub(crate) fn body_reader<'r>(&'r self, resp: &'r mut Response) -> impl io::Read + 'r {
        BudgetedReader {
            inner: MinRateReader::new(resp.body_mut().as_reader(), &self.opts.deadlines),
            _busy: self.budget.busy(),
        }
    }

    /// Reads at most `limit` bytes of a response body, at the minimum transfer rate.
    pub(crate) fn read_limited(
        &self,
        resp: &mut Response,
        limit: u64,
    ) -> Result<Vec<u8>, ureq::Error> {
        let _busy = self.budget.busy();
        let mut body = Vec::new();
        let mut reader = MinRateReader::new(
            resp.body_mut().with_config().limit(limit).reader(),
            &self.opts.deadlines,
        );
        reader.read_to_end(&mut body).map_err(|e| {
            // ureq's own errors (a body over the limit, a timeout) come back wrapped in
            // the I/O error: unwrap them for the caller.
            if !e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
                return ureq::Error::Io(e);
            }
            match e.into_inner().map(|inner| inner.downcast::<ureq::Error>()) {
                Some(Ok(ureq_error)) => *ureq_error,
                _ => unreachable!("an I/O error holding a ureq::Error, checked above"),
            }
        })?;
        Ok(body)
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// `https://host/v2/<repository>` (or `http://` with `--insecure` on loopback).
    pub(crate) fn repo_url(&self, image: &Reference) -> Result<String, RegistryError> {
        Ok(format!(
            "{}/v2/{}",
            self.origin(image.api_host())?,
            image.repository
        ))
    }

    /// `https://host` (or `http://host` when allowed).
    pub(crate) fn origin(&self, host: &str) -> Result<String, RegistryError> {
        if self.opts.insecure {
            if !is_loopback(hostname_of(host)) {
                return Err(RegistryError::InsecureNotLoopback {
                    host: host.to_string(),
                });
            }
            Ok(format!("http://{host}"))
        } else {
            Ok(format!("https://{host}"))
        }
    }

    /// Turns an upload `Location` (absolute, or a path on the registry) into a URL.
    pub(crate) fn resolve_location(
        &self,
        image: &Reference,
        location: &str,
    ) -> Result<String, RegistryError> {
        if location.starts_with("https://") {
            return Ok(location.to_string());
        }
        if let Some(rest) = location.strip_prefix("http://") {
            // Plain HTTP only where plain HTTP was asked for (and allowed).
            let host = rest.split(['/', '?']).next().unwrap_or_default();
            if self.opts.insecure && is_loopback(hostname_of(host)) {
                return Ok(location.to_string());
            }
            return Err(RegistryError::Protocol {
                url: redact_url(location),
                detail: "the registry sent a plain-HTTP upload location".to_string(),
            });
        }
        let origin = self.origin(image.api_host())?;
        Ok(if location.starts_with('/') {
            format!("{origin}{location}")
        } else {
            format!("{origin}/{location}")
        })
    }

    /// Sends `req`, authenticating on a 401 and retrying on transient failures.
    /// Returns the response whatever its status (callers decide what is an error),
    /// except that a 401 after authenticating is an error.
    pub(crate) fn send(&self, req: &Request<'_>) -> Result<Response, RegistryError> {
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self.send_once(req) {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    authenticated = true;
                    let challenge = resp
                        .headers()
                        .get(http::header::WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    self.authenticate(req, challenge.as_deref(), resp)?;
                    attempt -= 1;
                    continue;
                }
                other => other,
            };
            let retry = match &result {
                Ok(resp) => {
                    let s = resp.status();
                    s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) => is_transient(e),
            };
            let budget_left = self.budget.remaining();
            if retry
                && req.retry
                && attempt < self.opts.max_attempts.max(1)
                && budget_left != Some(Duration::ZERO)
            {
                let shift = (attempt - 1).min(16);
                let backoff = self.opts.initial_backoff * (1u32 << shift);
                std::thread::sleep(budget_left.map_or(backoff, |left| backoff.min(left)));
                continue;
            }
            return match result {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    Err(self.status_error(req, resp))
                }
                Ok(resp) => Ok(resp),
                Err(ureq::Error::Protocol(e)) => Err(RegistryError::Protocol {
                    url: redact_url(&req.url),
                    detail: format!("not an HTTP answer ({e}); is this a registry?"),
                }),
                Err(error) => Err(self.transfer_error(&req.method, &req.url, attempt, error)),
            };
        }
    }

    fn send_once(&self, req: &Request<'_>) -> Result<Response, ureq::Error> {
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(&req.url);
        for (name, value) in &req.headers {
            builder = builder.header(*name, value);
        }
        // Credentials go only to the registry itself, not to another host an upload
        // location may name.
        let own_host = self
            .origin(req.image.api_host())
            .is_ok_and(|origin| req.url.starts_with(&format!("{origin}/")));
        if let Some(value) = self.cached_auth(req.image).filter(|_| own_host) {
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        match &req.body {
            Body::Empty => self.run(builder.body(())?),
            Body::Bytes(bytes) => self.run(
                builder
                    .header(http::header::CONTENT_LENGTH, bytes.len())
                    .body(*bytes)?,
            ),
            Body::File {
                path,
                offset,
                len,
                progress,
            } => {
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(*offset))?;
                // The registry's reading pace is the pace of this reader.
                let mut reader = MinRateReader::new(
                    ProgressReader {
                        inner: file.take(*len),
                        progress: *progress,
                    },
                    &self.opts.deadlines,
                );
                self.run(
                    builder
                        .header(http::header::CONTENT_LENGTH, *len)
                        .body(ureq::SendBody::from_reader(&mut reader))?,
                )
            }
        }
    }

    fn cached_auth(&self, image: &Reference) -> Option<String> {
        let cache = self.auth.lock().expect("auth cache lock");
        cache
            .get(&image.repository_name())
            .or_else(|| cache.get(&image.registry))
            .cloned()
    }

    /// Answers a 401: Basic with the login, or a bearer token from the realm.
    fn authenticate(
        &self,
        req: &Request<'_>,
        challenge: Option<&str>,
        resp: Response,
    ) -> Result<(), RegistryError> {
        let image = req.image;
        let login = self.opts.credentials.login_for(&image.registry);
        let no_login = |resp: Response| {
            let mut e = self.status_error(req, resp);
            if let RegistryError::Status { hint, .. } = &mut e {
                *hint = Some(format!(
                    "no credentials for {}: set CAIRN_REGISTRY_USERNAME and CAIRN_REGISTRY_PASSWORD, or log in (an `auths` entry in the Docker config file)",
                    image.registry
                ));
            }
            e
        };
        match challenge.and_then(auth::parse_challenge) {
            Some(Challenge::Basic) => {
                let Some(login) = login else {
                    return Err(no_login(resp));
                };
                self.auth
                    .lock()
                    .expect("auth cache lock")
                    .insert(image.registry.clone(), login.basic_header());
                Ok(())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let actions = if req.push { "pull,push" } else { "pull" };
                let own_scope = format!("repository:{}:{actions}", image.repository);
                let mut scopes: Vec<String> = scope
                    .as_deref()
                    .unwrap_or("")
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                // The catalog names no repository: its challenge's own scope
                // (`registry:catalog:*`) is all it needs.
                if !image.repository.is_empty() && !scopes.iter().any(|s| s == &own_scope) {
                    scopes.push(own_scope);
                }
                let token = self.fetch_token(image, &realm, service.as_deref(), &scopes)?;
                self.auth
                    .lock()
                    .expect("auth cache lock")
                    .insert(image.repository_name(), format!("Bearer {token}"));
                Ok(())
            }
            None => Err(self.status_error(req, resp)),
        }
    }

    fn fetch_token(
        &self,
        image: &Reference,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, RegistryError> {
        let realm_host = realm
            .strip_prefix("https://")
            .or_else(|| realm.strip_prefix("http://"))
            .map(|rest| rest.split(['/', '?']).next().unwrap_or(rest));
        let plain_http_ok =
            self.opts.insecure && realm_host.is_some_and(|h| is_loopback(hostname_of(h)));
        if !(realm.starts_with("https://") || (realm.starts_with("http://") && plain_http_ok)) {
            return Err(RegistryError::Auth {
                registry: image.registry.clone(),
                message: format!(
                    "the token realm {realm} is not an https URL (plain http is allowed only on loopback with --insecure)"
                ),
            });
        }
        let mut url = realm.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        let mut push_param = |key: &str, value: &str| {
            url.push(sep);
            url.push_str(key);
            url.push('=');
            url.push_str(&query_escape(value));
            sep = '&';
        };
        if let Some(service) = service {
            push_param("service", service);
        }
        for scope in scopes {
            push_param("scope", scope);
        }
        let mut builder = http::Request::builder().method(Method::GET).uri(&url);
        if let Some(login) = self.opts.credentials.login_for(&image.registry) {
            // Over plain HTTP the login goes only to the registry's own host: another
            // host named as the realm would read it off the wire (or be the attacker).
            let realm_hostname = realm_host.map(hostname_of).unwrap_or_default();
            if realm.starts_with("http://")
                && !realm_hostname.eq_ignore_ascii_case(hostname_of(image.api_host()))
            {
                return Err(RegistryError::Auth {
                    registry: image.registry.clone(),
                    message: format!(
                        "its token realm {} is plain HTTP on another host ({realm_hostname}); cairn sends credentials over plain HTTP only to the registry's own host, so nothing was sent: serve the token service over HTTPS or on the registry's host",
                        redact_url(realm)
                    ),
                });
            }
            builder = builder.header(http::header::AUTHORIZATION, login.basic_header());
        }
        let request = builder.body(()).map_err(|e| RegistryError::Auth {
            registry: image.registry.clone(),
            message: format!("bad token realm {realm}: {e}"),
        })?;
        let mut resp = self
            .run(request)
            .map_err(|error| self.transfer_error(&Method::GET, realm, 1, error))?;
        let status = resp.status();
        let body = self
            .read_limited(&mut resp, 1 << 20)
            .map_err(|error| self.transfer_error(&Method::GET, realm, 1, error))?;
        if !status.is_success() {
            return Err(RegistryError::Auth {
                registry: image.registry.clone(),
                message: format!(
                    "the token service {} refused: {status}{}",
                    redact_url(realm),
                    error_suffix(&body)
                ),
            });
        }
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Auth {
                registry: image.registry.clone(),
                message: format!(
                    "the token service {} sent no token JSON: {e}",
                    redact_url(realm)
                ),
            })?;
        token
            .token
            .or(token.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Auth {
                registry: image.registry.clone(),
                message: format!("the token service {} sent no token", redact_url(realm)),
            })
    }

    /// The error for an unexpected status, with the registry's own messages.
    pub(crate) fn status_error(&self, req: &Request<'_>, mut resp: Response) -> RegistryError {
        let status = resp.status();
        let body = self.read_limited(&mut resp, 64 << 10).unwrap_or_default();
        let hint = match status {
            StatusCode::UNAUTHORIZED => Some(format!(
                "check the credentials for {} (CAIRN_REGISTRY_USERNAME/CAIRN_REGISTRY_PASSWORD or the Docker config file)",
                req.image.registry
            )),
            StatusCode::FORBIDDEN => Some(format!(
                "the credentials for {} lack the right to {} {}",
                req.image.registry,
                if req.push { "push to" } else { "pull" },
                req.image.repository
            )),
            _ => None,
        };
        RegistryError::Status {
            method: req.method.to_string(),
            url: redact_url(&req.url),
            status: status.as_u16(),
            message: match registry_message(&body) {
                m if m.is_empty() => status.canonical_reason().unwrap_or_default().to_string(),
                m => m,
            },
            hint,
        }
    }
}

/// The error for a request to `url` that `fired` ended.
fn deadline_error(method: &Method, url: &str, fired: Fired) -> RegistryError {
    let (host, path) = host_and_path(url);
    RegistryError::Deadline {
        host,
        method: method.to_string(),
        path,
        fired,
    }
}

/// `host[:port]` and the path of `url`, without query or user info.
pub(crate) fn host_and_path(url: &str) -> (String, String) {
    let redacted = redact_url(url);
    let rest = redacted
        .split_once("://")
        .map_or(redacted.as_str(), |(_, rest)| rest);
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    }
}

/// Whether a TLS handshake failed because the server answered in plain HTTP (rustls
/// reads the `HTTP/1.1 ...` answer as a record of an unknown content type).
fn is_plain_http_answer(error: &ureq::Error) -> bool {
    let plain = |e: &rustls::Error| {
        matches!(
            e,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
        )
    };
    match error {
        ureq::Error::Rustls(e) => plain(e),
        ureq::Error::Io(io) => io.get_ref().is_some_and(|inner| {
            inner.downcast_ref::<rustls::Error>().is_some_and(plain)
                || inner
                    .downcast_ref::<ureq::Error>()
                    .is_some_and(is_plain_http_answer)
        }),
        _ => false,
    }
}

/// The distribution-spec error body (`{"errors":[{"code","message","detail"}]}`) as
/// `CODE: message; CODE: message`, or the start of whatever else was sent.
pub(crate) fn registry_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(errors) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = errors
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    text.trim().to_string()
}

fn error_suffix(body: &[u8]) -> String {
    let m = registry_message(body);
    if m.is_empty() {
        String::new()
    } else {
        format!(": {m}")
    }
}

/// The URL without its query (upload URLs carry state tokens) or user info.
pub(crate) fn redact_url(url: &str) -> String {
    let no_query = url.split('?').next().unwrap_or(url);
    match no_query.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, after)) if !after.contains('/') || rest.find('@') < rest.find('/') => {
                format!("{scheme}://{after}")
            }
            _ => no_query.to_string(),
        },
        None => no_query.to_string(),
    }
}

/// Dropped connections and timeouts are worth another try; refused connections and
/// unknown hosts are not (the registry is not there).
pub(crate) fn is_transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted
        ),
        ureq::Error::Timeout(_) => true,
        _ => false,
    }
}

pub(crate) fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Percent-encodes a query value.
pub(crate) fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A reader whose reading time counts against the overall budget.
struct BudgetedReader<'a, R> {
    inner: R,
    _busy: deadline::BusyGuard<'a>,
}

impl<R: Read> Read for BudgetedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_json_becomes_code_and_message() {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null},{"code":"DENIED","message":""}]}"#;
        assert_eq!(
            registry_message(body),
            "UNAUTHORIZED: authentication required; DENIED"
        );
        assert_eq!(
            registry_message(b"<html>\n502 Bad Gateway"),
            "<html> 502 Bad Gateway"
        );
    }

    #[test]
    fn urls_lose_query_and_user_info() {
        assert_eq!(
            redact_url("http://127.0.0.1:5000/v2/a/blobs/uploads/u?_state=secret"),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/u"
        );
        assert_eq!(
            redact_url("https://user:pw@host/token"),
            "https://host/token"
        );
    }

    #[test]
    fn insecure_only_on_loopback() {
        let client = Client::new(ClientOptions {
            insecure: true,
            ..Default::default()
        });
        assert_eq!(
            client.origin("127.0.0.1:5000").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(client.origin("[::1]:5000").unwrap(), "http://[::1]:5000");
        assert_eq!(client.origin("localhost").unwrap(), "http://localhost");
        let e = client.origin("registry.example:5000").unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let secure = Client::new(ClientOptions::default());
        assert_eq!(
            secure.origin("127.0.0.1:5000").unwrap(),
            "https://127.0.0.1:5000"
        );
    }

    #[test]
    fn upload_locations_resolve_against_the_registry_and_never_downgrade() {
        let image: Reference = "registry.example/a/b:v1".parse().unwrap();
        let secure = Client::new(ClientOptions::default());
        assert_eq!(
            secure
                .resolve_location(&image, "/v2/a/b/blobs/uploads/u?_state=x")
                .unwrap(),
            "https://registry.example/v2/a/b/blobs/uploads/u?_state=x"
        );
        assert_eq!(
            secure
                .resolve_location(&image, "https://storage.example/u")
                .unwrap(),
            "https://storage.example/u"
        );
        let e = secure
            .resolve_location(&image, "http://registry.example/v2/a/b/blobs/uploads/u")
            .unwrap_err();
        assert!(e.to_string().contains("plain-HTTP upload location"), "{e}");
    }
}
