//! Downloads into a content-addressed cache (`<cache>/debs/<sha256-hex>`), so repeated
//! and `--offline` builds read packages, indexes and InRelease files from disk. A file
//! enters the cache only under the digest of its bytes (temp file, then rename), and
//! every read from the cache hashes the file again, so a corrupt cache entry is noticed
//! (and dropped), never used.
//!
//! Downloads run under the registry client's stall deadlines
//! ([`crate::registry::deadline`]): 30 s to connect, for any read and for the
//! headers, at least 1 KiB per 30 s, and 10 minutes per file in all.

use super::DebianError;
use crate::digest::{HashingWriter, Sha256Digest};
use crate::registry::deadline::{self, Deadlines, Fired, MinRateReader};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The content cache and the network access rule.
pub struct Fetcher {
    dir: PathBuf,
    offline: bool,
    agent: ureq::Agent,
}

/// The most one download may take.
const PER_FILE: Duration = Duration::from_secs(600);

/// Attempts per URL before a failure that another attempt may not meet is final.
const ATTEMPTS: u32 = 3;

/// How one download failed, which decides what is tried next.
enum Failed {
    /// The server has no such file (404, 410): the next URL may have it.
    NotFound(DebianError),
    /// The name did not resolve, the connection failed or broke, the server failed
    /// (5xx) or asked to be asked later (408, 429), or the bytes were not the signed
    /// ones: the same URL is tried again.
    Transient(DebianError),
    /// A deadline fired, the body was over its size, the cache failed, or the server
    /// refused otherwise.
    Final(DebianError),
}

/// `error`, saying that it is what the last of `attempts` attempts met.
fn after_attempts(error: DebianError, attempts: u32) -> DebianError {
    match error {
        DebianError::Download { what, url, detail } => DebianError::Download {
            what,
            url,
            detail: format!("{detail} (after {attempts} attempts)"),
        },
        DebianError::DigestMismatch {
            what,
            expected,
            actual,
        } => DebianError::DigestMismatch {
            what,
            expected,
            actual: format!("{actual} (after {attempts} attempts)"),
        },
        other => other,
    }
}

/// Whether a body read failed because the body was longer than its limit.
fn too_long(error: &io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|e| matches!(e, ureq::Error::BodyExceedsLimit(_)))
}

/// What a download that a deadline ended says: which deadline, in the mirror's terms.
fn stalled(fired: Option<Fired>) -> Option<String> {
    Some(match fired? {
        Fired::Overall(limit) => format!(
            "the download took longer than {} (the limit per file)",
            deadline::shown(limit)
        ),
        stall => format!("the mirror stalled: {stall}"),
    })
}

/// Most an InRelease or index may be: a bound on what a hostile server can make us
/// read into memory or onto disk when no size is known yet.
const MAX_UNSIZED: u64 = 256 << 20;

impl Fetcher {
    /// `cache_dir` is cairn's cache directory; packages go to its `debs/` subdirectory.
    pub fn new(cache_dir: &Path, offline: bool) -> Fetcher {
        let stall = Some(Deadlines::default().stall);
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(PER_FILE))
            .timeout_resolve(stall)
            .timeout_connect(stall)
            .timeout_per_read(stall)
            .timeout_per_write(stall)
            .timeout_recv_response(stall)
            .user_agent(concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Fetcher {
            dir: cache_dir.join("debs"),
            offline,
            agent,
        }
    }

    /// The cached file with these bytes, if the cache has it intact.
    pub fn cached(&self, sha256: &Sha256Digest) -> Option<PathBuf> {
        let path = self.dir.join(sha256.hex());
        let file = File::open(&path).ok()?;
        match crate::digest::sha256_reader(file) {
            Ok((actual, _)) if actual == *sha256 => Some(path),
            _ => {
                // Corrupt or unreadable: drop it so it is downloaded again.
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// `what` (named so in errors), from the cache if it has `expected`, else
    /// downloaded and checked against `expected` (digest, and size when known).
    /// `urls()` gives where to ask, in order: the next is asked only when a server
    /// says it has no such file. `on_bytes` is told of every chunk downloaded.
    pub fn get(
        &self,
        what: &str,
        expected: Option<(Sha256Digest, Option<u64>)>,
        urls: impl FnOnce() -> Result<Vec<String>, DebianError>,
        on_bytes: &dyn Fn(u64),
    ) -> Result<(PathBuf, Sha256Digest), DebianError> {
        if let Some((sha256, _)) = expected {
            if let Some(path) = self.cached(&sha256) {
                return Ok((path, sha256));
            }
        }
        if self.offline {
            return Err(DebianError::Offline {
                what: what.to_string(),
            });
        }
        let mut not_found = None;
        for url in urls()? {
            match self.download(what, expected, &url, on_bytes) {
                Ok(got) => return Ok(got),
                Err(Failed::NotFound(e)) => not_found = Some(e),
                Err(Failed::Transient(e) | Failed::Final(e)) => return Err(e),
            }
        }
        Err(not_found.expect("a download has at least one URL"))
    }

    /// [`Fetcher::download_once`], tried again 1 s and then 2 s later after a
    /// failure that another attempt may not meet.
    fn download(
        &self,
        what: &str,
        expected: Option<(Sha256Digest, Option<u64>)>,
        url: &str,
        on_bytes: &dyn Fn(u64),
    ) -> Result<(PathBuf, Sha256Digest), Failed> {
        let mut attempt = 1;
        loop {
            match self.download_once(what, expected, url, on_bytes) {
                Err(Failed::Transient(_)) if attempt < ATTEMPTS => {
                    std::thread::sleep(Duration::from_secs(attempt.into()));
                    attempt += 1;
                }
                Err(Failed::Transient(e)) if attempt > 1 => {
                    return Err(Failed::Transient(after_attempts(e, attempt)))
                }
                other => return other,
            }
        }
    }

    /// One download of `url` into the cache, checked against `expected`.
    fn download_once(
        &self,
        what: &str,
        expected: Option<(Sha256Digest, Option<u64>)>,
        url: &str,
        on_bytes: &dyn Fn(u64),
    ) -> Result<(PathBuf, Sha256Digest), Failed> {
        let net = |detail: String| DebianError::Download {
            what: what.to_string(),
            url: url.to_string(),
            detail,
        };
        let deadlines = Deadlines {
            overall: Some(PER_FILE),
            ..Deadlines::default()
        };
        let response = self.agent.get(url).call().map_err(|e| {
            if let Some(detail) = stalled(deadline::fired(&e, &deadlines)) {
                return Failed::Final(net(detail));
            }
            let error = net(e.to_string());
            match e {
                ureq::Error::StatusCode(404 | 410) => Failed::NotFound(error),
                ureq::Error::StatusCode(status) if status >= 500 || matches!(status, 408 | 429) => {
                    Failed::Transient(error)
                }
                ureq::Error::Io(_) | ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
                    Failed::Transient(error)
                }
                _ => Failed::Final(error),
            }
        })?;
        let limit = match expected {
            Some((_, Some(size))) => size + 1,
            _ => MAX_UNSIZED,
        };
        let mut body = MinRateReader::new(
            response
                .into_body()
                .into_with_config()
                .limit(limit)
                .reader(),
            &Deadlines::default(),
        );
        let cache_error = |path: &Path, e| Failed::Final(self.cache_error(path, e));
        fs::create_dir_all(&self.dir).map_err(|e| cache_error(&self.dir, e))?;
        let mut temp = tempfile::Builder::new()
            .prefix(".download-")
            .tempfile_in(&self.dir)
            .map_err(|e| cache_error(&self.dir, e))?;
        let temp_path = temp.path().to_path_buf();
        let mut writer = HashingWriter::new(temp.as_file_mut());
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = match body.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // A deadline that fired or a body over its size ends the
                    // download; a connection that broke may not break again.
                    return Err(match stalled(deadline::fired_io(&e, &deadlines)) {
                        Some(detail) => Failed::Final(net(detail)),
                        None if too_long(&e) => Failed::Final(net(e.to_string())),
                        None => Failed::Transient(net(e.to_string())),
                    });
                }
            };
            writer
                .write_all(&buffer[..n])
                .map_err(|e| cache_error(&temp_path, e))?;
            on_bytes(n as u64);
        }
        let (actual, size, _) = writer.finish();
        if let Some((sha256, expected_size)) = expected {
            if actual != sha256 || expected_size.is_some_and(|s| s != size) {
                let shown = expected_size.map_or_else(String::new, |s| format!(" ({s} bytes)"));
                // A mirror in the middle of an update (or a cache in front of it that
                // has not caught up) serves other bytes for a while.
                return Err(Failed::Transient(DebianError::DigestMismatch {
                    what: what.to_string(),
                    expected: format!("{sha256}{shown}"),
                    actual: format!("{actual} ({size} bytes) from {url}"),
                }));
            }
        }
        let path = self.dir.join(actual.hex());
        temp.persist(&path)
            .map_err(|e| cache_error(&path, e.error))?;
        Ok((path, actual))
    }

    fn cache_error(&self, path: &Path, source: io::Error) -> DebianError {
        DebianError::Cache {
            path: path.to_path_buf(),
            source,
        }
    }
}
