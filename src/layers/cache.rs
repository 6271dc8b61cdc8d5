//! The layer cache: written layer blobs, content-addressed, keyed by everything that
//! determines their bytes, so that a rebuild re-tars and re-compresses only the layers
//! whose inputs changed.
//!
//! Takes a directory (the CLI passes `$XDG_CACHE_HOME/cairn` or `~/.cache/cairn`); keeps
//!
//! ```text
//! layers-v1/<blob store>           layer blobs, read-only, named by their digest as
//!                                  an OCI layout does ([`crate::oci::layout::blob_path`])
//! layers-v1/entries/<key>.json     one per cache key: the blob's digest, size, diff_id,
//!                                  entry count, the SHA-1 of each file (for the SBOM)
//!                                  and the blob's inode, size, mtime and BLAKE3 when
//!                                  stored
//! layers-v1/images/<key>.json      one per image key (see [`crate::warm`]): every layer
//!                                  of an image and its SBOM blobs, each with the
//!                                  identity its blob file had when stored
//! layers-v1/disks/<key>.json       one per disk key (see [`crate::warm`]): the files of
//!                                  a VM disk build (raw, qcow2, kernel, initrd), each a
//!                                  blob of the store, with its identity and its check
//! layers-v1/tmp/                   files being written, `<pid>-<start time>-<n>`
//! ```
//!
//! The key ([`layer_key`]) is the SHA-256 of the JSON of the layer's typed inputs: every
//! tree entry as it serialises (path, type, mode, owner, and the SHA-256 and size of file
//! contents or the link target), the epoch, the compression and its parameters, cairn's
//! version and its output-format version. Being the serialisation of the types, it takes
//! in a field added to them without anyone listing it. Layer names and origins are not in
//! it: they do not reach the blob's bytes.
//!
//! A lookup trusts the entry without re-hashing the blob: the blob was hashed while it
//! was written and named by that hash, it is stored read-only, and a hit requires the
//! blob's inode, size and modification time to be those recorded when it was stored, so
//! a blob replaced or visibly changed is a miss, and is replaced. A change in place that
//! puts the mtime back passes that check, so a hit's bytes are hashed as they are copied
//! into the layout ([`LayoutWriter::copy_blob`]) and refused (the file removed, the
//! layer written anew) unless they are the blob: nothing is published unchecked. The
//! hash is BLAKE3 ([`Blake3Digest`]), against the one the entry recorded of the bytes
//! as they were stored, for speed. The
//! cache and a layout never share an inode. Writes go to `tmp/` first, named after
//! their process, and are renamed into place, so concurrent builds and
//! `cairn cache prune` never see a torn file; an entry whose blob has vanished is a
//! miss, and the temporary files of a process that is gone are removed when the cache
//! is opened ([`LayerCache::remove_orphaned_tmp`]).
//!
//! With a shared store ([`SharedLayerStore`]: a registry, `crate::remote_cache`,
//! `--cache-registry`) a local miss is looked up there and downloaded (digest-checked)
//! into the local cache before use.

use super::compress::{GZIP_LEVEL, ZSTD_LEVEL};
use super::gzip::MEMBER_SIZE;
use super::sorted::SortedMap;
use super::{EntrySha1s, LayerBlob, LayerError, LayerTree, TreeEntry};
use crate::digest::{Blake3Digest, Sha256Digest};
use crate::oci::compression::Compression;
use crate::oci::layout::{blobs_dir, copy_hashed, LayoutError, LayoutWriter};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// The layer cache's own directory below the cache directory; bump the suffix when the
/// entry format changes.
const LAYERS_DIR: &str = "layers-v1";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("layer cache {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A cache key: the SHA-256 of what determines a layer blob's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerKey(Sha256Digest);

impl LayerKey {
    pub fn hex(&self) -> String {
        self.0.hex()
    }
}

/// What determines a layer blob's bytes; the layer key is the hash of its JSON, so
/// every field of it (and of the tree entries) is in the key.
#[derive(Serialize)]
struct LayerKeyInputs<'a> {
    key_version: &'static str,
    cairn_version: &'static str,
    output_format_version: &'static str,
    /// The compression with the parameters that shape its output.
    compression: String,
    epoch: u64,
    /// Path -> entry; the layer's name is not in it, as it does not reach the bytes.
    entries: &'a SortedMap<TreeEntry>,
}

/// What determines the bytes of `tree` written with `epoch` and `compression`.
pub fn layer_key(tree: &LayerTree, epoch: u64, compression: Compression) -> LayerKey {
    let compression = match compression {
        Compression::Gzip => {
            format!("gzip libdeflate level {GZIP_LEVEL} member {MEMBER_SIZE}")
        }
        Compression::Zstd => format!("zstd level {ZSTD_LEVEL} multithreaded"),
        Compression::None => "none".to_string(),
    };
    LayerKey(Sha256Digest::of_json(&LayerKeyInputs {
        key_version: "cairn-layer-key-v3",
        cairn_version: env!("CARGO_PKG_VERSION"),
        output_format_version: crate::oci::OUTPUT_FORMAT_VERSION,
        compression,
        epoch,
        entries: &tree.entries,
    }))
}

/// A store the layer cache is shared through, besides the local directory: today a
/// registry repository (`crate::remote_cache`, `--cache-registry`). The store never
/// fails a build: its problems become warnings on the local cache.
pub trait SharedLayerStore: Send + Sync {
    /// Downloads the entry for `key` into `local` (through [`LayerCache::adopt`]);
    /// false if the store has none or it could not be fetched.
    fn fetch(&self, key: &LayerKey, local: &LayerCache) -> bool;
    /// Stores the entry for `key` (the blob from `local`) unless the store has it.
    fn publish(&self, key: &LayerKey, local: &LayerCache, record: &LayerRecord);
}

/// What a cached layer is, wherever it is stored (a local entry, a registry cache's
/// config blob).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: Sha256Digest,
    pub size: u64,
    pub diff_id: Sha256Digest,
    pub uncompressed_size: u64,
    pub entries: usize,
    pub compression: Compression,
    /// SHA-1 of each regular file, by its entry's place in the layer: what the SBOM
    /// needs.
    pub sha1: EntrySha1s,
}

impl LayerRecord {
    fn of(blob: &LayerBlob) -> Self {
        LayerRecord {
            digest: blob.digest,
            size: blob.size,
            diff_id: blob.diff_id,
            uncompressed_size: blob.uncompressed_size,
            entries: blob.entries,
            compression: blob.compression,
            sha1: blob.sha1.clone(),
        }
    }
}

/// One cache entry as stored in `entries/<key>.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    layer: LayerRecord,
    /// The blob file as stored: a hit needs the same inode, size and mtime.
    blob_ino: u64,
    blob_mtime_ns: i128,
    /// The BLAKE3 of the blob's bytes, taken as they were stored: what the file is
    /// checked against when it is reused.
    blob_blake3: Blake3Digest,
}

impl Entry {
    /// The entry's blob file, with the identity it had when stored.
    fn blob(&self) -> CachedBlob {
        CachedBlob {
            digest: self.layer.digest,
            size: self.layer.size,
            ino: self.blob_ino,
            mtime_ns: self.blob_mtime_ns,
            blake3: self.blob_blake3,
        }
    }
}

/// A layer cache in one directory. Shared by the layers of one build; any number of
/// processes may use the same directory at once.
pub struct LayerCache {
    dir: PathBuf,
    blobs: PathBuf,
    entries: PathBuf,
    images: PathBuf,
    disks: PathBuf,
    tmp: PathBuf,
    /// `<pid>-<start time>`: this process, as its temporary files are named (empty
    /// without `/proc`).
    owner: String,
    next_tmp: AtomicU64,
    /// Problems that did not stop the build (a full disk while storing, say).
    warnings: Mutex<Vec<String>>,
    /// A registry the cache is shared through (`--cache-registry`).
    remote: Option<Box<dyn SharedLayerStore>>,
    /// The stored blobs this build used or stored, with the identity checked or
    /// recorded then: what an image record of this build may vouch for.
    used: Mutex<BTreeMap<Sha256Digest, (LayerKey, CachedBlob)>>,
    /// Identifies the cairn program itself (see [`LayerCache::with_program`]).
    program: String,
}

/// A blob file in the cache, with the identity it had when stored: a hit requires the
/// same inode, size and mtime, so a file replaced or visibly changed is never taken
/// for it, and its bytes are checked against their BLAKE3 as they are reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedBlob {
    pub digest: Sha256Digest,
    pub size: u64,
    ino: u64,
    mtime_ns: i128,
    blake3: Blake3Digest,
}

impl CachedBlob {
    /// The check taken of the blob's bytes as they were stored: their BLAKE3 for a
    /// layer or an SBOM, the sparse check of `crate::disk::sparse` for a disk file.
    pub fn check(&self) -> Blake3Digest {
        self.blake3
    }
}

/// A VM disk build as cached under a disk key ([`crate::warm`]): each of its files
/// (raw, qcow2, kernel, initrd) a blob of the store, and what the disk stage says about
/// them (`detail`, which the cache itself never reads).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiskRecord<T> {
    pub files: Vec<CachedFile>,
    pub detail: T,
}

/// One file of a [`DiskRecord`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedFile {
    /// What follows `<image name>.` in the output directory (`raw`, `vmlinuz`).
    pub suffix: String,
    pub blob: CachedBlob,
}

/// A layer of an [`ImageRecord`]: what a written layer reports, without the per-file
/// SHA-1s (only the SBOMs need them, and those are recorded whole).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedLayer {
    pub name: String,
    /// The key of the layer's own entry (hex).
    pub key: String,
    pub blob: CachedBlob,
    pub diff_id: Sha256Digest,
    pub uncompressed_size: u64,
    pub entries: usize,
    pub compression: Compression,
}

impl CachedLayer {
    /// The layer as a build reports it: from the cache, without SHA-1s.
    pub fn layer_blob(&self) -> LayerBlob {
        LayerBlob {
            name: self.name.clone(),
            digest: self.blob.digest,
            size: self.blob.size,
            diff_id: self.diff_id,
            uncompressed_size: self.uncompressed_size,
            entries: self.entries,
            compression: self.compression,
            cached: true,
            sha1: EntrySha1s::default(),
        }
    }
}

/// Everything one platform's image adds to the layout above its base, as cached under
/// an image key ([`crate::warm`]): its layers in order (the SBOM layer last, when the
/// SBOMs are embedded) and its two SBOM documents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    pub layers: Vec<CachedLayer>,
    pub spdx: CachedBlob,
    pub cyclonedx: CachedBlob,
    /// The build's warnings about files the platform cannot run, which a replay
    /// repeats (and `--strict` refuses) without reading the files.
    #[serde(default)]
    pub foreign_elf: Vec<String>,
}

impl ImageRecord {
    /// Every blob the record refers to.
    pub fn blobs(&self) -> impl Iterator<Item = &CachedBlob> {
        self.layers
            .iter()
            .map(|l| &l.blob)
            .chain([&self.spdx, &self.cyclonedx])
    }
}

/// What `cairn cache info` shows.
#[derive(Debug, Serialize)]
pub struct CacheInfo {
    pub dir: PathBuf,
    pub entries: usize,
    /// Image records (whole images with their SBOMs, for unchanged rebuilds).
    pub images: usize,
    /// Disk records (the files of a VM disk build, for unchanged rebuilds).
    pub disks: usize,
    pub blobs: usize,
    pub bytes: u64,
}

/// What `cairn cache prune` removed.
#[derive(Debug, Serialize)]
pub struct PruneReport {
    pub removed_entries: usize,
    pub removed_blobs: usize,
    pub freed_bytes: u64,
    pub after: CacheInfo,
}

/// Which entries `prune` removes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrunePolicy {
    /// Remove least recently used entries until the blobs take at most this many bytes.
    pub max_bytes: Option<u64>,
    /// Remove entries last used before this time (seconds since the epoch).
    pub unused_since: Option<u64>,
}

impl LayerCache {
    /// Opens (creating if needed) the layer cache in `dir`.
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        let root = dir.join(LAYERS_DIR);
        let cache = LayerCache {
            dir: dir.to_path_buf(),
            blobs: blobs_dir(&root),
            entries: root.join("entries"),
            images: root.join("images"),
            disks: root.join("disks"),
            tmp: root.join("tmp"),
            owner: crate::oci::owner::own_tag(),
            next_tmp: AtomicU64::new(0),
            warnings: Mutex::new(Vec::new()),
            remote: None,
            used: Mutex::new(BTreeMap::new()),
            program: String::new(),
        };
        for d in [
            &cache.blobs,
            &cache.entries,
            &cache.images,
            &cache.disks,
            &cache.tmp,
        ] {
            fs::create_dir_all(d).map_err(io_err(d))?;
        }
        cache.remove_orphaned_tmp()?;
        Ok(cache)
    }

    /// Shares the cache through a registry: misses are looked up there, and layers
    /// written or found locally are pushed there if it lacks them.
    pub fn with_remote(mut self, remote: impl SharedLayerStore + 'static) -> Self {
        self.remote = Some(Box::new(remote));
        self
    }

    /// Names the running cairn program (the CLI passes its executable's size, inode
    /// and mtime): image records ([`crate::warm`]) are replayed only by the program
    /// that stored them, so a rebuilt cairn of the same version never replays images
    /// that an older build of its code assembled.
    pub fn with_program(mut self, program: String) -> Self {
        self.program = program;
        self
    }

    /// See [`LayerCache::with_program`].
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Whether the cache is shared through a registry.
    pub fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The cache directory given to [`LayerCache::open`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Warnings gathered so far (each once).
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    /// Records a problem that does not stop the build.
    pub fn warn(&self, message: String) {
        if let Ok(mut w) = self.warnings.lock() {
            w.push(message);
        }
    }

    fn entry_path(&self, key: &LayerKey) -> PathBuf {
        self.entries.join(format!("{}.json", key.hex()))
    }

    /// The path of the cached blob `digest`.
    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// A fresh path in the cache's `tmp/` to write a file that [`LayerCache::adopt`]
    /// then moves into place: `<pid>-<start time>-<n>`, naming the process that owns it
    /// (see [`LayerCache::remove_orphaned_tmp`]).
    pub fn tmp_path(&self) -> PathBuf {
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!("{}-{n}", self.owner))
    }

    /// Removes the temporary files (of `tmp/`) whose process is gone: a build killed, or
    /// stopped by a full disk, midway through a write. The owner is named by pid and
    /// start time, so a pid the system has since given to another process does not
    /// keep the file. Files named otherwise are left to [`LayerCache::prune`]'s age rule.
    pub fn remove_orphaned_tmp(&self) -> Result<usize, CacheError> {
        let mut removed = 0;
        for tmp in list_dir(&self.tmp)? {
            if crate::oci::owner::is_orphan(&tmp.name) && fs::remove_file(&tmp.path).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The entry for `key` if its blob is present and unchanged since it was stored.
    fn lookup(&self, key: &LayerKey) -> Option<Entry> {
        let path = self.entry_path(key);
        // Read as parsed: an entry lists the SHA-1 of every file of its layer, some
        // 100 MB at a million files, which a buffer would hold beside the parsed list.
        let file = io::BufReader::new(fs::File::open(&path).ok()?);
        let entry: Entry = match serde_json::from_reader(file) {
            Ok(entry) => entry,
            Err(_) => {
                // Written atomically, so only damage from outside (or an entry from
                // before its BLAKE3 was recorded) gets here: drop it.
                let _ = fs::remove_file(&path);
                return None;
            }
        };
        self.is_intact(&entry.blob()).then_some(entry)
    }

    /// Stores the blob just written to `layout` under `key`. Failures become warnings.
    fn store(&self, key: &LayerKey, layout: &LayoutWriter, blob: &LayerBlob) {
        if let Err(e) = self.try_store(key, layout, blob) {
            self.warn(format!(
                "layer `{}` was not added to the layer cache: {e}",
                blob.name
            ));
        }
    }

    fn try_store(
        &self,
        key: &LayerKey,
        layout: &LayoutWriter,
        blob: &LayerBlob,
    ) -> Result<(), CacheError> {
        // Always the blob just written, never one already there: that one may have been
        // changed in place, which is why this layer missed.
        let tmp = self.tmp_path();
        let source = layout.blob_path(&blob.digest);
        let stored = copy_synced(&source, &tmp)
            .map_err(io_err(&tmp))
            .and_then(|check| self.adopt(&tmp, key, LayerRecord::of(blob), check));
        if stored.is_err() {
            // A full disk, say: leave no partial file behind.
            let _ = fs::remove_file(&tmp);
        }
        stored
    }

    /// Makes the complete file `tmp` the cached blob of `layer`, read-only, and records
    /// `layer` under `key` with that file's identity and `check`, the BLAKE3 of its
    /// bytes as they were written to `tmp`. Both steps happen under an
    /// exclusive lock on the cache: otherwise two builds storing the same blob could
    /// interleave, leaving an entry that names the other build's file, which `lookup`
    /// would then take for a blob changed in place.
    pub fn adopt(
        &self,
        tmp: &Path,
        key: &LayerKey,
        layer: LayerRecord,
        check: Blake3Digest,
    ) -> Result<(), CacheError> {
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o444)).map_err(io_err(tmp))?;
        let lock_path = self.tmp.join(".store.lock");
        let lock = fs::File::create(&lock_path).map_err(io_err(&lock_path))?;
        // SAFETY: a valid open file descriptor; the lock is released when `lock` closes.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
            return Err(io_err(&lock_path)(io::Error::last_os_error()));
        }
        let target = self.blob_path(&layer.digest);
        fs::rename(tmp, &target).map_err(io_err(&target))?;
        let blob = fs::metadata(&target).map_err(io_err(&target))?;
        let entry = Entry {
            layer,
            blob_ino: blob.ino(),
            blob_mtime_ns: mtime_ns(&blob),
            blob_blake3: check,
        };
        self.mark_used(key, &entry);
        // Streamed: the entry lists the SHA-1 of every file of the layer.
        let tmp = self.tmp_path();
        let file = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut out = io::BufWriter::new(file);
        serde_json::to_writer(&mut out, &entry).map_err(|e| io_err(&tmp)(e.into()))?;
        out.into_inner().map_err(|e| io_err(&tmp)(e.into_error()))?;
        let path = self.entry_path(key);
        let renamed = fs::rename(&tmp, &path).map_err(io_err(&path));
        drop(lock);
        renamed
    }

    /// Adds the cached blob of `entry` to `layout`; `None` if it vanished meanwhile (a
    /// concurrent prune) or was changed in place, which the caller treats as a miss.
    fn restore(
        &self,
        key: &LayerKey,
        entry: Entry,
        name: &str,
        layout: &LayoutWriter,
    ) -> Option<LayerBlob> {
        if !self.copy_out(&entry.blob(), layout) {
            return None;
        }
        self.mark_used(key, &entry);
        let entry = entry.layer;
        // Marks the entry used, for `prune --max-size` and `--older-than`.
        touch(&self.entry_path(key));
        Some(LayerBlob {
            name: name.to_string(),
            digest: entry.digest,
            size: entry.size,
            diff_id: entry.diff_id,
            uncompressed_size: entry.uncompressed_size,
            entries: entry.entries,
            compression: entry.compression,
            cached: true,
            sha1: entry.sha1,
        })
    }

    /// Copies the cached blob `digest` into `layout`, checked by hash on the way
    /// ([`LayoutWriter::copy_blob`]). A blob whose bytes are no longer its digest's (a
    /// change in place that kept inode, size and mtime) is removed from the cache, with
    /// a warning, so the build writes it anew and stores the new one.
    fn copy_out(&self, blob: &CachedBlob, layout: &LayoutWriter) -> bool {
        let path = self.blob_path(&blob.digest);
        match layout.copy_blob(&path, blob.digest, blob.size, blob.blake3) {
            Ok(_) => true,
            Err(e @ LayoutError::ChangedBlob(_)) => {
                let _ = fs::remove_file(&path);
                self.warn(format!(
                    "layer cache: {e}; removed it, and wrote the blob anew"
                ));
                false
            }
            Err(_) => false,
        }
    }

    fn mark_used(&self, key: &LayerKey, entry: &Entry) {
        if let Ok(mut used) = self.used.lock() {
            used.insert(entry.layer.digest, (*key, entry.blob()));
        }
    }

    /// The stored layer blob `digest` as this build found or stored it, and the key of
    /// its entry.
    pub fn used_blob(&self, digest: &Sha256Digest) -> Option<(LayerKey, CachedBlob)> {
        self.used.lock().ok()?.get(digest).copied()
    }

    /// Marks the layer entry `key` used, as a hit does, for `prune`: an image replayed
    /// from its record keeps the entries of its layers fresh too.
    pub fn touch_entry(&self, key_hex: &str) {
        touch(&self.entries.join(format!("{key_hex}.json")));
    }

    /// Whether `blob` is still the file that was stored: same inode, size and mtime.
    pub fn is_intact(&self, blob: &CachedBlob) -> bool {
        fs::metadata(self.blob_path(&blob.digest)).is_ok_and(|meta| {
            meta.ino() == blob.ino && meta.len() == blob.size && mtime_ns(&meta) == blob.mtime_ns
        })
    }

    /// Copies the stored `blob` into `layout` (checked by hash, see
    /// [`LayoutWriter::copy_blob`]) if it is intact; `false` otherwise (changed, or
    /// removed by a concurrent prune).
    pub fn copy_into(&self, blob: &CachedBlob, layout: &LayoutWriter) -> bool {
        self.is_intact(blob) && self.copy_out(blob, layout)
    }

    /// Stores the blob `digest` just committed to `layout` (an SBOM document) in the
    /// cache, read-only, and returns its identity there. No lock is needed (unlike
    /// [`LayerCache::adopt`]): if a concurrent build replaces the file meanwhile, the
    /// identity recorded here no longer matches, and a replay of the record is a miss.
    pub fn store_blob(
        &self,
        layout: &LayoutWriter,
        digest: Sha256Digest,
        size: u64,
    ) -> Result<CachedBlob, CacheError> {
        let tmp = self.tmp_path();
        match copy_synced(&layout.blob_path(&digest), &tmp) {
            Ok(check) => self.place_blob(&tmp, digest, size, check),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(io_err(&tmp)(e))
            }
        }
    }

    /// Makes the complete, synced file `tmp` (from [`LayerCache::tmp_path`]) the stored
    /// blob `digest`, read-only, and returns its identity, with `check` (what the caller
    /// took of the bytes it wrote to `tmp`). As for [`LayerCache::store_blob`], no lock
    /// is needed. `tmp` is removed if this fails.
    pub fn place_blob(
        &self,
        tmp: &Path,
        digest: Sha256Digest,
        size: u64,
        check: Blake3Digest,
    ) -> Result<CachedBlob, CacheError> {
        let target = self.blob_path(&digest);
        let placed = fs::set_permissions(tmp, fs::Permissions::from_mode(0o444))
            .and_then(|()| fs::rename(tmp, &target));
        if let Err(e) = placed {
            let _ = fs::remove_file(tmp);
            return Err(io_err(&target)(e));
        }
        let meta = fs::metadata(&target).map_err(io_err(&target))?;
        Ok(CachedBlob {
            digest,
            size,
            ino: meta.ino(),
            mtime_ns: mtime_ns(&meta),
            blake3: check,
        })
    }

    /// Removes the stored `blob`, whose bytes were found not to be those stored (a
    /// change in place), with a warning saying so: the build writes it anew.
    pub fn discard_changed(&self, blob: &CachedBlob, what: &str) {
        let path = self.blob_path(&blob.digest);
        let _ = fs::remove_file(&path);
        self.warn(format!(
            "layer cache: {what} ({}, {}) was changed after it was written; removed it, and wrote it anew",
            path.display(),
            blob.digest
        ));
    }

    fn image_path(&self, key_hex: &str) -> PathBuf {
        self.images.join(format!("{key_hex}.json"))
    }

    /// The image record stored under `key_hex`, if it reads; a damaged one is removed.
    /// Its blobs are not checked here: see [`LayerCache::copy_into`].
    pub fn image_record(&self, key_hex: &str) -> Option<ImageRecord> {
        read_record(&self.image_path(key_hex))
    }

    /// Stores `record` under `key_hex`, atomically. Failures become warnings.
    pub fn store_image_record(&self, key_hex: &str, record: &ImageRecord) {
        self.store_record(&self.image_path(key_hex), record, "the image");
    }

    fn disk_path(&self, key_hex: &str) -> PathBuf {
        self.disks.join(format!("{key_hex}.json"))
    }

    /// The disk record stored under `key_hex`, if it reads; a damaged one is removed.
    /// Its blobs are not checked here: the caller checks each as it copies it.
    pub fn disk_record<T: serde::de::DeserializeOwned>(
        &self,
        key_hex: &str,
    ) -> Option<DiskRecord<T>> {
        read_record(&self.disk_path(key_hex))
    }

    /// Stores `record` under `key_hex`, atomically. Failures become warnings.
    pub fn store_disk_record<T: Serialize>(&self, key_hex: &str, record: &DiskRecord<T>) {
        self.store_record(&self.disk_path(key_hex), record, "the VM disk");
    }

    /// Writes `record` to `path` through `tmp/` and a rename; failures become warnings
    /// naming `what` was not cached.
    fn store_record(&self, path: &Path, record: &impl Serialize, what: &str) {
        let tmp = self.tmp_path();
        let stored = serde_json::to_vec(record)
            .map_err(io::Error::from)
            .and_then(|json| fs::write(&tmp, json))
            .and_then(|()| fs::rename(&tmp, path));
        if let Err(e) = stored {
            let _ = fs::remove_file(&tmp);
            self.warn(format!(
                "{what} was not added to the layer cache ({}): {e}",
                path.display()
            ));
        }
    }

    /// Counts what the cache holds.
    pub fn info(&self) -> Result<CacheInfo, CacheError> {
        let blobs = list_dir(&self.blobs)?;
        Ok(CacheInfo {
            dir: self.dir.clone(),
            entries: list_dir(&self.entries)?.len(),
            images: list_dir(&self.images)?.len(),
            disks: list_dir(&self.disks)?.len(),
            blobs: blobs.len(),
            bytes: blobs.iter().map(|b| b.size).sum(),
        })
    }

    /// Removes entries by `policy`, then every blob no entry refers to, and leftovers of
    /// interrupted writes older than a day before `now` (seconds since the epoch).
    pub fn prune(&self, policy: PrunePolicy, now: u64) -> Result<PruneReport, CacheError> {
        // Layer entries, image and disk records alike: each refers to blobs; one whose
        // record cannot be read refers to none and goes.
        let mut entries: Vec<(Listed, Option<Vec<Sha256Digest>>)> = list_dir(&self.entries)?
            .into_iter()
            .map(|listed| {
                let digests = fs::read(&listed.path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
                    .map(|e| vec![e.layer.digest]);
                (listed, digests)
            })
            .collect();
        entries.extend(list_dir(&self.images)?.into_iter().map(|listed| {
            let digests = fs::read(&listed.path)
                .ok()
                .and_then(|b| serde_json::from_slice::<ImageRecord>(&b).ok())
                .map(|r| r.blobs().map(|b| b.digest).collect());
            (listed, digests)
        }));
        entries.extend(list_dir(&self.disks)?.into_iter().map(|listed| {
            let digests = fs::read(&listed.path)
                .ok()
                .and_then(|b| serde_json::from_slice::<DiskRecord<serde::de::IgnoredAny>>(&b).ok())
                .map(|r| r.files.iter().map(|f| f.blob.digest).collect());
            (listed, digests)
        }));
        let blobs = list_dir(&self.blobs)?;
        let blob_size: BTreeMap<String, u64> =
            blobs.iter().map(|b| (b.name.clone(), b.size)).collect();
        // Most recently used first; ties broken by path so the order is fixed.
        entries.sort_by(|a, b| {
            b.0.mtime
                .cmp(&a.0.mtime)
                .then_with(|| a.0.path.cmp(&b.0.path))
        });
        let mut kept_blobs = BTreeSet::new();
        let mut kept_bytes = 0u64;
        let mut removed_entries = 0;
        for (listed, digests) in &entries {
            // Every blob must be present; the size is what keeping this entry adds.
            let grows = digests.as_ref().and_then(|digests| {
                let mut new: BTreeSet<String> = BTreeSet::new();
                let mut grows = 0u64;
                for d in digests {
                    let size = blob_size.get(&d.hex())?;
                    if !kept_blobs.contains(&d.hex()) && new.insert(d.hex()) {
                        grows += size;
                    }
                }
                Some(grows)
            });
            let too_old = policy
                .unused_since
                .is_some_and(|since| listed.mtime < i128::from(since) * 1_000_000_000);
            let too_big = policy
                .max_bytes
                .is_some_and(|max| kept_bytes.saturating_add(grows.unwrap_or(0)) > max);
            match (grows, digests) {
                (Some(grows), Some(digests)) if !too_old && !too_big => {
                    kept_blobs.extend(digests.iter().map(Sha256Digest::hex));
                    kept_bytes += grows;
                }
                _ => match fs::remove_file(&listed.path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(io_err(&listed.path)(e))
                    }
                    _ => removed_entries += 1,
                },
            }
        }
        let mut removed_blobs = 0;
        let mut freed_bytes = 0;
        for blob in blobs {
            if !kept_blobs.contains(&blob.name) {
                match fs::remove_file(&blob.path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(io_err(&blob.path)(e))
                    }
                    _ => {
                        removed_blobs += 1;
                        freed_bytes += blob.size;
                    }
                }
            }
        }
        // Temporary files of builds that died: those whose owner is gone, and, of those
        // named otherwise, any older than a day (a live build's are minutes old).
        self.remove_orphaned_tmp()?;
        let day_ago = i128::from(now.saturating_sub(86_400)) * 1_000_000_000;
        for tmp in list_dir(&self.tmp)? {
            if tmp.mtime < day_ago {
                let _ = fs::remove_file(&tmp.path);
            }
        }
        Ok(PruneReport {
            removed_entries,
            removed_blobs,
            freed_bytes,
            after: self.info()?,
        })
    }
}

/// Writes `tree` into `layout`, or, when `cache` holds a blob for the same key, adds
/// that blob instead; a layer written anew is added to the cache.
#[allow(clippy::too_many_arguments)]
pub fn write_layer(
    cache: Option<&LayerCache>,
    tree: &LayerTree,
    epoch: u64,
    compression: Compression,
    jobs: usize,
    layout: &LayoutWriter,
    cancel: &AtomicBool,
    on_bytes: &dyn Fn(u64),
) -> Result<LayerBlob, LayerError> {
    let Some(cache) = cache else {
        return super::write_layer(tree, epoch, compression, jobs, layout, cancel, on_bytes);
    };
    let key = layer_key(tree, epoch, compression);
    let mut local = cache.lookup(&key);
    if let (None, Some(remote)) = (&local, &cache.remote) {
        if remote.fetch(&key, cache) {
            local = cache.lookup(&key);
        }
    }
    if let Some(entry) = local.filter(|e| e.layer.compression == compression) {
        let record = entry.layer.clone();
        if let Some(blob) = cache.restore(&key, entry, &tree.name, layout) {
            if let Some(remote) = &cache.remote {
                remote.publish(&key, cache, &record);
            }
            on_bytes(record.uncompressed_size);
            return Ok(blob);
        }
    }
    let blob = super::write_layer(tree, epoch, compression, jobs, layout, cancel, on_bytes)?;
    debug_assert_eq!(blob.media_type(), compression.media_type());
    cache.store(&key, layout, &blob);
    if let Some(remote) = &cache.remote {
        remote.publish(&key, cache, &LayerRecord::of(&blob));
    }
    Ok(blob)
}

struct Listed {
    name: String,
    path: PathBuf,
    size: u64,
    mtime: i128,
}

/// Regular files of `dir` (not starting with `.`), with their size and mtime.
fn list_dir(dir: &Path) -> Result<Vec<Listed>, CacheError> {
    let mut listed = Vec::new();
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listed),
        Err(e) => return Err(io_err(dir)(e)),
    };
    for item in read {
        let item = item.map_err(io_err(dir))?;
        let Ok(meta) = item.metadata() else { continue };
        let name = item.file_name().to_string_lossy().into_owned();
        if !meta.is_file() || name.starts_with('.') {
            continue;
        }
        listed.push(Listed {
            name,
            path: item.path(),
            size: meta.len(),
            mtime: mtime_ns(&meta),
        });
    }
    Ok(listed)
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

/// Sets the file's mtime to the file system's current time (`utimensat` with no times),
/// without cairn reading a clock. Best effort: a failed touch only ages the entry.
fn touch(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) {
        // SAFETY: a valid NUL-terminated path; a null `times` means "now" for both.
        unsafe {
            libc::utimensat(libc::AT_FDCWD, c_path.as_ptr(), std::ptr::null(), 0);
        }
    }
}

/// Copies (or reflinks) the file `from` to the new file `to`, synced, and returns the
/// BLAKE3 of the bytes `to` holds.
fn copy_synced(from: &Path, to: &Path) -> io::Result<Blake3Digest> {
    let (file, check, _) = copy_hashed(from, to)?;
    file.sync_all()?;
    Ok(check)
}

/// The record at `path`, if it reads, marked used (for `prune`); a damaged one is
/// removed.
fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(record) => {
            touch(path);
            Some(record)
        }
        Err(_) => {
            let _ = fs::remove_file(path);
            None
        }
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
