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

/// What a download that a deadline ended says: which deadline, in the mirror's terms.
/// Whether a failed request may succeed if made again: the name did not resolve, the
/// connection failed or broke (not an answer, a timeout or a refusal by the server).
fn transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::HostNotFound | ureq::Error::ConnectionFailed
    )
}

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
    /// downloaded from `url()` and checked against `expected` (digest, and size when
    /// known). `on_bytes` is told of every chunk downloaded.
    pub fn get(
        &self,
        what: &str,
        expected: Option<(Sha256Digest, Option<u64>)>,
        url: impl FnOnce() -> Result<String, DebianError>,
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
        let url = url()?;
        let net = |detail: String| DebianError::Download {
            what: what.to_string(),
            url: url.clone(),
            detail,
        };
        let deadlines = Deadlines {
            overall: Some(PER_FILE),
            ..Deadlines::default()
        };
        // A name lookup or connection that fails is tried twice more, 1 s and 2 s
        // later: a mirror's DNS hiccups, and the bytes are checked whatever answers.
        let mut attempt = 0;
        let response = loop {
            match self.agent.get(&url).call() {
                Ok(response) => break response,
                Err(e) if attempt < 2 && transient(&e) => {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_secs(attempt));
                }
                Err(e) => {
                    return Err(net(
                        stalled(deadline::fired(&e, &deadlines)).unwrap_or(e.to_string())
                    ))
                }
            }
        };
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
        fs::create_dir_all(&self.dir).map_err(|e| self.cache_error(&self.dir, e))?;
        let mut temp = tempfile::Builder::new()
            .prefix(".download-")
            .tempfile_in(&self.dir)
            .map_err(|e| self.cache_error(&self.dir, e))?;
        let temp_path = temp.path().to_path_buf();
        let mut writer = HashingWriter::new(temp.as_file_mut());
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let n = match body.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(net(
                        stalled(deadline::fired_io(&e, &deadlines)).unwrap_or(e.to_string())
                    ))
                }
            };
            writer
                .write_all(&buffer[..n])
                .map_err(|e| self.cache_error(&temp_path, e))?;
            on_bytes(n as u64);
        }
        let (actual, size, _) = writer.finish();
        if let Some((sha256, expected_size)) = expected {
            if actual != sha256 || expected_size.is_some_and(|s| s != size) {
                let shown = expected_size.map_or_else(String::new, |s| format!(" ({s} bytes)"));
                return Err(DebianError::DigestMismatch {
                    what: what.to_string(),
                    expected: format!("{sha256}{shown}"),
                    actual: format!("{actual} ({size} bytes)"),
                });
            }
        }
        let path = self.dir.join(actual.hex());
        temp.persist(&path)
            .map_err(|e| self.cache_error(&path, e.error))?;
        Ok((path, actual))
    }

    fn cache_error(&self, path: &Path, source: io::Error) -> DebianError {
        DebianError::Cache {
            path: path.to_path_buf(),
            source,
        }
    }
}
