//! An OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/<hex>`):
//! the one place that knows how it is stored.
//!
//! [`LayoutWriter`] writes one so that it appears complete or not at all. Everything
//! goes into a hidden temporary directory beside the destination; blobs are hashed
//! while written and named by that hash; only when the whole layout is written and
//! synced is it swapped into place with one atomic `renameat2(RENAME_EXCHANGE)`. An
//! error, Ctrl-C or crash before that leaves the previous output untouched; a lock
//! file serialises concurrent writers of the same output, and the next writer removes
//! what a killed one left (`.<name>.tmp-*`). Side files beside the layout are removed
//! before the swap and written after it, so they never describe another build's
//! layout. Blobs taken from elsewhere (the layer cache) are copied, never hard-linked,
//! and hashed on the way in ([`LayoutWriter::copy_blob`]).
//!
//! [`Layout`] reads one back through the oci-spec types: every blob read is checked
//! against its descriptor (digest and size), manifests and indexes come back typed,
//! and [`Layout::fsck`] checks every blob reachable from `index.json`.

use super::owner;
use crate::digest::{read_chunks, Blake3Digest, HashingReader, HashingWriter, Sha256Digest};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The directory of a layout holding its blobs, one subdirectory per algorithm.
const BLOBS: &str = "blobs";
/// The one digest algorithm cairn stores blobs under.
const SHA256: &str = "sha256";

/// The directory entries of a layout's blob store, as an archive of the layout
/// names them (parents first).
pub const BLOB_DIR_MEMBERS: [&str; 2] = ["blobs/", "blobs/sha256/"];

/// `<root>/blobs/sha256`: where the layout (or cache) at `root` keeps its blobs.
pub fn blobs_dir(root: &Path) -> PathBuf {
    root.join(BLOBS).join(SHA256)
}

/// `<root>/blobs/sha256/<hex>`: the file of blob `digest` in the store at `root`.
pub fn blob_path(root: &Path, digest: &Sha256Digest) -> PathBuf {
    blobs_dir(root).join(digest.hex())
}

/// `blobs/sha256/<hex>`: the name of blob `digest` relative to a layout's root, as an
/// archive of the layout names its member.
pub fn blob_member(digest: &Sha256Digest) -> String {
    format!("{BLOBS}/{SHA256}/{}", digest.hex())
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is not valid OCI JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{root}: unsupported digest `{digest}` (cairn reads sha256 blobs)")]
    UnsupportedDigest { root: PathBuf, digest: String },
    #[error("{0}")]
    ChangedBlob(Box<ChangedBlob>),
    #[error("blob {expected} is corrupt: expected {expected_size} bytes with that digest, found {found_size} bytes hashing to {found}")]
    DigestMismatch {
        expected: Sha256Digest,
        expected_size: u64,
        found: Sha256Digest,
        found_size: u64,
    },
}

/// A blob file whose bytes are not the blob it is named after.
#[derive(Debug, thiserror::Error)]
#[error("{path} should hold blob {expected} ({expected_size} bytes) but holds {found_size} bytes {found}: the file was changed after it was written, and cairn will not publish, sign or push it")]
pub struct ChangedBlob {
    pub path: PathBuf,
    pub expected: Sha256Digest,
    pub expected_size: u64,
    pub found: FoundHash,
    pub found_size: u64,
}

/// What a changed blob file's bytes hash to, by the hash it was checked with.
#[derive(Debug)]
pub enum FoundHash {
    Sha256(Sha256Digest),
    /// Checked against the BLAKE3 cairn recorded when it stored the blob.
    Blake3 {
        found: Blake3Digest,
        recorded: Blake3Digest,
    },
}

impl fmt::Display for FoundHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FoundHash::Sha256(digest) => write!(f, "hashing to {digest}"),
            FoundHash::Blake3 { found, recorded } => write!(
                f,
                "hashing to {found}, not the {recorded} recorded when it was stored"
            ),
        }
    }
}

/// An OCI image layout directory, read back. Nothing is read until asked for, and
/// every blob is checked against the descriptor it is read through.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout at `root` (read lazily: a missing or damaged layout shows when a
    /// file of it is read).
    pub fn open(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of blob `digest`, whether or not it exists.
    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        blob_path(&self.root, digest)
    }

    /// The path of `index.json`.
    pub fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// `index.json`, typed.
    pub fn index(&self) -> Result<ImageIndex, LayoutError> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(read_err(&path))?;
        parse(&path, &bytes)
    }

    /// The sha256 digest `descriptor` names.
    pub fn digest_of(&self, descriptor: &Descriptor) -> Result<Sha256Digest, LayoutError> {
        let digest = descriptor.digest().to_string();
        digest.parse().map_err(|_| LayoutError::UnsupportedDigest {
            root: self.root.clone(),
            digest,
        })
    }

    /// Reads the whole (small) blob `descriptor` names, checked against its digest and
    /// size.
    pub fn read_blob(&self, descriptor: &Descriptor) -> Result<Vec<u8>, LayoutError> {
        self.read_digest(&self.digest_of(descriptor)?, descriptor.size())
    }

    /// Reads the whole (small) blob `digest`, checked against it and `size`.
    pub fn read_digest(&self, digest: &Sha256Digest, size: u64) -> Result<Vec<u8>, LayoutError> {
        let mut blob = self.open_digest(digest, size)?;
        let mut bytes = Vec::new();
        blob.read_to_end(&mut bytes).map_err(read_err(&blob.path))?;
        blob.finish()?;
        Ok(bytes)
    }

    /// Hashes the file of blob `digest` and fails, naming the file, unless it holds
    /// exactly that blob of `size` bytes.
    pub fn check_blob_file(&self, digest: &Sha256Digest, size: u64) -> Result<(), LayoutError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(read_err(&path))?;
        let (found, found_size) = crate::digest::sha256_reader(file).map_err(read_err(&path))?;
        if found != *digest || found_size != size {
            return Err(LayoutError::ChangedBlob(Box::new(ChangedBlob {
                path,
                expected: *digest,
                expected_size: size,
                found: FoundHash::Sha256(found),
                found_size,
            })));
        }
        Ok(())
    }

    /// The blob `descriptor` names as a stream; [`VerifiedBlob::finish`] checks what
    /// was read against the descriptor.
    pub fn open_blob(&self, descriptor: &Descriptor) -> Result<VerifiedBlob, LayoutError> {
        self.open_digest(&self.digest_of(descriptor)?, descriptor.size())
    }

    fn open_digest(&self, digest: &Sha256Digest, size: u64) -> Result<VerifiedBlob, LayoutError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(read_err(&path))?;
        Ok(VerifiedBlob {
            reader: HashingReader::new(BufReader::with_capacity(1 << 20, file)),
            path,
            expected: *digest,
            expected_size: size,
        })
    }

    /// The JSON blob `descriptor` names (a config, an SBOM...), checked and parsed.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        descriptor: &Descriptor,
    ) -> Result<T, LayoutError> {
        let bytes = self.read_blob(descriptor)?;
        parse(&self.blob_path(&self.digest_of(descriptor)?), &bytes)
    }

    /// The image manifest `descriptor` names, checked and typed.
    pub fn manifest(&self, descriptor: &Descriptor) -> Result<ImageManifest, LayoutError> {
        self.read_json(descriptor)
    }

    /// The image index `descriptor` names, checked and typed.
    pub fn image_index(&self, descriptor: &Descriptor) -> Result<ImageIndex, LayoutError> {
        self.read_json(descriptor)
    }

    /// Checks every blob reachable from `index.json` (through indexes, manifests,
    /// configs and layers) against its descriptor; returns their digests. A `subject`
    /// is not followed: it may live elsewhere. Blobs of media types that are neither
    /// index nor manifest are checked but not opened.
    pub fn fsck(&self) -> Result<BTreeSet<Sha256Digest>, LayoutError> {
        let mut checked = BTreeSet::new();
        let mut pending: Vec<Descriptor> = self.index()?.manifests().clone();
        while let Some(descriptor) = pending.pop() {
            if !checked.insert(self.digest_of(&descriptor)?) {
                continue;
            }
            // The media-type predicates live with the base image reader for now.
            match descriptor.media_type().as_ref() {
                m if super::media_type::is_index(m) => {
                    pending.extend(self.image_index(&descriptor)?.manifests().iter().cloned())
                }
                m if super::media_type::is_manifest(m) => {
                    let manifest = self.manifest(&descriptor)?;
                    pending.push(manifest.config().clone());
                    pending.extend(manifest.layers().iter().cloned());
                }
                _ => {
                    let mut blob = self.open_blob(&descriptor)?;
                    io::copy(&mut blob, &mut io::sink()).map_err(read_err(&blob.path))?;
                    blob.finish()?;
                }
            }
        }
        Ok(checked)
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, LayoutError> {
    serde_json::from_slice(bytes).map_err(|source| LayoutError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// A blob of a layout being read, hashed on the way.
pub struct VerifiedBlob {
    reader: HashingReader<BufReader<File>>,
    path: PathBuf,
    expected: Sha256Digest,
    expected_size: u64,
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl VerifiedBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fails unless what was read is the whole blob the descriptor names. Read to
    /// the end first.
    pub fn finish(self) -> Result<(), LayoutError> {
        let (found, found_size) = self.reader.finish();
        if found != self.expected || found_size != self.expected_size {
            return Err(LayoutError::DigestMismatch {
                expected: self.expected,
                expected_size: self.expected_size,
                found,
                found_size,
            });
        }
        Ok(())
    }
}

/// A file published beside the layout, made of blobs of the layout (an SBOM, the
/// signed envelopes): copied from them, so it is never held in memory. A side file of
/// one whole blob is a reflink of it where the file system has them (see
/// [`place_file`]), never the blob's own file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideFile {
    pub name: String,
    pub blobs: Vec<Sha256Digest>,
    /// Each blob followed by `\n` (JSON Lines), else the blobs back to back.
    pub line_per_blob: bool,
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |source| LayoutError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` via a synced temporary file and a rename, so readers see
/// the old or the new content, never a torn one. The temporary file is
/// `.<file name>.tmp-<pid>-<start time>-<n>` beside `path`; those a killed writer left
/// there are removed first.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let prefix = format!(".{}.tmp-", file_name.to_string_lossy());
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let orphan = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .is_some_and(owner::is_orphan);
        if orphan {
            let _ = fs::remove_file(entry.path());
        }
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{prefix}{}-{n}", owner::own_tag()));
    let written = (|| {
        let mut file = File::options().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        // Outputs are meant to be read by others (like `cp` would make them), whatever
        // the umask.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Blobs up to this size are synced with the layout rather than when committed.
const SYNC_AT_ONCE: u64 = 1 << 20;

/// A blob being written: hashed on the way to a temporary file in the layout.
pub struct BlobWriter {
    inner: HashingWriter<BufWriter<File>>,
    tmp_path: PathBuf,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl BlobWriter {
    /// Drops a blob that will not be committed (e.g. a download that broke off), so
    /// its partial file does not end up in the layout.
    pub fn discard(self) -> io::Result<()> {
        drop(self.inner);
        fs::remove_file(&self.tmp_path)
    }
}

/// A blob stored in the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: Sha256Digest,
    pub size: u64,
}

/// An OCI layout under construction. Dropping it without [`LayoutWriter::publish`]
/// removes everything it wrote.
pub struct LayoutWriter {
    final_dir: PathBuf,
    tmp_dir: PathBuf,
    blobs_dir: PathBuf,
    next_tmp: AtomicU64,
    /// Small blobs committed but not yet synced: synced together before the layout is
    /// published, so their data reaches the disk in one journal commit, not one each.
    unsynced: std::sync::Mutex<Vec<File>>,
    _lock: File,
}

impl LayoutWriter {
    /// Prepares to write the layout `out_dir/name`. Blocks while another cairn process
    /// writes the same output.
    pub fn begin(out_dir: &Path, name: &str) -> Result<Self, LayoutError> {
        fs::create_dir_all(out_dir).map_err(write_err(out_dir))?;
        let lock_path = out_dir.join(format!(".{name}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(write_err(&lock_path))?;
        lock.lock().map_err(write_err(&lock_path))?;
        // Holding the lock, any temporary directory or file of this name is a leftover
        // of a killed build: remove it.
        let tmp_prefix = format!(".{name}.tmp-");
        for entry in fs::read_dir(out_dir).map_err(write_err(out_dir))? {
            let entry = entry.map_err(write_err(out_dir))?;
            let file_name = entry.file_name();
            let Some(owner) = file_name.to_str().and_then(|n| n.strip_prefix(&tmp_prefix)) else {
                continue;
            };
            if !is_tmp_suffix(owner) {
                // Another image's, e.g. `.<name>.tmp-1.tmp-<pid>` of image `<name>.tmp-1`.
                continue;
            }
            let path = entry.path();
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            match removed {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(write_err(&path)(e)),
                _ => {}
            }
        }
        let tmp_dir = out_dir.join(format!("{tmp_prefix}{}", std::process::id()));
        let blobs_dir = blobs_dir(&tmp_dir);
        fs::create_dir_all(&blobs_dir).map_err(write_err(&blobs_dir))?;
        Ok(LayoutWriter {
            final_dir: out_dir.join(name),
            tmp_dir,
            blobs_dir,
            next_tmp: AtomicU64::new(0),
            unsynced: std::sync::Mutex::new(Vec::new()),
            _lock: lock,
        })
    }

    /// A scratch directory inside the temporary layout, removed with it (used to stage
    /// archive members on the same file system).
    pub fn scratch_dir(&self) -> Result<PathBuf, LayoutError> {
        let dir = self.tmp_dir.join(".staging");
        fs::create_dir_all(&dir).map_err(write_err(&dir))?;
        Ok(dir)
    }

    pub fn blob_writer(&self) -> Result<BlobWriter, LayoutError> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.blobs_dir.join(format!(".partial-{n}"));
        let file = File::create(&tmp_path).map_err(write_err(&tmp_path))?;
        Ok(BlobWriter {
            inner: HashingWriter::new(BufWriter::with_capacity(1 << 20, file)),
            tmp_path,
        })
    }

    /// Names the blob by its digest; syncs it now if large, else with the layout.
    pub fn commit_blob(&self, blob: BlobWriter) -> Result<StoredBlob, LayoutError> {
        let (digest, size, buffered) = blob.inner.finish();
        let file = buffered.into_inner().map_err(|e| LayoutError::Write {
            path: blob.tmp_path.clone(),
            source: e.into_error(),
        })?;
        if size > SYNC_AT_ONCE {
            file.sync_all().map_err(write_err(&blob.tmp_path))?;
        } else {
            lock_unpoisoned(&self.unsynced).push(file);
        }
        let path = self.blobs_dir.join(digest.hex());
        fs::rename(&blob.tmp_path, &path).map_err(write_err(&path))?;
        Ok(StoredBlob { digest, size })
    }

    /// Where the committed blob `digest` lives (until the layout is published).
    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.blobs_dir.join(digest.hex())
    }

    /// Adds a copy of the file at `source`, which should hold the blob `digest` (a
    /// cached blob, whose BLAKE3 cairn recorded as `check` when it stored it), to the
    /// layout: a reflink where the file system has them, else a copy, never a hard
    /// link, so the layout shares no writable inode with the cache. The bytes that land
    /// in the layout are hashed (while copied, or read back after a reflink) and
    /// refused unless they are that blob: a cache entry trusts a file's inode, size and
    /// mtime, which a change in place can keep. A blob the layout this one replaces
    /// already holds is taken from there instead ([`Self::keep_published`]).
    pub fn copy_blob(
        &self,
        source: &Path,
        digest: Sha256Digest,
        size: u64,
        check: Blake3Digest,
    ) -> Result<StoredBlob, LayoutError> {
        let path = self.blob_path(&digest);
        if !path.exists() && !self.keep_published(&digest, size, check, &path) {
            let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
            let tmp = self.blobs_dir.join(format!(".partial-{n}"));
            let copied = copy_hashed(source, &tmp);
            let file = match copied {
                Ok((file, found, found_size)) if found == check && found_size == size => file,
                Ok((_, found, found_size)) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(LayoutError::ChangedBlob(Box::new(ChangedBlob {
                        path: source.to_path_buf(),
                        expected: digest,
                        expected_size: size,
                        found: FoundHash::Blake3 {
                            found,
                            recorded: check,
                        },
                        found_size,
                    })));
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    return Err(write_err(source)(e));
                }
            };
            lock_unpoisoned(&self.unsynced).push(file);
            fs::rename(&tmp, &path).map_err(write_err(&path))?;
        }
        Ok(StoredBlob { digest, size })
    }

    /// Puts the blob `digest` of the layout this build replaces (the published
    /// `out/<name>`) at `path` when it holds that blob's bytes, checked by hashing them
    /// as they are at `path` against `check`, the blob's BLAKE3. It is a hard link of a
    /// file with no other name: the replaced layout is removed at the swap, so the
    /// inode stays in one layout and is never shared with the cache, and its bytes
    /// reached the disk when that layout was published, so nothing needs syncing. An
    /// unchanged rebuild thus writes no blob data at all. `false` (and nothing left
    /// behind) when there is no such blob or its bytes have changed.
    fn keep_published(
        &self,
        digest: &Sha256Digest,
        size: u64,
        check: Blake3Digest,
        path: &Path,
    ) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        let published = blob_path(&self.final_dir, digest);
        // A blob linked from elsewhere too (a layout an older cairn linked from its
        // cache) would bring that other name along.
        if !fs::symlink_metadata(&published).is_ok_and(|m| m.is_file() && m.nlink() == 1) {
            return false;
        }
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp = self.blobs_dir.join(format!(".partial-{n}"));
        if fs::hard_link(&published, &tmp).is_err() {
            return false;
        }
        let intact = File::open(&tmp)
            .and_then(Blake3Digest::of_reader)
            .is_ok_and(|found| found == (check, size));
        if intact && fs::rename(&tmp, path).is_ok() {
            return true;
        }
        let _ = fs::remove_file(&tmp);
        false
    }

    pub fn put_blob(&self, bytes: &[u8]) -> Result<StoredBlob, LayoutError> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(write_err(&w.tmp_path))?;
        self.commit_blob(w)
    }

    /// The output directory the layout (and its side files) are published into.
    fn out_dir(&self) -> PathBuf {
        self.final_dir
            .parent()
            .expect("the layout lives in the output directory")
            .to_path_buf()
    }

    /// Writes `index.json` and `oci-layout`, then atomically replaces the destination;
    /// then puts each side file (`<name>.spdx.json`, ...) beside it. The side files of
    /// the previous build (and those named in `stale`) are removed before the swap, so
    /// a reader, or a build killed at any point, never pairs side files with a layout
    /// of another build: they are there and describe the layout, or they are missing.
    /// Returns the path of the published layout.
    pub fn publish(
        self,
        index_json: &[u8],
        side_files: &[SideFile],
        stale: &[String],
    ) -> Result<PathBuf, LayoutError> {
        let out_dir = self.out_dir();
        self.finish_layout(index_json)?;
        self.withdraw_side_files(&out_dir, side_files, stale)?;
        let layout = self.publish_layout()?;
        self.publish_side_files(&out_dir, &blobs_dir(&layout), side_files)?;
        // The lock is released (and the previous output, now in tmp_dir, removed)
        // when `self` drops here.
        Ok(layout)
    }

    /// Like [`LayoutWriter::publish`], but instead of the layout directory publishes
    /// one file, `<out>/<name>.tar`, that `write` makes from the finished layout
    /// (an `oci-archive` or `docker-archive`); it replaces any previous one atomically.
    pub fn publish_archive<E: From<LayoutError>>(
        self,
        index_json: &[u8],
        write: impl FnOnce(&Path, &mut BufWriter<File>) -> Result<(), E>,
        side_files: &[SideFile],
        stale: &[String],
    ) -> Result<PathBuf, E> {
        let out_dir = self.out_dir();
        self.finish_layout(index_json)?;
        let mut dest = self.final_dir.clone().into_os_string();
        dest.push(".tar");
        let dest = PathBuf::from(dest);
        let tmp = self.out_tmp_path();
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(write_err(&tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let written = write(&self.tmp_dir, &mut out).and_then(|()| {
            let file = out
                .into_inner()
                .map_err(|e| write_err(&dest)(e.into_error()))?;
            file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .and_then(|()| file.sync_all())
                .map_err(write_err(&dest))?;
            Ok(())
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.withdraw_side_files(&out_dir, side_files, stale)?;
        fs::rename(&tmp, &dest).map_err(write_err(&dest))?;
        sync_dir(&out_dir)?;
        self.publish_side_files(&out_dir, &self.blobs_dir, side_files)?;
        Ok(dest)
    }

    /// A fresh path for a temporary file in the output directory,
    /// `.<name>.tmp-<pid>-<n>`: [`LayoutWriter::begin`] of the next build of this name
    /// removes it if a crash leaves it behind.
    fn out_tmp_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let mut name = self.tmp_dir.clone().into_os_string();
        name.push(format!("-{n}"));
        PathBuf::from(name)
    }

    /// Removes the side files this build writes and those named in `stale`, and makes
    /// that durable, before the output they describe is replaced.
    fn withdraw_side_files(
        &self,
        out_dir: &Path,
        side_files: &[SideFile],
        stale: &[String],
    ) -> Result<(), LayoutError> {
        let names = side_files.iter().map(|s| &s.name).chain(stale);
        for name in names {
            let path = out_dir.join(name);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(write_err(&path)(e)),
                _ => {}
            }
        }
        sync_dir(out_dir)
    }

    /// Writes each side file beside the published output, through a temporary file
    /// and a rename.
    fn publish_side_files(
        &self,
        out_dir: &Path,
        blobs_dir: &Path,
        side_files: &[SideFile],
    ) -> Result<(), LayoutError> {
        for side in side_files {
            let path = out_dir.join(&side.name);
            let tmp = self.out_tmp_path();
            let written = if let ([digest], false) = (side.blobs.as_slice(), side.line_per_blob) {
                // Tens of megabytes for an SBOM: reflinked where the file system can.
                place_file(&blobs_dir.join(digest.hex()), &tmp)
            } else {
                write_side_file(&tmp, blobs_dir, side)
            };
            written
                .and_then(|()| {
                    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                })
                .and_then(|()| fs::rename(&tmp, &path))
                .map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    write_err(&path)(e)
                })?;
        }
        sync_dir(out_dir)
    }

    /// Writes `index.json` and `oci-layout` and syncs the temporary layout.
    fn finish_layout(&self, index_json: &[u8]) -> Result<(), LayoutError> {
        let scratch = self.tmp_dir.join(".staging");
        if scratch.exists() {
            fs::remove_dir_all(&scratch).map_err(write_err(&scratch))?;
        }
        // Everything written first, then synced: the first sync commits it all to the
        // journal, the others find little left to do.
        let mut unsynced = std::mem::take(&mut *lock_unpoisoned(&self.unsynced));
        for (name, bytes) in [
            (
                "oci-layout",
                br#"{"imageLayoutVersion":"1.0.0"}"#.as_slice(),
            ),
            ("index.json", index_json),
        ] {
            let path = self.tmp_dir.join(name);
            let mut f = File::create(&path).map_err(write_err(&path))?;
            f.write_all(bytes).map_err(write_err(&path))?;
            unsynced.push(f);
        }
        for file in unsynced {
            file.sync_all().map_err(write_err(&self.tmp_dir))?;
        }
        for dir in [&self.blobs_dir, &self.tmp_dir.join(BLOBS), &self.tmp_dir] {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(write_err(dir))?;
        }
        Ok(())
    }

    /// Swaps the finished temporary layout into place.
    fn publish_layout(&self) -> Result<PathBuf, LayoutError> {
        if self.final_dir.exists() {
            exchange(&self.tmp_dir, &self.final_dir)?;
            // tmp_dir now holds the previous output; Drop removes it.
        } else {
            fs::rename(&self.tmp_dir, &self.final_dir).map_err(write_err(&self.final_dir))?;
        }
        sync_dir(&self.out_dir())?;
        Ok(self.final_dir.clone())
    }
}

impl Drop for LayoutWriter {
    fn drop(&mut self) {
        // Best effort: the next build of this name removes leftovers too.
        let _ = fs::remove_dir_all(&self.tmp_dir);
    }
}

/// Makes `to` (which must not exist) hold the bytes of `from` without sharing an inode
/// with it: a reflink (a copy-on-write clone, so writing one never changes the other)
/// where the file system has them, else a synced copy. Never a hard link: a file
/// reachable from two places (a layout and the cache, a side file and a blob) would let
/// a change through one damage the other.
fn place_file(from: &Path, to: &Path) -> io::Result<()> {
    let source = File::open(from)?;
    let mut target = File::options().write(true).create_new(true).open(to)?;
    if reflink(&source, &target) {
        return Ok(());
    }
    io::copy(&mut &source, &mut target)?;
    target.sync_all()
}

/// The side file `side` made of several blobs (or one per line) at `path`, synced.
fn write_side_file(path: &Path, blobs_dir: &Path, side: &SideFile) -> io::Result<()> {
    let file = File::options().write(true).create_new(true).open(path)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    for digest in &side.blobs {
        io::copy(&mut File::open(blobs_dir.join(digest.hex()))?, &mut out)?;
        if side.line_per_blob {
            out.write_all(b"\n")?;
        }
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Whether `suffix` (what follows `.<name>.tmp-`) is one a [`LayoutWriter`] gives its
/// temporaries: `<pid>` for the layout, `<pid>-<n>` for a file beside it.
fn is_tmp_suffix(suffix: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match suffix.split_once('-') {
        Some((pid, n)) => digits(pid) && digits(n),
        None => digits(suffix),
    }
}

/// Makes the entries of directory `dir` (renames, removals) durable.
fn sync_dir(dir: &Path) -> Result<(), LayoutError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_err(dir))
}

/// Clones `source` into the empty `target` (FICLONE); false where the file system
/// cannot.
pub fn reflink(source: &File, target: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: both descriptors are open; FICLONE reads the first and writes the second.
    unsafe { libc::ioctl(target.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) == 0 }
}

/// [`place_file`] that also takes the BLAKE3 of the bytes `to` ends up with: read back
/// after a reflink, hashed on the way through a copy. Not synced: the caller syncs the
/// returned file.
pub fn copy_hashed(from: &Path, to: &Path) -> io::Result<(File, Blake3Digest, u64)> {
    let source = File::open(from)?;
    let target = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(to)?;
    let (check, size) = if reflink(&source, &target) {
        Blake3Digest::of_reader(&target)?
    } else {
        let mut hasher = blake3::Hasher::new();
        let size = read_chunks(&source, |chunk| {
            hasher.update(chunk);
            (&target).write_all(chunk)
        })?;
        (Blake3Digest::from_hasher(&hasher), size)
    };
    Ok((target, check, size))
}

/// The list behind `mutex`, also after a panic elsewhere: pushing a file or taking the
/// list cannot leave it inconsistent, and every file in it must still be synced.
fn lock_unpoisoned<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Swaps two paths atomically.
fn exchange(a: &Path, b: &Path) -> Result<(), LayoutError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes()).map_err(|e| write_err(a)(e.into()))?;
    let cb = CString::new(b.as_os_str().as_bytes()).map_err(|e| write_err(b)(e.into()))?;
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them like open(2).
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(write_err(b)(io::Error::last_os_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_removes_what_a_killed_writer_left_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let own = format!(".app.lock.tmp-{}-9", owner::own_tag());
        // pid_max is at most 2^22: the writer of this one is gone.
        let orphan = ".app.lock.tmp-4194305-1-0";
        let foreign = [".app.lock.tmp-notours", ".other.lock.tmp-4194305-1-0"];
        for name in [own.as_str(), orphan].iter().chain(&foreign) {
            fs::write(dir.path().join(name), "partial").unwrap();
        }
        let path = dir.path().join("app.lock");
        write_file_atomically(&path, b"locked\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"locked\n");
        let mode = fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o644
        );
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut expected = vec![own, "app.lock".to_string()];
        expected.extend(foreign.map(String::from));
        expected.sort();
        assert_eq!(names, expected, "only the orphan is removed");
    }

    #[test]
    fn publish_replaces_previous_output_and_leaves_no_temporaries() {
        let out = tempfile::tempdir().unwrap();
        for content in [b"first".as_slice(), b"second"] {
            let w = LayoutWriter::begin(out.path(), "img").unwrap();
            let blob = w.put_blob(content).unwrap();
            assert_eq!(blob.digest, Sha256Digest::of(content));
            w.publish(b"{}", &[], &[]).unwrap();
        }
        let blobs: Vec<_> = fs::read_dir(blobs_dir(&out.path().join("img")))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(blobs, [Sha256Digest::of(b"second").hex()]);
        let mut names: Vec<_> = fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [".img.lock", "img"]);
    }

    #[test]
    fn an_abandoned_build_leaves_the_previous_output_intact() {
        let out = tempfile::tempdir().unwrap();
        let w = LayoutWriter::begin(out.path(), "img").unwrap();
        w.put_blob(b"good").unwrap();
        w.publish(b"{\"good\":1}", &[], &[]).unwrap();
        {
            let w = LayoutWriter::begin(out.path(), "img").unwrap();
            w.put_blob(b"half").unwrap();
            // dropped: an error happened mid-build
        }
        assert_eq!(
            fs::read(out.path().join("img/index.json")).unwrap(),
            b"{\"good\":1}"
        );
        assert!(!out
            .path()
            .join(format!(".img.tmp-{}", std::process::id()))
            .exists());
    }

    /// Publishes `img` in `out`: one image manifest (a config and one layer) listed in
    /// `index.json`; returns the layout and the layer blob.
    fn one_image(out: &Path) -> (Layout, StoredBlob) {
        let w = LayoutWriter::begin(out, "img").unwrap();
        let config = w.put_blob(b"{}").unwrap();
        let layer = w.put_blob(b"layer bytes").unwrap();
        let descriptor = |media_type: &str, blob: &StoredBlob| {
            serde_json::json!({
                "mediaType": media_type,
                "digest": blob.digest.to_string(),
                "size": blob.size,
            })
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
        });
        let manifest = w.put_blob(&serde_json::to_vec(&manifest).unwrap()).unwrap();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [descriptor("application/vnd.oci.image.manifest.v1+json", &manifest)],
        });
        let root = w
            .publish(&serde_json::to_vec(&index).unwrap(), &[], &[])
            .unwrap();
        (Layout::open(&root), layer)
    }

    #[test]
    fn a_written_layout_reads_back_typed_and_passes_fsck() {
        let out = tempfile::tempdir().unwrap();
        let (layout, layer) = one_image(out.path());
        let index = layout.index().unwrap();
        let manifest = layout.manifest(&index.manifests()[0]).unwrap();
        assert_eq!(
            layout.digest_of(&manifest.layers()[0]).unwrap(),
            layer.digest
        );
        assert_eq!(
            layout.read_blob(&manifest.layers()[0]).unwrap(),
            b"layer bytes"
        );
        assert_eq!(layout.fsck().unwrap().len(), 3);
    }

    #[test]
    fn fsck_finds_a_blob_that_does_not_match_its_descriptor() {
        let out = tempfile::tempdir().unwrap();
        let (layout, layer) = one_image(out.path());
        // Same size, other bytes: only the digest can tell.
        fs::write(layout.blob_path(&layer.digest), b"LAYER BYTES").unwrap();
        match layout.fsck().unwrap_err() {
            LayoutError::DigestMismatch {
                expected, found, ..
            } => {
                assert_eq!(expected, layer.digest);
                assert_eq!(found, Sha256Digest::of(b"LAYER BYTES"));
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_blob_of_another_size_than_its_descriptor_says_is_refused() {
        let out = tempfile::tempdir().unwrap();
        let (layout, layer) = one_image(out.path());
        let err = layout
            .read_digest(&layer.digest, layer.size + 1)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("blob {} is corrupt", layer.digest)),
            "{err}"
        );
    }
}
