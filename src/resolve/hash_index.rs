//! A stat-keyed index of file digests for `path:` sources, so a rebuild hashes only the
//! files that changed.
//!
//! One index file per source root, in the cache directory
//! (`hash-index-v1/<sha256 of the root's path>.json`), maps each file's path below the
//! root to its device, inode, size, mtime and ctime (nanoseconds) and its SHA-256. A file
//! whose current `lstat` matches all five is not read; any other file is hashed.
//!
//! Why a match cannot give a wrong digest: every write to a file sets its ctime to the
//! kernel's current time, and nothing can set ctime back (`utimensat` sets mtime and
//! atime, and stamps ctime with "now"). An entry is recorded only if the file's stat did
//! not change while it was hashed, and only if its ctime lies more than
//! [`SETTLE_NS`] before the moment this index was opened (the mtime of a stamp file
//! touched then, read back from the file system: cairn reads no clock). Any later write
//! therefore stamps a ctime at or after that moment, minus at most the file system's
//! timestamp granularity (at most 2 s, FAT), which differs from the recorded one: the
//! entry no longer matches and the file is hashed. This is git's "racy clean" rule, made
//! strict: a file written in the same timestamp tick as the index would look unchanged,
//! so such files are never recorded and are hashed on every build until they settle.
//! Replacing a file (rename over it) changes its inode. What this does not cover: a
//! system clock set backwards across builds, and tools that write a device behind the
//! file system's back; `--locked` builds therefore hash every file regardless of the index
//! (and refresh it).

use crate::digest::Sha256Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const INDEX_DIR: &str = "hash-index-v1";
/// How long before the index was opened a file's ctime must lie to be recorded: above the
/// coarsest timestamp granularity of Linux file systems (FAT's 2 s).
pub const SETTLE_NS: i128 = 3_000_000_000;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    pub fn of(meta: &fs::Metadata) -> Self {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    stamp: FileStamp,
    sha256: Sha256Digest,
}

/// The index of one source root, loaded for one build.
pub struct HashIndex {
    file: PathBuf,
    /// Whether lookups may answer (false on `--locked` builds: hash everything).
    trusted: bool,
    /// The file system's time when the index was opened.
    opened_ns: i128,
    old: BTreeMap<String, Record>,
    new: Mutex<BTreeMap<String, Record>>,
}

impl HashIndex {
    /// Opens the index of `root` in `cache_dir`. `trusted: false` makes every lookup a
    /// miss while still recording. Errors only if the cache directory cannot be written.
    pub fn open(cache_dir: &Path, root: &Path, trusted: bool) -> io::Result<Self> {
        let dir = cache_dir.join(INDEX_DIR);
        fs::create_dir_all(&dir)?;
        let absolute = std::path::absolute(root)?;
        let name = Sha256Digest::of(absolute.as_os_str().as_encoded_bytes()).hex();
        let file = dir.join(format!("{name}.json"));
        // The stamp's mtime is "now" as the file system sees it.
        let stamp = tempfile::NamedTempFile::new_in(&dir)?;
        let opened_ns = FileStamp::of(&stamp.as_file().metadata()?).mtime_ns;
        drop(stamp);
        let old = fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Ok(HashIndex {
            file,
            trusted,
            opened_ns,
            old,
            new: Mutex::new(BTreeMap::new()),
        })
    }

    /// The recorded digest of `rel_path` if its stamp is unchanged. A hit is kept for
    /// the next build.
    pub fn lookup(&self, rel_path: &str, stamp: &FileStamp) -> Option<Sha256Digest> {
        if !self.trusted {
            return None;
        }
        let record = self.old.get(rel_path).filter(|r| r.stamp == *stamp)?;
        self.keep(rel_path, *stamp, record.sha256);
        Some(record.sha256)
    }

    /// Records a digest computed now: `before` is the stamp taken before hashing,
    /// `after` the one taken after. Unsettled or changing files are not recorded.
    pub fn record(
        &self,
        rel_path: &str,
        before: &FileStamp,
        after: &FileStamp,
        sha256: Sha256Digest,
    ) {
        if before == after && before.ctime_ns < self.opened_ns - SETTLE_NS {
            self.keep(rel_path, *before, sha256);
        }
    }

    fn keep(&self, rel_path: &str, stamp: FileStamp, sha256: Sha256Digest) {
        if let Ok(mut new) = self.new.lock() {
            new.insert(rel_path.to_string(), Record { stamp, sha256 });
        }
    }

    /// Replaces the stored index with what this build saw (files gone are dropped),
    /// atomically: concurrent builds each write a whole index, the last one stays.
    pub fn save(self) -> io::Result<()> {
        let new = self.new.into_inner().unwrap_or_default();
        if new.is_empty() && self.old.is_empty() {
            return Ok(());
        }
        let dir = self.file.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(io::BufWriter::new(tmp.as_file_mut()), &new)?;
        tmp.persist(&self.file).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_reader;

    /// Opens the index as a build starting `later_s` seconds after now would.
    fn open_later(cache: &Path, root: &Path, trusted: bool, later_s: i128) -> HashIndex {
        let mut index = HashIndex::open(cache, root, trusted).unwrap();
        index.opened_ns += later_s * 1_000_000_000;
        index
    }

    fn stamp(path: &Path) -> FileStamp {
        FileStamp::of(&fs::symlink_metadata(path).unwrap())
    }

    fn record(index: &HashIndex, root: &Path, rel: &str) -> Sha256Digest {
        let before = stamp(&root.join(rel));
        let (digest, _) = sha256_reader(fs::File::open(root.join(rel)).unwrap()).unwrap();
        index.record(rel, &before, &stamp(&root.join(rel)), digest);
        digest
    }

    #[test]
    fn settled_unchanged_files_hit_and_any_write_misses() {
        let cache = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a");
        fs::write(&file, b"first").unwrap();
        // A build well after the file was written records it.
        let index = open_later(cache.path(), root.path(), true, 10);
        let digest = record(&index, root.path(), "a");
        index.save().unwrap();
        let index = open_later(cache.path(), root.path(), true, 20);
        assert_eq!(index.lookup("a", &stamp(&file)), Some(digest));

        // Same size, mtime put back: the ctime still tells.
        let mtime = fs::metadata(&file).unwrap().modified().unwrap();
        fs::write(&file, b"other").unwrap();
        fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(index.lookup("a", &stamp(&file)), None);
        // Not trusted (--locked): never a hit.
        let locked = open_later(cache.path(), root.path(), false, 20);
        fs::write(&file, b"first").unwrap();
        let digest = record(&locked, root.path(), "a");
        locked.save().unwrap();
        let locked = open_later(cache.path(), root.path(), false, 30);
        assert_eq!(locked.lookup("a", &stamp(&file)), None);
        let trusted = open_later(cache.path(), root.path(), true, 30);
        assert_eq!(trusted.lookup("a", &stamp(&file)), Some(digest));
    }

    #[test]
    fn files_written_just_before_the_build_are_not_recorded() {
        let cache = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("fresh"), b"racy").unwrap();
        let index = HashIndex::open(cache.path(), root.path(), true).unwrap();
        record(&index, root.path(), "fresh");
        index.save().unwrap();
        let next = open_later(cache.path(), root.path(), true, 60);
        assert_eq!(
            next.lookup("fresh", &stamp(&root.path().join("fresh"))),
            None
        );
    }

    #[test]
    fn a_file_changed_while_hashed_is_not_recorded() {
        let cache = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a");
        fs::write(&file, b"one").unwrap();
        let index = open_later(cache.path(), root.path(), true, 10);
        let before = stamp(&file);
        fs::write(&file, b"two").unwrap();
        index.record("a", &before, &stamp(&file), Sha256Digest::of(b"one"));
        index.save().unwrap();
        let next = open_later(cache.path(), root.path(), true, 20);
        assert_eq!(next.lookup("a", &before), None);
    }
}
