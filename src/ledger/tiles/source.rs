//! Where `ledger verify --tiles` reads a tiled log from: a directory, or a URL prefix
//! over HTTP(S).
//!
//! Every read has a size limit (a hash tile is at most 8,192 bytes, an entry bundle
//! 256 entries of at most 65,535 bytes each, a checkpoint 64 KiB), so a hostile server
//! cannot exhaust memory. Over the network: HTTPS, or plain HTTP only to a loopback
//! host; no proxy from the environment; a deadline on connecting, on the response and
//! on each whole request.

use crate::registry::is_loopback;
use crate::registry::reference::hostname_of;
use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

/// The most a checkpoint note may weigh.
const CHECKPOINT_LIMIT: u64 = 64 << 10;
/// A full hash tile: 256 SHA-256 hashes.
const HASH_TILE_LIMIT: u64 = 256 * 32;
/// A full entry bundle of the largest entries.
const BUNDLE_LIMIT: u64 = 256 * (2 + u16::MAX as u64);

/// Deadlines of one tile request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0:?} is not a tiles location: give a directory, an https:// URL, or an http:// URL on a loopback host")]
    Location(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{location} is larger than {limit} bytes, the most a {what} can be")]
    TooLarge {
        location: String,
        limit: u64,
        what: &'static str,
    },
    #[error("cannot fetch {url}: {reason}")]
    Http { url: String, reason: String },
}

/// A published tiled log.
pub enum TileSource {
    Directory(PathBuf),
    Url { prefix: String, agent: ureq::Agent },
}

impl TileSource {
    /// `location` is an `https://` URL prefix, an `http://` one on a loopback host, or
    /// a directory.
    pub fn new(location: &str, user_agent: &str) -> Result<TileSource, SourceError> {
        let remote = ["https://", "http://"]
            .iter()
            .find_map(|scheme| location.strip_prefix(scheme).map(|rest| (*scheme, rest)));
        let Some((scheme, rest)) = remote else {
            return Ok(TileSource::Directory(PathBuf::from(location)));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty()
            || host.contains('@')
            || (scheme == "http://" && !is_loopback(hostname_of(host)))
        {
            return Err(SourceError::Location(location.to_string()));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // Never from the environment: the library reads no environment.
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .user_agent(user_agent)
            .build()
            .into();
        Ok(TileSource::Url {
            prefix: location.trim_end_matches('/').to_string(),
            agent,
        })
    }

    pub fn checkpoint(&self) -> Result<String, SourceError> {
        let bytes = self.read("checkpoint", CHECKPOINT_LIMIT, "checkpoint")?;
        String::from_utf8(bytes).map_err(|_| SourceError::Io {
            path: "checkpoint".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
        })
    }

    pub fn hash_tile(&self, path: &str) -> Result<Vec<u8>, SourceError> {
        self.read(path, HASH_TILE_LIMIT, "hash tile")
    }

    pub fn bundle(&self, path: &str) -> Result<Vec<u8>, SourceError> {
        self.read(path, BUNDLE_LIMIT, "entry bundle")
    }

    /// The file at `path` under the log, if it is at most `limit` bytes.
    fn read(&self, path: &str, limit: u64, what: &'static str) -> Result<Vec<u8>, SourceError> {
        match self {
            TileSource::Directory(dir) => {
                let full = dir.join(path);
                let io = |source| SourceError::Io {
                    path: full.clone(),
                    source,
                };
                let file = std::fs::File::open(&full).map_err(io)?;
                let mut bytes = Vec::new();
                file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
                if bytes.len() as u64 > limit {
                    return Err(SourceError::TooLarge {
                        location: full.display().to_string(),
                        limit,
                        what,
                    });
                }
                Ok(bytes)
            }
            TileSource::Url { prefix, agent } => {
                let url = format!("{prefix}/{path}");
                let error = |reason: String| SourceError::Http {
                    url: url.clone(),
                    reason,
                };
                let mut response = agent.get(&url).call().map_err(|e| error(e.to_string()))?;
                let status = response.status();
                if !status.is_success() {
                    return Err(error(format!("the server answered {status}")));
                }
                response
                    .body_mut()
                    .with_config()
                    .limit(limit)
                    .read_to_vec()
                    .map_err(|e| match e {
                        ureq::Error::BodyExceedsLimit(_) => SourceError::TooLarge {
                            location: url.clone(),
                            limit,
                            what,
                        },
                        e => error(e.to_string()),
                    })
            }
        }
    }
}
