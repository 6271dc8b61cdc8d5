//! Stage 5: output. Writes an OCI image layout so that it appears complete or not at
//! all.
//!
//! Everything goes into a hidden temporary directory beside the destination; blobs are
//! hashed while written and named by that hash; only when the whole layout is written
//! and synced is it swapped into place with one atomic `renameat2(RENAME_EXCHANGE)`.
//! An error, Ctrl-C or crash before that leaves the previous output untouched; a lock
//! file serialises concurrent builds of the same output. [`archive`] turns a finished
//! layout into a single-file `oci-archive` or `docker-archive`, published the same way.

pub mod archive;

use crate::digest::{HashingWriter, Sha256Digest};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Archive(Box<archive::ArchiveError>),
}

/// A file published beside the layout, made of blobs of the layout (an SBOM, the
/// signed envelopes): copied from them, so it is never held in memory. A side file of
/// one whole blob shares its storage (see [`place_file`]): it is that blob's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideFile {
    pub name: String,
    pub blobs: Vec<Sha256Digest>,
    /// Each blob followed by `\n` (JSON Lines), else the blobs back to back.
    pub line_per_blob: bool,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` via a synced temporary file and a rename, so readers see
/// the old or the new content, never a torn one.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file_atomically_with(path, |out| out.write_all(bytes))
}

/// [`write_file_atomically`] with the content written by `write`.
fn write_file_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-tmp-")
        .tempfile_in(dir)?;
    {
        let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
        write(&mut out)?;
        out.flush()?;
    }
    // tempfile creates 0600; outputs are meant to be read by others (like `cp` would).
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
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
    pub fn begin(out_dir: &Path, name: &str) -> Result<Self, OutputError> {
        fs::create_dir_all(out_dir).map_err(io_err(out_dir))?;
        let lock_path = out_dir.join(format!(".{name}.lock"));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        // Holding the lock, any temporary directory for this name is a leftover of a
        // killed build: remove it.
        let tmp_prefix = format!(".{name}.tmp-");
        for entry in fs::read_dir(out_dir).map_err(io_err(out_dir))? {
            let entry = entry.map_err(io_err(out_dir))?;
            if entry.file_name().to_string_lossy().starts_with(&tmp_prefix) {
                fs::remove_dir_all(entry.path()).map_err(io_err(&entry.path()))?;
            }
        }
        let tmp_dir = out_dir.join(format!("{tmp_prefix}{}", std::process::id()));
        let blobs_dir = tmp_dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs_dir).map_err(io_err(&blobs_dir))?;
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
    pub fn scratch_dir(&self) -> Result<PathBuf, OutputError> {
        let dir = self.tmp_dir.join(".staging");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(dir)
    }

    pub fn blob_writer(&self) -> Result<BlobWriter, OutputError> {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let tmp_path = self.blobs_dir.join(format!(".partial-{n}"));
        let file = File::create(&tmp_path).map_err(io_err(&tmp_path))?;
        Ok(BlobWriter {
            inner: HashingWriter::new(BufWriter::with_capacity(1 << 20, file)),
            tmp_path,
        })
    }

    /// Names the blob by its digest; syncs it now if large, else with the layout.
    pub fn commit_blob(&self, blob: BlobWriter) -> Result<StoredBlob, OutputError> {
        let (digest, size, buffered) = blob.inner.finish();
        let file = buffered.into_inner().map_err(|e| OutputError::Io {
            path: blob.tmp_path.clone(),
            source: e.into_error(),
        })?;
        if size > SYNC_AT_ONCE {
            file.sync_all().map_err(io_err(&blob.tmp_path))?;
        } else {
            lock_unpoisoned(&self.unsynced).push(file);
        }
        let path = self.blobs_dir.join(digest.hex());
        fs::rename(&blob.tmp_path, &path).map_err(io_err(&path))?;
        Ok(StoredBlob { digest, size })
    }

    /// Where the committed blob `digest` lives (until the layout is published).
    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.blobs_dir.join(digest.hex())
    }

    /// Adds the file at `source`, already known to hold the blob `digest`, to the layout
    /// without re-hashing it: reflinked or hard-linked where the file system allows,
    /// copied otherwise (see [`place_file`]).
    pub fn link_blob(
        &self,
        source: &Path,
        digest: Sha256Digest,
        size: u64,
    ) -> Result<StoredBlob, OutputError> {
        let path = self.blob_path(&digest);
        if !path.exists() {
            let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
            let tmp = self.blobs_dir.join(format!(".partial-{n}"));
            place_file(source, &tmp).map_err(io_err(source))?;
            fs::rename(&tmp, &path).map_err(io_err(&path))?;
        }
        Ok(StoredBlob { digest, size })
    }

    pub fn put_blob(&self, bytes: &[u8]) -> Result<StoredBlob, OutputError> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(io_err(&w.tmp_path))?;
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
    /// then puts each side file (`<name>.spdx.json`, ...) beside it, each replaced
    /// atomically, and removes the side files named in `stale` that this build did not
    /// produce. Returns the path of the published layout.
    pub fn publish(
        self,
        index_json: &[u8],
        side_files: &[SideFile],
        stale: &[String],
    ) -> Result<PathBuf, OutputError> {
        let out_dir = self.out_dir();
        let layout = self.publish_layout(index_json)?;
        let blobs_dir = layout.join("blobs").join("sha256");
        self.publish_side_files(&out_dir, &blobs_dir, side_files, stale)?;
        // The lock is released (and the previous output, now in tmp_dir, removed)
        // when `self` drops here.
        Ok(layout)
    }

    /// Like [`LayoutWriter::publish`], but instead of the layout directory publishes
    /// one file, `<out>/<name>.tar`, that `write` makes from the finished layout
    /// (see [`archive`]); it replaces any previous one atomically.
    pub fn publish_archive(
        self,
        index_json: &[u8],
        write: impl FnOnce(&Path, &mut BufWriter<File>) -> Result<(), archive::ArchiveError>,
        side_files: &[SideFile],
        stale: &[String],
    ) -> Result<PathBuf, OutputError> {
        let out_dir = self.out_dir();
        self.finish_layout(index_json)?;
        let mut dest = self.final_dir.clone().into_os_string();
        dest.push(".tar");
        let dest = PathBuf::from(dest);
        let tmp = tempfile::Builder::new()
            .prefix(".cairn-tmp-")
            .tempfile_in(&out_dir)
            .map_err(io_err(&out_dir))?;
        let (file, tmp_path) = tmp.into_parts();
        let mut out = BufWriter::with_capacity(1 << 20, file);
        write(&self.tmp_dir, &mut out).map_err(|e| OutputError::Archive(Box::new(e)))?;
        let file = out
            .into_inner()
            .map_err(|e| io_err(&dest)(e.into_error()))?;
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .and_then(|()| file.sync_all())
            .map_err(io_err(&dest))?;
        tmp_path
            .persist(&dest)
            .map_err(|e| io_err(&dest)(e.error))?;
        File::open(&out_dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&out_dir))?;
        self.publish_side_files(&out_dir, &self.blobs_dir, side_files, stale)?;
        Ok(dest)
    }

    fn publish_side_files(
        &self,
        out_dir: &Path,
        blobs_dir: &Path,
        side_files: &[SideFile],
        stale: &[String],
    ) -> Result<(), OutputError> {
        for side in side_files {
            let path = out_dir.join(&side.name);
            if let ([digest], false) = (side.blobs.as_slice(), side.line_per_blob) {
                // Tens of megabytes for an SBOM: linked (or reflinked), not copied; the
                // blob was synced when it was committed.
                let tmp = out_dir.join(format!(".cairn-tmp-{}", side.name));
                let _ = fs::remove_file(&tmp);
                place_file(&blobs_dir.join(digest.hex()), &tmp)
                    .and_then(|()| fs::rename(&tmp, &path))
                    .map_err(io_err(&path))?;
                continue;
            }
            write_file_atomically_with(&path, |out| {
                for digest in &side.blobs {
                    io::copy(&mut File::open(blobs_dir.join(digest.hex()))?, out)?;
                    if side.line_per_blob {
                        out.write_all(b"\n")?;
                    }
                }
                Ok(())
            })
            .map_err(io_err(&path))?;
        }
        for name in stale {
            if side_files.iter().any(|s| &s.name == name) {
                continue;
            }
            let path = out_dir.join(name);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&path)(e)),
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes `index.json` and `oci-layout` and syncs the temporary layout.
    fn finish_layout(&self, index_json: &[u8]) -> Result<(), OutputError> {
        let scratch = self.tmp_dir.join(".staging");
        if scratch.exists() {
            fs::remove_dir_all(&scratch).map_err(io_err(&scratch))?;
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
            let mut f = File::create(&path).map_err(io_err(&path))?;
            f.write_all(bytes).map_err(io_err(&path))?;
            unsynced.push(f);
        }
        for file in unsynced {
            file.sync_all().map_err(io_err(&self.tmp_dir))?;
        }
        for dir in [&self.blobs_dir, &self.tmp_dir.join("blobs"), &self.tmp_dir] {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        }
        Ok(())
    }

    fn publish_layout(&self, index_json: &[u8]) -> Result<PathBuf, OutputError> {
        self.finish_layout(index_json)?;
        if self.final_dir.exists() {
            exchange(&self.tmp_dir, &self.final_dir)?;
            // tmp_dir now holds the previous output; Drop removes it.
        } else {
            fs::rename(&self.tmp_dir, &self.final_dir).map_err(io_err(&self.final_dir))?;
        }
        if let Some(parent) = self.final_dir.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_err(parent))?;
        }
        Ok(self.final_dir.clone())
    }
}

impl Drop for LayoutWriter {
    fn drop(&mut self) {
        // Best effort: the next build of this name removes leftovers too.
        let _ = fs::remove_dir_all(&self.tmp_dir);
    }
}

/// Makes `to` (which must not exist) hold the bytes of `from`, as cheaply as the file
/// system allows: a reflink (a copy-on-write clone: no shared inode, so writing one never
/// changes the other), else a hard link, else a synced copy.
pub fn place_file(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let source = File::open(from)?;
    let target = File::options().write(true).create_new(true).open(to)?;
    // SAFETY: both descriptors are open; FICLONE reads the first and writes the second.
    if unsafe { libc::ioctl(target.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) } == 0 {
        return Ok(());
    }
    drop(target);
    fs::remove_file(to)?;
    match fs::hard_link(from, to) {
        Ok(()) => return Ok(()),
        // Across file systems, or where links are not allowed: copy.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let mut target = File::options().write(true).create_new(true).open(to)?;
    io::copy(&mut &source, &mut target)?;
    target.sync_all()
}

/// The list behind `mutex`, also after a panic elsewhere: pushing a file or taking the
/// list cannot leave it inconsistent, and every file in it must still be synced.
fn lock_unpoisoned<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Swaps two paths atomically.
fn exchange(a: &Path, b: &Path) -> Result<(), OutputError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes()).map_err(|e| io_err(a)(e.into()))?;
    let cb = CString::new(b.as_os_str().as_bytes()).map_err(|e| io_err(b)(e.into()))?;
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
        Err(io_err(b)(io::Error::last_os_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_replaces_previous_output_and_leaves_no_temporaries() {
        let out = tempfile::tempdir().unwrap();
        for content in [b"first".as_slice(), b"second"] {
            let w = LayoutWriter::begin(out.path(), "img").unwrap();
            let blob = w.put_blob(content).unwrap();
            assert_eq!(blob.digest, Sha256Digest::of(content));
            w.publish(b"{}", &[], &[]).unwrap();
        }
        let blobs: Vec<_> = fs::read_dir(out.path().join("img/blobs/sha256"))
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
}
