//! A stat-keyed index of file digests for `path:` sources, so a rebuild hashes only the
//! files that changed.
//!
//! One index file per source root, in the cache directory
//! (`hash-index-v2/<sha256 of the root's path>`), maps each file's path below the root
//! to its device, inode, size, mtime and ctime (nanoseconds) and its SHA-256. A file
//! whose current `lstat` matches all five is not read; any other file is hashed. The
//! file is binary (records sorted by path, then a SHA-256 of everything before it): at
//! 40,000 files it loads in milliseconds, where JSON took tens; one whose trailing
//! digest does not match (torn, damaged) is ignored, so a damaged index costs a
//! re-hash, never a wrong digest. A build that found every file as recorded does not
//! rewrite it.
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
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

const INDEX_DIR: &str = "hash-index-v2";
const MAGIC: &[u8] = b"cairn-hash-index-v2\n";
/// How long before the index was opened a file's ctime must lie to be recorded: above the
/// coarsest timestamp granularity of Linux file systems (FAT's 2 s).
pub const SETTLE_NS: i128 = 3_000_000_000;

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// A file's stamp and the digest of its content when it had that stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
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
    /// The stored index as read: its bytes, and each record with where its path is in
    /// them (sorted by path; no string is allocated per file).
    old_bytes: Vec<u8>,
    old: Vec<usize>,
    /// What this build saw, to keep for the next: the stored records that still hold
    /// (their places in `old`: a rebuild that changed nothing holds 8 bytes a file, not
    /// a record), and new records, whose paths are the source entries' own, shared.
    hits: Mutex<Vec<usize>>,
    fresh: Mutex<Vec<(Arc<str>, Record)>>,
}

impl HashIndex {
    /// Opens the index of `root` in `cache_dir`. `trusted: false` makes every lookup a
    /// miss while still recording. Errors only if the cache directory cannot be written.
    pub fn open(cache_dir: &Path, root: &Path, trusted: bool) -> io::Result<Self> {
        let dir = cache_dir.join(INDEX_DIR);
        fs::create_dir_all(&dir)?;
        let absolute = std::path::absolute(root)?;
        let name = Sha256Digest::of(absolute.as_os_str().as_encoded_bytes()).hex();
        let file = dir.join(name);
        // The stamp's mtime is "now" as the file system sees it.
        let stamp = tempfile::NamedTempFile::new_in(&dir)?;
        let opened_ns = FileStamp::of(&stamp.as_file().metadata()?).mtime_ns;
        drop(stamp);
        let old_bytes = fs::read(&file).unwrap_or_default();
        let old = decode(&old_bytes).unwrap_or_default();
        Ok(HashIndex {
            file,
            trusted,
            opened_ns,
            old_bytes,
            old,
            hits: Mutex::new(Vec::new()),
            fresh: Mutex::new(Vec::new()),
        })
    }

    /// The path and record of the stored record starting at `at` (checked when loaded).
    fn old_record(&self, at: usize) -> (&[u8], Record) {
        let (path, record, _) =
            record_at(&self.old_bytes, at).expect("the stored index was checked when loaded");
        (&self.old_bytes[path], record)
    }

    /// The recorded digest of `rel_path` if its stamp is unchanged; the record is then
    /// kept for the next build.
    pub fn lookup(&self, rel_path: &str, stamp: &FileStamp) -> Option<Sha256Digest> {
        if !self.trusted {
            return None;
        }
        let i = self
            .old
            .binary_search_by(|at| self.old_record(*at).0.cmp(rel_path.as_bytes()))
            .ok()?;
        let record = self.old_record(self.old[i]).1;
        if record.stamp != *stamp {
            return None;
        }
        lock(&self.hits).push(i);
        Some(record.sha256)
    }

    /// Keeps a digest computed now for the next build, unless the file was not settled
    /// or changed while hashed (`before` is the stamp taken before hashing, `after` the
    /// one taken after); says whether it was kept.
    pub fn record(
        &self,
        rel_path: &Arc<str>,
        before: &FileStamp,
        after: &FileStamp,
        sha256: Sha256Digest,
    ) -> bool {
        let settled = before == after && before.ctime_ns < self.opened_ns - SETTLE_NS;
        if settled {
            let record = Record {
                stamp: *before,
                sha256,
            };
            lock(&self.fresh).push((Arc::clone(rel_path), record));
        }
        settled
    }

    /// Replaces the stored index with what this build saw (files gone are dropped),
    /// atomically: concurrent builds each write a whole index, the last one stays. An
    /// index that would not change is left alone.
    pub fn save(self) -> io::Result<()> {
        let mut hits = self
            .hits
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let mut fresh = self
            .fresh
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        hits.sort_unstable();
        hits.dedup();
        fresh.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if fresh.is_empty() && hits.len() == self.old.len() {
            return Ok(());
        }
        // Both lists are in path order (`old` is): merged as they are written.
        let mut kept = hits
            .iter()
            .map(|&i| {
                let (path, record, _) = record_at(&self.old_bytes, self.old[i])
                    .expect("the stored index was checked when loaded");
                (&self.old_bytes[path], record)
            })
            .peekable();
        let mut fresh = fresh
            .iter()
            .map(|(path, record)| (path.as_bytes(), *record))
            .peekable();
        let merged = std::iter::from_fn(|| match (kept.peek(), fresh.peek()) {
            (Some(k), Some(f)) if k.0 < f.0 => kept.next(),
            (Some(_), None) => kept.next(),
            _ => fresh.next(),
        });
        let dir = self.file.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        {
            let mut out = io::BufWriter::new(tmp.as_file_mut());
            encode(merged, &mut out)?;
            out.flush()?;
        }
        tmp.persist(&self.file).map_err(|e| e.error)?;
        Ok(())
    }
}

/// A list shared by the walk's threads; a panic elsewhere leaves it usable.
fn lock<T>(list: &Mutex<Vec<T>>) -> std::sync::MutexGuard<'_, Vec<T>> {
    list.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `MAGIC`, then per record: path length (u32) and path, dev, ino, size (u64), mtime and
/// ctime (i128), SHA-256 (32 bytes), all little-endian; then the SHA-256 of all that.
/// Writes the index of `records` to `out`, streamed with its trailing digest: at a
/// million files it is some 100 MB, which a buffer would hold beside the records.
fn encode<'p>(
    records: impl Iterator<Item = (&'p [u8], Record)>,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut out = crate::digest::HashingWriter::new(out);
    out.write_all(MAGIC)?;
    for (path, r) in records {
        out.write_all(&(path.len() as u32).to_le_bytes())?;
        out.write_all(path)?;
        for n in [r.stamp.dev, r.stamp.ino, r.stamp.size] {
            out.write_all(&n.to_le_bytes())?;
        }
        for n in [r.stamp.mtime_ns, r.stamp.ctime_ns] {
            out.write_all(&n.to_le_bytes())?;
        }
        out.write_all(r.sha256.as_bytes())?;
    }
    let (digest, _, out) = out.finish();
    out.write_all(digest.as_bytes())
}

/// Where each record of an encoded index starts in `bytes`, checked whole (digest,
/// order, every field); `None` if it is not an index, or is damaged. Offsets, not
/// decoded records: at a million files, 8 MB rather than 112.
fn decode(bytes: &[u8]) -> Option<Vec<usize>> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, digest) = bytes.split_at(body_len);
    if Sha256Digest::of(body).as_bytes() != digest {
        return None;
    }
    if !body.starts_with(MAGIC) {
        return None;
    }
    let mut starts = Vec::new();
    let mut last_path: Option<std::ops::Range<usize>> = None;
    let mut at = MAGIC.len();
    while at < body.len() {
        let (path, _, next) = record_at(body, at)?;
        // Written sorted; anything else is not an index this code wrote.
        if last_path.is_some_and(|last| body[last] >= body[path.clone()]) {
            return None;
        }
        starts.push(at);
        last_path = Some(path);
        at = next;
    }
    Some(starts)
}

/// The record that starts at `at` in `body`: the range of its path, the record, and
/// where the next one starts.
fn record_at(body: &[u8], at: usize) -> Option<(std::ops::Range<usize>, Record, usize)> {
    let path_start = at + 4;
    let mut at = at;
    let mut take = |n: usize| -> Option<&[u8]> {
        let range = at..at.checked_add(n).filter(|end| *end <= body.len())?;
        at = range.end;
        Some(&body[range])
    };
    let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    std::str::from_utf8(take(len)?).ok()?;
    let path = path_start..path_start + len;
    let mut u64_next = || Some(u64::from_le_bytes(take(8)?.try_into().ok()?));
    let (dev, ino, size) = (u64_next()?, u64_next()?, u64_next()?);
    let mut i128_next = || Some(i128::from_le_bytes(take(16)?.try_into().ok()?));
    let (mtime_ns, ctime_ns) = (i128_next()?, i128_next()?);
    let sha256 = Sha256Digest::from_bytes(take(32)?.try_into().ok()?);
    let stamp = FileStamp {
        dev,
        ino,
        size,
        mtime_ns,
        ctime_ns,
    };
    Some((path, Record { stamp, sha256 }, at))
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
        index.record(&rel.into(), &before, &stamp(&root.join(rel)), digest);
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
        assert!(!index.record(
            &"a".into(),
            &before,
            &stamp(&file),
            Sha256Digest::of(b"one")
        ));
        index.save().unwrap();
        let next = open_later(cache.path(), root.path(), true, 20);
        assert_eq!(next.lookup("a", &before), None);
    }

    #[test]
    fn a_damaged_index_is_ignored_and_an_unchanged_one_is_not_rewritten() {
        let cache = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("a");
        fs::write(&file, b"content").unwrap();
        let index = open_later(cache.path(), root.path(), true, 10);
        let digest = record(&index, root.path(), "a");
        let path = index.file.clone();
        index.save().unwrap();
        // Found as recorded: the index file stays as it was.
        let written = fs::metadata(&path).unwrap().modified().unwrap();
        let index = open_later(cache.path(), root.path(), true, 20);
        assert_eq!(index.lookup("a", &stamp(&file)), Some(digest));
        index.save().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), written);
        // One byte of the stored digest changed: the whole index is ignored.
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() - 40;
        bytes[at] ^= 1;
        fs::write(&path, bytes).unwrap();
        let index = open_later(cache.path(), root.path(), true, 30);
        assert_eq!(index.lookup("a", &stamp(&file)), None);
    }
}
