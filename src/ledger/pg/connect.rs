//! How a `postgres://` ledger location becomes a connection, the way libpq users
//! expect: the password from the URL, else `$PGPASSWORD`, else `~/.pgpass`
//! (`$PGPASSFILE`); `sslmode=disable|allow|prefer|require|verify-ca|verify-full` with
//! `sslrootcert=FILE` (default `~/.postgresql/root.crt`), TLS through rustls.
//!
//! Guarantees every network call a deadline: connecting (TCP, TLS, authentication)
//! within `connect_timeout` (default [`CONNECT_TIMEOUT`]), each statement within
//! [`CALL_TIMEOUT`] on the client's clock (a server that accepts and then never
//! answers, or stops answering, fails the call instead of hanging the command), a
//! server-side `statement_timeout` of [`STATEMENT_TIMEOUT`] that fires first on a live
//! server, and TCP keepalives plus `TCP_USER_TIMEOUT` so a peer that vanishes without
//! closing the connection is noticed. The password never appears in [`Target::shown`]
//! or in an error.

use super::DatabaseError;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// How long a connection attempt may take unless the URL says `connect_timeout=`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server lets one statement run (lock waits included).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client waits for the answer to one statement: past the server's own
/// limit, so a live server reports its `statement_timeout` first.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(35);

/// The libpq `sslmode`s; `verify-ca` is checked as `verify-full` (the host name too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyFull,
}

/// A parsed ledger URL: the client configuration (password filled in) and how to
/// secure it.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    ssl: SslMode,
    root_cert: Option<PathBuf>,
    shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// `url` without the password in its user info or a `password=` query parameter:
/// what messages may show.
pub fn without_password(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(u, _)| u);
            format!("{user}@{host}")
        }
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.starts_with("password="))
                .collect();
            if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl Target {
    /// Parses `url`, taking `sslmode` and `sslrootcert` out (the client library knows
    /// neither `verify-full` nor root certificates) and filling in the user, host and
    /// password as libpq would.
    pub fn parse(url: &str) -> Result<Target, DatabaseError> {
        let shown = without_password(url);
        let bad = |reason: String| DatabaseError::Url {
            location: shown.clone(),
            reason,
        };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut ssl = SslMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sslmode" => {
                    ssl = match value {
                        "disable" => SslMode::Disable,
                        "allow" | "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" | "verify-full" => SslMode::VerifyFull,
                        other => return Err(bad(format!("unknown sslmode {other:?}: use disable, prefer, require, verify-ca or verify-full"))),
                    }
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(value)),
                _ => kept.push(pair),
            }
        }
        let rebuilt = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config =
            tokio_postgres::Config::from_str(&rebuilt).map_err(|e| bad(e.to_string()))?;
        if config.get_hosts().is_empty() {
            config.host(std::env::var("PGHOST").unwrap_or_else(|_| "localhost".into()));
        }
        if config.get_user().is_none() {
            let user = std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .map_err(|_| {
                    bad("no user in the URL, and neither $PGUSER nor $USER is set".into())
                })?;
            config.user(&user);
        }
        if config.get_password().is_none() {
            if let Some(password) = password_from_environment(&config) {
                config.password(password);
            }
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let options = format!(
            "{} -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            STATEMENT_TIMEOUT.as_millis()
        );
        config
            .options(options.trim_start())
            .tcp_user_timeout(STATEMENT_TIMEOUT)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
        if ssl == SslMode::Require && root_cert.is_some() {
            ssl = SslMode::VerifyFull;
        }
        if ssl == SslMode::VerifyFull && root_cert.is_none() {
            let default = home().map(|h| h.join(".postgresql/root.crt"));
            root_cert = default.filter(|p| p.exists());
            if root_cert.is_none() {
                return Err(bad("sslmode=verify-full needs the CA that signed the server's certificate: add sslrootcert=FILE".into()));
            }
        }
        Ok(Target {
            config,
            ssl,
            root_cert,
            shown,
        })
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// A new connection, made within the connect timeout.
    pub fn connect(&self) -> Result<Connection, DatabaseError> {
        let connect_error = |cause| DatabaseError::Connect {
            location: self.shown.clone(),
            cause,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DatabaseError::Runtime {
                location: self.shown.clone(),
                reason: e.to_string(),
            })?;
        let within = self.config.get_connect_timeout().copied();
        let within = within.unwrap_or(CONNECT_TIMEOUT);
        let mut config = self.config.clone();
        let connected = match self.ssl {
            SslMode::Disable => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let connecting = async {
                    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                    tokio::spawn(connection);
                    Ok(client)
                };
                runtime.block_on(async { tokio::time::timeout(within, connecting).await })
            }
            mode => {
                config.ssl_mode(match mode {
                    SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                    _ => tokio_postgres::config::SslMode::Require,
                });
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
                let connecting = async {
                    let (client, connection) = config.connect(tls).await?;
                    tokio::spawn(connection);
                    Ok(client)
                };
                runtime.block_on(async { tokio::time::timeout(within, connecting).await })
            }
        };
        let client = connected
            .map_err(|_| DatabaseError::Timeout {
                location: self.shown.clone(),
                what: "connecting",
                seconds: within.as_secs(),
            })?
            .map_err(connect_error)?;
        Ok(Connection {
            runtime,
            client,
            shown: self.shown.clone(),
            broken: false,
            prepared: std::collections::HashMap::new(),
        })
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, DatabaseError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions");
        let Some(path) = &self.root_cert else {
            // libpq's prefer and require encrypt without checking who answers.
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
                .with_no_client_auth());
        };
        let bad = |reason: String| DatabaseError::RootCert {
            path: path.clone(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
            let cert: rustls::pki_types::CertificateDer =
                cert.map_err(|e| bad(format!("not PEM certificates: {e}")))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad("holds no certificate".into()));
        }
        Ok(builder.with_root_certificates(roots).with_no_client_auth())
    }
}

/// One connection, driven by its own single-threaded runtime; every call has a
/// deadline ([`CALL_TIMEOUT`]).
pub struct Connection {
    runtime: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    /// The ledger URL without its password, for errors.
    shown: String,
    /// Set when a call timed out: where the protocol stands is unknown, so the
    /// connection is not used again.
    broken: bool,
    /// Statements prepared on this connection, by their SQL.
    prepared: std::collections::HashMap<&'static str, tokio_postgres::Statement>,
}

impl Connection {
    /// Whether the connection dropped or a call on it timed out.
    pub fn is_closed(&self) -> bool {
        self.broken || self.client.is_closed()
    }

    /// Waits for `call` on the runtime, at most [`CALL_TIMEOUT`].
    fn finish<T>(
        runtime: &tokio::runtime::Runtime,
        broken: &mut bool,
        shown: &str,
        call: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, DatabaseError> {
        match runtime.block_on(async { tokio::time::timeout(CALL_TIMEOUT, call).await }) {
            Ok(answer) => answer.map_err(|cause| DatabaseError::Query {
                location: shown.to_string(),
                cause,
            }),
            Err(_) => {
                *broken = true;
                Err(DatabaseError::Timeout {
                    location: shown.to_string(),
                    what: "waiting for an answer",
                    seconds: CALL_TIMEOUT.as_secs(),
                })
            }
        }
    }

    pub fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DatabaseError> {
        let call = self.client.query(sql, params);
        Self::finish(&self.runtime, &mut self.broken, &self.shown, call)
    }

    pub fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DatabaseError> {
        let call = self.client.query_one(sql, params);
        Self::finish(&self.runtime, &mut self.broken, &self.shown, call)
    }

    pub fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, DatabaseError> {
        let call = self.client.execute(sql, params);
        Self::finish(&self.runtime, &mut self.broken, &self.shown, call)
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), DatabaseError> {
        let call = self.client.batch_execute(sql);
        Self::finish(&self.runtime, &mut self.broken, &self.shown, call)
    }

    /// `sql` prepared on this connection (once: later calls skip the round trip).
    fn prepared(&mut self, sql: &'static str) -> Result<tokio_postgres::Statement, DatabaseError> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let call = self.client.prepare(sql);
        let statement = Self::finish(&self.runtime, &mut self.broken, &self.shown, call)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Opens a transaction and runs `sql` in it, both sent at once (one round trip):
    /// for a statement that takes a lock, so that the lock is held for as short a time
    /// as the client can make it. Roll back or [`Connection::execute_commit`] after.
    pub fn begin_query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, DatabaseError> {
        let statement = self.prepared(sql)?;
        let begin = self.client.batch_execute("BEGIN");
        let query = self.client.query_one(&statement, params);
        let call = async {
            let (begun, row) = tokio::join!(begin, query);
            begun.and(row)
        };
        Self::finish(&self.runtime, &mut self.broken, &self.shown, call)
    }

    /// Runs `sql` and commits, both sent at once. If `sql` fails, the commit ends the
    /// failed transaction without changes and its error is returned.
    pub fn execute_commit(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, DatabaseError> {
        let statement = self.prepared(sql)?;
        let execute = self.client.execute(&statement, params);
        let commit = self.client.batch_execute("COMMIT");
        let call = async {
            let (rows, committed) = tokio::join!(execute, commit);
            rows.and_then(|rows| committed.map(|()| rows))
        };
        Self::finish(&self.runtime, &mut self.broken, &self.shown, call)
    }

    /// Ends an open transaction without changes; a connection that cannot is dropped.
    pub fn rollback(&mut self) {
        if !self.is_closed() && self.batch_execute("ROLLBACK").is_err() {
            self.broken = true;
        }
    }

    /// Runs `work` in a transaction: committed if it returns `Ok`, rolled back if not.
    pub fn transaction<T>(
        &mut self,
        work: impl FnOnce(&mut Connection) -> Result<T, DatabaseError>,
    ) -> Result<T, DatabaseError> {
        self.batch_execute("BEGIN")?;
        match work(self) {
            Ok(done) => self.batch_execute("COMMIT").map(|()| done),
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }
}

/// Accepts any server certificate while still checking the handshake signatures:
/// libpq's `sslmode=prefer|require` without a root certificate.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `$PGPASSWORD`, else the first matching line of `$PGPASSFILE` or `~/.pgpass`.
fn password_from_environment(config: &tokio_postgres::Config) -> Option<String> {
    if let Ok(password) = std::env::var("PGPASSWORD") {
        return Some(password);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".pgpass")))?;
    let host = match config.get_hosts().first()? {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(_) => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user()?;
    let db = config.get_dbname().unwrap_or(user);
    pgpass_lookup(&file, [&host, &port, db, user])
}

/// The password of the first line of the pgpass file at `path` that matches `wanted`
/// (host, port, database, user): `*` matches anything, `\:` and `\\` are escapes.
pub fn pgpass_lookup(path: &Path, wanted: [&str; 4]) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let fields = pgpass_fields(line);
            (fields.len() == 5).then_some(fields)
        })
        .find(|f| {
            f[..4]
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want)
        })
        .map(|mut f| f.remove(4))
}

/// The `:`-separated fields of a pgpass line, escapes resolved.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("never empty").push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("never empty").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_cut_from_what_is_shown() {
        assert_eq!(
            without_password("postgres://ci:s3cr%40t@db.example:5432/ledger?sslmode=require"),
            "postgres://ci@db.example:5432/ledger?sslmode=require"
        );
        assert_eq!(
            without_password("postgresql://db.example/ledger"),
            "postgresql://db.example/ledger"
        );
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:ci:wrong\ndb.example:*:ledger:ci:pa\\:ss\\\\word\n*:*:*:*:fallback\n",
        )
        .unwrap();
        assert_eq!(
            pgpass_lookup(&file, ["db.example", "5433", "ledger", "ci"]).as_deref(),
            Some("pa:ss\\word")
        );
        assert_eq!(
            pgpass_lookup(&file, ["db.example", "5433", "other", "ci"]).as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn verify_full_without_a_root_certificate_is_refused_without_the_password() {
        let err = Target::parse("postgres://ci:hunter2@db.example/ledger?sslmode=verify-full")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("sslrootcert=FILE"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
