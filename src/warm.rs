//! The warm path: an unchanged recipe is rebuilt from the layer cache without
//! assembling a layer tree, computing a layer key or writing an SBOM.
//!
//! After a build, the layer cache keeps an image record ([`ImageRecord`]) under an
//! *image key*: every layer the image adds above its base (the SBOM layer included)
//! and its SPDX and CycloneDX documents, each blob with the identity (inode, size,
//! mtime) of its file in the cache. A later build whose sources resolve to the same
//! image key links those blobs into the layout and goes straight on to the config,
//! manifest, signatures and referrers; the per-file work of a build (layer trees,
//! layer keys, the image's file list, 60 MiB of SBOM JSON at 40,000 files) is skipped.
//!
//! Why a replay gives the same bytes as a build. The layer trees, and from them the
//! layers, the file list and the SBOMs, are computed by cairn from exactly these
//! inputs, all of which the image key covers ([`image_key`]):
//! - the recipe's text and file name, the platform and the epoch (the recipe as built
//!   is parsed from that text and specialised for that platform);
//! - every resolved source: its name, kind, digest and signer, and every entry of its
//!   snapshot (path, type, mode, owner, size and SHA-256 of each file, link targets),
//!   i.e. everything later stages read from a source except where its bytes live;
//! - every Debian package: its pin, the InRelease and index it came through, signer,
//!   control stanza, md5sums, license, recipe line and file snapshot;
//! - the base image (reference, pinned and manifest digest: its layers are
//!   content-addressed, so the manifest digest fixes its file system);
//! - cairn's version, its output-format version and the identity of the cairn
//!   executable ([`LayerCache::with_program`]), so a changed program never replays.
//!
//! The sources were resolved (and, on `--locked` builds, every file read and hashed)
//! before the key is computed, so the key describes the inputs as they are now. A
//! replay trusts the cached blobs as the layer cache does (see [`crate::layers::cache`]):
//! each must be the very file that was stored (same inode, size and mtime), else the
//! build takes the normal path, which writes the image anew and replaces the record.
//! A recipe with `vm:` (the disk needs the layer trees) and a cache shared through a
//! registry (its layers are pushed from their layer entries) always take the normal
//! path.

use crate::attest::contents::BaseInfo;
use crate::digest::Sha256Digest;
use crate::layers::cache::{CachedLayer, ImageRecord, LayerCache};
use crate::layers::LayerBlob;
use crate::oci::layout::{LayoutWriter, StoredBlob};
use crate::recipe::{Platform, Recipe};
use crate::resolve::ResolvedSources;
use crate::snapshot::{SourceEntryKind, SourceTree};
use sha2::{Digest as _, Sha256};

/// What determines every blob an image adds above its base (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageKey(Sha256Digest);

/// Hashes fields with their length in front, so no two field lists hash alike;
/// buffered, as a key covers tens of thousands of small fields.
struct KeyHasher {
    hasher: Sha256,
    buf: Vec<u8>,
}

impl KeyHasher {
    fn new() -> Self {
        KeyHasher {
            hasher: Sha256::new(),
            buf: Vec::with_capacity(1 << 16),
        }
    }
    fn finish(mut self) -> Sha256Digest {
        self.hasher.update(&self.buf);
        Sha256Digest::from_hasher(self.hasher)
    }
    fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= 1 << 16 {
            self.hasher.update(&self.buf);
            self.buf.clear();
        }
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn u64(&mut self, n: u64) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }
    fn digest(&mut self, d: &Sha256Digest) {
        self.bytes(d.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u64(1);
                self.str(s);
            }
            None => self.u64(0),
        }
    }
    fn tree(&mut self, tree: &SourceTree) {
        self.u64(tree.entries.len() as u64);
        for e in &tree.entries {
            self.str(&e.rel_path);
            self.u64(u64::from(e.mode));
            match e.owner {
                Some((uid, gid)) => {
                    self.u64(1);
                    self.u64(u64::from(uid));
                    self.u64(u64::from(gid));
                }
                None => self.u64(0),
            }
            match &e.kind {
                SourceEntryKind::File(c) => {
                    self.str("f");
                    self.u64(c.size);
                    self.digest(&c.sha256);
                }
                SourceEntryKind::Dir => self.str("d"),
                SourceEntryKind::Symlink { target } => {
                    self.str("l");
                    self.str(target);
                }
                SourceEntryKind::Hardlink { target } => {
                    self.str("h");
                    self.str(target);
                }
            }
        }
    }
}

/// The image key of `recipe` (as built for `platform`) from `resolved` on `base`.
pub fn image_key(
    recipe: &Recipe,
    platform: &Platform,
    epoch: u64,
    resolved: &ResolvedSources,
    base: Option<&BaseInfo>,
    program: &str,
) -> ImageKey {
    let mut h = KeyHasher::new();
    h.str("cairn-image-key-v1");
    h.str(env!("CARGO_PKG_VERSION"));
    h.str(crate::oci::OUTPUT_FORMAT_VERSION);
    h.str(program);
    h.str(&recipe.file.text);
    h.str(
        &recipe
            .file
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy(),
    );
    h.str(&platform.to_string());
    h.u64(epoch);
    match base {
        Some(b) => {
            h.u64(1);
            h.str(&b.reference);
            h.digest(&b.pinned);
            h.digest(&b.manifest_digest);
        }
        None => h.u64(0),
    }
    h.u64(resolved.sources.len() as u64);
    for (name, source) in &resolved.sources {
        h.str(name);
        h.str(&source.kind.to_string());
        h.digest(&source.digest);
        h.opt_str(source.signer.as_deref());
        h.tree(&source.tree);
    }
    match &resolved.packages {
        Some(installed) => {
            h.u64(installed.packages.len() as u64);
            for p in &installed.packages {
                h.str(&p.name);
                h.bytes(&serde_json::to_vec(&p.pin).expect("a package pin serialises"));
                h.str(&p.suite);
                h.digest(&p.inrelease_sha256);
                h.str(&p.signed_by);
                h.str(&p.control);
                h.opt_str(p.md5sums.as_deref());
                h.opt_str(p.license.as_deref());
                h.u64(u64::from(p.line));
                h.tree(&p.tree);
            }
        }
        None => h.u64(u64::MAX),
    }
    ImageKey(h.finish())
}

/// An image's own layers and SBOMs, added to the layout from the cache.
pub struct Replayed {
    /// Every layer above the base, in order (the SBOM layer last when embedded).
    pub layers: Vec<LayerBlob>,
    pub spdx: StoredBlob,
    pub cyclonedx: StoredBlob,
}

/// Adds the blobs recorded under `key` to `layout`, if there is a record and every
/// blob it names is intact; `None` sends the build down the normal path.
pub fn replay(cache: &LayerCache, key: &ImageKey, layout: &LayoutWriter) -> Option<Replayed> {
    let record = cache.image_record(&key.0.hex())?;
    if !record.blobs().all(|blob| cache.link_into(blob, layout)) {
        return None;
    }
    for layer in &record.layers {
        cache.touch_entry(&layer.key);
    }
    let stored = |b: &crate::layers::cache::CachedBlob| StoredBlob {
        digest: b.digest,
        size: b.size,
    };
    Some(Replayed {
        layers: record.layers.iter().map(CachedLayer::layer_blob).collect(),
        spdx: stored(&record.spdx),
        cyclonedx: stored(&record.cyclonedx),
    })
}

/// Records the image just built (its layers, each found in or added to `cache` by this
/// build, and its SBOM blobs, added now) under `key`. Does nothing if a layer did not
/// make it into the cache; failures become cache warnings.
pub fn record(
    cache: &LayerCache,
    key: &ImageKey,
    layers: &[LayerBlob],
    spdx: StoredBlob,
    cyclonedx: StoredBlob,
    layout: &LayoutWriter,
) {
    let Some(cached_layers) = layers
        .iter()
        .map(|l| {
            let (key, blob) = cache.used_blob(&l.digest)?;
            Some(CachedLayer {
                name: l.name.clone(),
                key: key.hex(),
                blob,
                diff_id: l.diff_id,
                uncompressed_size: l.uncompressed_size,
                entries: l.entries,
                compression: l.compression,
            })
        })
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let store = |blob: StoredBlob| cache.store_blob(layout, blob.digest, blob.size);
    match (store(spdx), store(cyclonedx)) {
        (Ok(spdx), Ok(cyclonedx)) => cache.store_image_record(
            &key.0.hex(),
            &ImageRecord {
                layers: cached_layers,
                spdx,
                cyclonedx,
            },
        ),
        (Err(e), _) | (_, Err(e)) => {
            cache.warn(format!("the SBOMs were not added to the layer cache: {e}"))
        }
    }
}
