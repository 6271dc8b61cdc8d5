//! The ledger published as a C2SP tiled transparency log (c2sp.org/tlog-tiles), so that
//! any static web server or object store serves it and auditors verify it without
//! access to the ledger's store.
//!
//! Layout under a directory (or URL prefix): `checkpoint`, the signed note of
//! [`super::note`]; `tile/<L>/<N>[.p/<W>]`, hash tiles of up to 256 RFC 6962 hashes
//! ([`super::merkle`]) at level `L`; `tile/entries/<N>[.p/<W>]`, entry bundles holding
//! the ledger's entry lines (without their `\n`), each prefixed by its length as a
//! big-endian `u16`. The leaves are the same as the ledger's, so a tiles checkpoint has
//! the root `cairn ledger checkpoint` prints.
//!
//! [`write`] takes the entry lines as an iterator (any store can feed it) and is
//! incremental: a full tile already present is compared with what it would write and
//! never rewritten (a difference means history was rewritten: refused); new files are
//! written to a temporary name, fsynced and renamed; the checkpoint comes last and must
//! be an append-only extension of the one already published. Runs on one directory
//! take turns (an exclusive `flock` on the directory). Partial tiles of earlier
//! sizes stay, as the spec asks, for clients holding older checkpoints.
//!
//! [`verify`] streams the log from a [`TileSource`] bundle by bundle (memory bounded by
//! one verification window), checks every entry as `ledger verify` does, recomputes
//! every hash tile and the root, and, given an older checkpoint, that the log extends it.

use super::entry::Entry;
use super::merkle::{self, Hash};
use super::note::{self, Checkpoint, NoteError};
use super::store::{self, Stored};
use super::{b64, LedgerVerdict};
use crate::keys::{SigningKey, VerifyingKey};
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub mod source;
pub use source::{SourceError, TileSource};

/// Hashes in a full tile, and entries in a full bundle.
pub const TILE_WIDTH: u64 = 256;

/// The largest entry a bundle can hold: its length prefix is a `u16`.
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// Entries whose chain and signatures are checked together when verifying: large
/// enough for the batched signature check to spread over all cores, small enough to
/// bound memory.
const VERIFY_WINDOW: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum TilesError {
    #[error("reading the ledger: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("entry {index} is {len} bytes; a C2SP tile entry bundle holds entries of at most 65,535 bytes (a 2-byte length prefix), so this ledger cannot be published as tiles")]
    EntryTooLarge { index: u64, len: usize },
    #[error("{path} already exists and differs from what the ledger gives for it: the published history was rewritten; refusing to continue (publish to a new directory if this is intended)")]
    Rewritten { path: String },
    #[error("the published checkpoint covers {published} entries but the ledger has only {ledger}: entries were removed; refusing to publish a shorter log")]
    Shrunk { published: u64, ledger: u64 },
    #[error("the ledger's first {size} entries no longer have the root of the published checkpoint: the published history was rewritten; refusing to continue")]
    Inconsistent { size: u64 },
    #[error("the published checkpoint {path}: {error} (it must be signed by the same key and origin; publish to a new directory to change them)")]
    PublishedCheckpoint { path: PathBuf, error: NoteError },
    #[error("the checkpoint: {0}")]
    Checkpoint(#[source] NoteError),
    #[error("the checkpoint is for the log {found:?}, not {expected:?} (give the log's origin with --origin)")]
    Origin { found: String, expected: String },
    #[error("the old checkpoint: {0}")]
    OldCheckpoint(#[source] NoteError),
    #[error("{path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// The path of a tile or bundle: `N` in 3-digit groups, all but the last prefixed by
/// `x` (1234067 is `x001/x234/067`), and `.p/<W>` for a partial one.
pub fn tile_path(kind: TileKind, index: u64, width: u64) -> String {
    let mut groups = Vec::new();
    let mut n = index;
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut path = match kind {
        TileKind::Hashes { level } => format!("tile/{level}"),
        TileKind::Entries => "tile/entries".to_string(),
    };
    for (i, group) in groups.iter().rev().enumerate() {
        let x = if i + 1 < groups.len() { "x" } else { "" };
        path.push_str(&format!("/{x}{group:03}"));
    }
    if width < TILE_WIDTH {
        path.push_str(&format!(".p/{width}"));
    }
    path
}

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileKind {
    Hashes { level: u32 },
    Entries,
}

/// A tile or bundle as the entries determine it.
struct Tile {
    path: String,
    bytes: Vec<u8>,
}

/// Builds the tiles from the entries, one at a time: completed (full) tiles are handed
/// out as soon as their last entry arrives; the rest of the tree is the unfinished
/// tile of each level.
#[derive(Default)]
struct Tiler {
    size: u64,
    bundle: Vec<u8>,
    /// `levels[l]`: the hashes of the unfinished tile at level `l` (fewer than 256).
    levels: Vec<Vec<Hash>>,
}

impl Tiler {
    /// Adds the entry at index `self.size`; `full` hears of each tile it completes.
    fn push(
        &mut self,
        entry: &[u8],
        full: &mut impl FnMut(Tile) -> Result<(), TilesError>,
    ) -> Result<(), TilesError> {
        if entry.len() > MAX_ENTRY_BYTES {
            return Err(TilesError::EntryTooLarge {
                index: self.size,
                len: entry.len(),
            });
        }
        self.bundle
            .extend_from_slice(&(entry.len() as u16).to_be_bytes());
        self.bundle.extend_from_slice(entry);
        self.add(0, merkle::leaf_hash(entry));
        self.size += 1;
        if self.levels[0].len() as u64 == TILE_WIDTH {
            let index = self.size / TILE_WIDTH - 1;
            full(Tile {
                path: tile_path(TileKind::Entries, index, TILE_WIDTH),
                bytes: std::mem::take(&mut self.bundle),
            })?;
        }
        // A full tile at one level is one hash at the level above, which may fill it.
        let mut level = 0;
        while self.levels.get(level).map(Vec::len) == Some(TILE_WIDTH as usize) {
            let hashes = std::mem::take(&mut self.levels[level]);
            let index = self.size / TILE_WIDTH.pow(level as u32 + 1) - 1;
            full(Tile {
                path: tile_path(
                    TileKind::Hashes {
                        level: level as u32,
                    },
                    index,
                    TILE_WIDTH,
                ),
                bytes: hashes.concat(),
            })?;
            self.add(level + 1, merkle::root(&hashes));
            level += 1;
        }
        Ok(())
    }

    fn add(&mut self, level: usize, hash: Hash) {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        self.levels[level].push(hash);
    }

    /// The partial tiles and bundle of the tree so far: at each level, the unfinished
    /// tile if it is not empty (spec: `floor(size / 256^L) mod 256` hashes).
    fn partial_tiles(&self) -> Vec<Tile> {
        let mut tiles = Vec::new();
        if !self.bundle.is_empty() {
            tiles.push(Tile {
                path: tile_path(
                    TileKind::Entries,
                    self.size / TILE_WIDTH,
                    self.levels[0].len() as u64,
                ),
                bytes: self.bundle.clone(),
            });
        }
        for (level, hashes) in self.levels.iter().enumerate() {
            if hashes.is_empty() {
                continue;
            }
            tiles.push(Tile {
                path: tile_path(
                    TileKind::Hashes {
                        level: level as u32,
                    },
                    self.size / TILE_WIDTH.pow(level as u32 + 1),
                    hashes.len() as u64,
                ),
                bytes: hashes.concat(),
            });
        }
        tiles
    }

    /// The RFC 6962 root of the tree so far. The unfinished tiles, top level first,
    /// split into perfect subtrees by the binary digits of their widths, are exactly
    /// the perfect subtrees of the whole tree, largest first; MTH joins those from the
    /// right.
    fn root(&self) -> Hash {
        let mut subtrees = Vec::new();
        for hashes in self.levels.iter().rev() {
            let mut start = 0;
            for bit in (0..8).rev() {
                let len = 1 << bit;
                if hashes.len() & len != 0 {
                    subtrees.push(merkle::root(&hashes[start..start + len]));
                    start += len;
                }
            }
        }
        let Some((last, rest)) = subtrees.split_last() else {
            return merkle::empty_root();
        };
        rest.iter()
            .rev()
            .fold(*last, |right, left| merkle::node_hash(left, &right))
    }
}

/// What [`write`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub entries: u64,
    /// Files written (new full tiles, new partial tiles, the checkpoint).
    pub written: u64,
    /// Tiles already published with the same bytes, left untouched.
    pub unchanged: u64,
    /// The signed checkpoint now at `DIR/checkpoint`.
    pub checkpoint: String,
}

/// Publishes the entries (each one entry line, without its `\n`) as tiles under `dir`,
/// and a checkpoint signed by `key` for `origin`. See the module doc for what is kept,
/// refused and written when `dir` already holds a published log.
pub fn write<T, E>(
    dir: &Path,
    entries: impl IntoIterator<Item = Result<T, E>>,
    origin: &str,
    key: &SigningKey,
) -> Result<Written, TilesError>
where
    T: AsRef<[u8]>,
    E: std::error::Error + Send + Sync + 'static,
{
    // One publisher at a time: another run could otherwise put back an older checkpoint
    // after this one. The lock is on the directory itself, so the layout holds only
    // the spec's files.
    std::fs::create_dir_all(dir).map_err(Publisher::io("create", dir))?;
    let lock = std::fs::File::open(dir).map_err(Publisher::io("open", dir))?;
    lock.lock().map_err(Publisher::io("lock", dir))?;
    let checkpoint_path = dir.join("checkpoint");
    let published = match std::fs::read_to_string(&checkpoint_path) {
        Ok(text) => Some(
            note::verify(&text, origin, &key.verifying_key())
                .and_then(|body| Checkpoint::parse(&body))
                .map_err(|error| TilesError::PublishedCheckpoint {
                    path: checkpoint_path.clone(),
                    error,
                })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(TilesError::Io {
                action: "read",
                path: checkpoint_path,
                source,
            })
        }
    };
    let mut out = Publisher {
        dir,
        written: 0,
        unchanged: 0,
        directories: Default::default(),
    };
    let mut tiler = Tiler::default();
    let check_prefix = |tiler: &Tiler| match &published {
        Some(cp) if cp.size == tiler.size && cp.root != tiler.root() => {
            Err(TilesError::Inconsistent { size: cp.size })
        }
        _ => Ok(()),
    };
    check_prefix(&tiler)?;
    for entry in entries {
        let entry = entry.map_err(|e| TilesError::Read(Box::new(e)))?;
        tiler.push(entry.as_ref(), &mut |tile| out.put(&tile))?;
        check_prefix(&tiler)?;
    }
    if let Some(cp) = &published {
        if cp.size > tiler.size {
            return Err(TilesError::Shrunk {
                published: cp.size,
                ledger: tiler.size,
            });
        }
    }
    for tile in tiler.partial_tiles() {
        out.put(&tile)?;
    }
    let body = Checkpoint {
        origin: origin.to_string(),
        size: tiler.size,
        root: tiler.root(),
        extensions: Vec::new(),
    }
    .body();
    let checkpoint = note::sign(&body, origin, key).map_err(TilesError::Checkpoint)?;
    // Everything the checkpoint points at is durable before the checkpoint is.
    out.sync_directories()?;
    out.replace("checkpoint", checkpoint.as_bytes())?;
    out.sync_directory(dir)?;
    Ok(Written {
        entries: tiler.size,
        written: out.written,
        unchanged: out.unchanged,
        checkpoint,
    })
}

/// Writes tiles under a directory: each file atomically, an existing tile only if it
/// is identical.
struct Publisher<'a> {
    dir: &'a Path,
    written: u64,
    unchanged: u64,
    /// Directories that gained files, to fsync before the checkpoint.
    directories: std::collections::BTreeSet<PathBuf>,
}

impl Publisher<'_> {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TilesError {
        let path = path.to_path_buf();
        move |source| TilesError::Io {
            action,
            path,
            source,
        }
    }

    /// A tile's path names the entries it covers, so an existing file with other bytes
    /// (full or partial) means those entries changed.
    fn put(&mut self, tile: &Tile) -> Result<(), TilesError> {
        let path = self.dir.join(&tile.path);
        match std::fs::read(&path) {
            Ok(existing) if existing == tile.bytes => {
                self.unchanged += 1;
                return Ok(());
            }
            Ok(_) => {
                return Err(TilesError::Rewritten {
                    path: tile.path.clone(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Self::io("read", &path)(e)),
        }
        self.replace(&tile.path, &tile.bytes)
    }

    /// Writes `bytes` to `relative` under the directory through a temporary file in the
    /// same directory, fsynced, then renamed over it.
    fn replace(&mut self, relative: &str, bytes: &[u8]) -> Result<(), TilesError> {
        let path = self.dir.join(relative);
        let parent = path.parent().expect("a tile path has a directory");
        std::fs::create_dir_all(parent).map_err(Self::io("create", parent))?;
        let mut temp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(parent)
            .map_err(Self::io("create a temporary file in", parent))?;
        temp.write_all(bytes)
            .and_then(|()| temp.as_file().sync_data())
            .map_err(Self::io("write", temp.path()))?;
        // Served files are world-readable, like any other static content.
        std::fs::set_permissions(
            temp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .map_err(Self::io("set the mode of", &path))?;
        temp.persist(&path)
            .map_err(|e| Self::io("rename into", &path)(e.error))?;
        self.written += 1;
        self.directories.insert(parent.to_path_buf());
        Ok(())
    }

    fn sync_directories(&mut self) -> Result<(), TilesError> {
        for dir in std::mem::take(&mut self.directories) {
            self.sync_directory(&dir)?;
        }
        Ok(())
    }

    fn sync_directory(&self, dir: &Path) -> Result<(), TilesError> {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(Self::io("sync", dir))
    }
}

/// Splits an entry bundle into its entries; it must hold exactly `count`.
fn split_bundle<'a>(path: &str, bundle: &'a [u8], count: u64) -> Result<Vec<&'a [u8]>, TilesError> {
    let malformed = |reason: String| TilesError::Malformed {
        path: path.to_string(),
        reason,
    };
    let mut entries = Vec::with_capacity(count as usize);
    let mut rest = bundle;
    while !rest.is_empty() {
        let [hi, lo, tail @ ..] = rest else {
            return Err(malformed("ends inside a length prefix".into()));
        };
        let len = u16::from_be_bytes([*hi, *lo]) as usize;
        if tail.len() < len {
            return Err(malformed(format!(
                "entry {} is cut short ({} of {len} bytes)",
                entries.len(),
                tail.len()
            )));
        }
        entries.push(&tail[..len]);
        rest = &tail[len..];
    }
    if entries.len() as u64 != count {
        return Err(malformed(format!(
            "holds {} entries, but the checkpoint's size calls for {count}",
            entries.len()
        )));
    }
    Ok(entries)
}

/// What `ledger verify --tiles` checks against besides the tiles.
pub struct TilesTrust<'a> {
    /// Keys trusted to sign entries.
    pub trusted: &'a [(String, VerifyingKey)],
    /// The key that signs checkpoints.
    pub checkpoint_key: &'a VerifyingKey,
    pub origin: &'a str,
    /// An older checkpoint the auditor saved, which the log must extend.
    pub old_checkpoint: Option<&'a str>,
}

/// Verifies the log served by `source` from its tiles alone. Problems in what the
/// tiles say (an entry, a hash tile, the root, the old checkpoint) are listed in the
/// verdict; a log that cannot be read as tiles at all (a missing or malformed file, a
/// checkpoint that does not verify) is an error naming the file.
pub fn verify(source: &TileSource, trust: &TilesTrust) -> Result<LedgerVerdict, TilesError> {
    let note_text = source.checkpoint()?;
    let checkpoint = note::verify(&note_text, trust.origin, trust.checkpoint_key)
        .and_then(|body| Checkpoint::parse(&body))
        .map_err(TilesError::Checkpoint)?;
    if checkpoint.origin != trust.origin {
        return Err(TilesError::Origin {
            found: checkpoint.origin,
            expected: trust.origin.to_string(),
        });
    }
    let old = trust
        .old_checkpoint
        .map(|text| {
            note::verify(text, trust.origin, trust.checkpoint_key)
                .and_then(|body| Checkpoint::parse(&body))
                .map_err(TilesError::OldCheckpoint)
        })
        .transpose()?;
    let mut audit = Audit {
        problems: Vec::new(),
        omitted: 0,
    };
    let size = checkpoint.size;
    if let Some(old) = old.as_ref().filter(|old| old.size > size) {
        audit.report(format!(
            "held checkpoint: it covers {} entries but the tiles only {size}: entries were removed",
            old.size
        ));
    }
    let mut tiler = Tiler::default();
    let mut window = Window {
        entries: Vec::with_capacity(VERIFY_WINDOW + 1),
        indexes: Vec::with_capacity(VERIFY_WINDOW + 1),
        carried: false,
    };
    let check_old = |tiler: &Tiler, audit: &mut Audit| {
        if let Some(old) = old.as_ref().filter(|old| old.size == tiler.size) {
            if old.root != tiler.root() {
                audit.report(format!(
                    "held checkpoint: the tiles' first {} entries do not have its root {}: earlier entries were changed (history was rewritten)",
                    old.size,
                    b64(&old.root)
                ));
            }
        }
    };
    check_old(&tiler, &mut audit);
    let bundles = size.div_ceil(TILE_WIDTH);
    for n in 0..bundles {
        let count = (size - n * TILE_WIDTH).min(TILE_WIDTH);
        let path = tile_path(TileKind::Entries, n, count);
        let bundle = source.bundle(&path)?;
        for (offset, line) in split_bundle(&path, &bundle, count)?.into_iter().enumerate() {
            let index = n * TILE_WIDTH + offset as u64;
            tiler.push(line, &mut |tile| compare(source, &tile, &mut audit))?;
            check_old(&tiler, &mut audit);
            match serde_json::from_slice::<Entry>(line) {
                Ok(entry) => window.push(
                    index,
                    Stored {
                        entry,
                        line: line.to_vec(),
                    },
                ),
                Err(e) => audit.report(format!(
                    "{path}, entry at index {index}: not a ledger entry ({e})"
                )),
            }
        }
        let last_bundle = n + 1 == bundles;
        if window.entries.len() >= VERIFY_WINDOW || last_bundle {
            window.check(trust.trusted, size, &mut audit);
        }
    }
    for tile in tiler.partial_tiles() {
        compare(source, &tile, &mut audit)?;
    }
    let root = tiler.root();
    if root != checkpoint.root {
        audit.report(format!(
            "the checkpoint's root {} is not the root {} of the {size} entries in the tiles",
            b64(&checkpoint.root),
            b64(&root)
        ));
    }
    if audit.omitted > 0 {
        audit
            .problems
            .push(format!("{} more problems are not listed", audit.omitted));
    }
    Ok(LedgerVerdict {
        entries: size,
        root: b64(&root),
        torn_tail_bytes: 0,
        problems: audit.problems,
        checkpoint_checked: old.is_some(),
    })
}

/// Problems found so far, the first [`store::MAX_PROBLEMS`] listed.
struct Audit {
    problems: Vec<String>,
    omitted: u64,
}

impl Audit {
    fn report(&mut self, problem: String) {
        if self.problems.len() < store::MAX_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.omitted += 1;
        }
    }
}

/// Compares the published tile with the one the entries give. Entry bundles are what
/// the entries were read from, so only hash tiles can differ.
fn compare(source: &TileSource, tile: &Tile, audit: &mut Audit) -> Result<(), TilesError> {
    if tile.path.starts_with("tile/entries/") {
        return Ok(());
    }
    let published = source.hash_tile(&tile.path)?;
    if published != tile.bytes {
        audit.report(format!(
            "{} does not hold the hashes of the entries it covers: the tile or the entries were altered",
            tile.path
        ));
    }
    Ok(())
}

/// Entries waiting for their chain and signature check, with their index in the log.
/// After a check the last one stays, already checked, as the first: the next entries'
/// `seq` and `prev` are checked against it.
struct Window {
    entries: Vec<Stored>,
    indexes: Vec<u64>,
    carried: bool,
}

impl Window {
    fn push(&mut self, index: u64, stored: Stored) {
        self.entries.push(stored);
        self.indexes.push(index);
    }

    fn check(&mut self, trusted: &[(String, VerifyingKey)], size: u64, audit: &mut Audit) {
        let carried = usize::from(self.carried);
        if self.entries.len() <= carried {
            return;
        }
        for problem in store::verify_chain(&self.entries, trusted) {
            let position = problem.line as usize - 1;
            if position < carried {
                continue;
            }
            match problem.kind {
                store::ProblemKind::Omitted { count } => audit.omitted += count,
                mut kind => {
                    // The store counts lines from 1; here a "line" is a log position.
                    if let store::ProblemKind::Prev { previous_line, .. } = &mut kind {
                        *previous_line = self.indexes[*previous_line as usize - 1] + 1;
                    }
                    let bundle = self.indexes[position] / TILE_WIDTH;
                    let width = (size - bundle * TILE_WIDTH).min(TILE_WIDTH);
                    audit.report(format!(
                        "{}, entry {}: {kind}",
                        tile_path(TileKind::Entries, bundle, width),
                        problem.seq
                    ))
                }
            }
        }
        let last = self.entries.len() - 1;
        self.entries.drain(..last);
        self.indexes.drain(..last);
        self.carried = true;
    }
}

#[cfg(test)]
mod tests;
