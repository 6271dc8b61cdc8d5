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
//! layers, the file list and the SBOMs, are computed by cairn from exactly the inputs
//! that [`ImageInputs`] holds, and the image key is the SHA-256 of their JSON
//! ([`ImageInputs::key`]), so every field of them is in it, including any field added
//! to them later:
//! - the recipe's text and file name, the platform and the epoch (the recipe as built
//!   is parsed from that text and specialised for that platform), and the output format;
//! - every resolved source ([`ResolvedSources`]): its name, kind, digest and signer,
//!   every entry of its snapshot, the Debian packages and the lock; only where a
//!   file's bytes live on the host, warnings and whether the lock changed are left
//!   out, each marked `#[serde(skip)]` where it is declared;
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
//! A recipe with `vm:` is replayed only together with its disk ([`disk`]: the disk
//! is built from the layer trees, which a replay never assembles). A cache shared
//! through a registry (its layers are pushed from their layer entries) always takes
//! the normal path.

pub mod disk;

use crate::attest::contents::BaseInfo;
use crate::digest::Sha256Digest;
use crate::layers::cache::{CachedLayer, ImageRecord, LayerCache};
use crate::layers::LayerBlob;
use crate::oci::layout::{LayoutWriter, StoredBlob};
use crate::output::archive::OutputFormat;
use crate::resolve::ResolvedSources;
use rayon::prelude::*;
use serde::Serialize;

/// What determines every blob an image adds above its base (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageKey(Sha256Digest);

/// Everything the layers and SBOMs of one platform's image are computed from: the
/// image key is the hash of exactly this, field by field as serde writes it.
#[derive(Serialize)]
pub struct ImageInputs<'a> {
    /// The recipe as written; the recipe as built is parsed from it.
    pub recipe_text: &'a str,
    pub recipe_file_name: String,
    pub platform: String,
    pub epoch: u64,
    pub output_format: OutputFormat,
    pub base: Option<&'a BaseInfo>,
    pub resolved: &'a ResolvedSources,
    /// The identity of the cairn executable ([`LayerCache::program`]).
    pub program: &'a str,
}

/// The versioned frame around [`ImageInputs`]: a new key version or cairn version
/// never replays an older record.
#[derive(Serialize)]
struct KeyedInputs<'a> {
    key_version: &'static str,
    cairn_version: &'static str,
    output_format_version: &'static str,
    inputs: &'a ImageInputs<'a>,
}

impl ImageInputs<'_> {
    /// The image key of these inputs.
    pub fn key(&self) -> ImageKey {
        ImageKey(Sha256Digest::of_json(&KeyedInputs {
            key_version: "cairn-image-key-v2",
            cairn_version: env!("CARGO_PKG_VERSION"),
            output_format_version: crate::oci::OUTPUT_FORMAT_VERSION,
            inputs: self,
        }))
    }
}

/// An image's own layers and SBOMs, added to the layout from the cache.
pub struct Replayed {
    /// Every layer above the base, in order (the SBOM layer last when embedded).
    pub layers: Vec<LayerBlob>,
    pub spdx: StoredBlob,
    pub cyclonedx: StoredBlob,
    /// The recorded build's warnings about files the platform cannot run.
    pub foreign_elf: Vec<String>,
}

/// Adds the blobs recorded under `key` to `layout`, if there is a record and every
/// blob it names is intact; `None` sends the build down the normal path.
pub fn replay(cache: &LayerCache, key: &ImageKey, layout: &LayoutWriter) -> Option<Replayed> {
    let record = cache.image_record(&key.0.hex())?;
    // Each blob is hashed as it is copied: on all cores.
    let blobs: Vec<_> = record.blobs().collect();
    if !blobs.par_iter().all(|blob| cache.copy_into(blob, layout)) {
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
        foreign_elf: record.foreign_elf,
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
    foreign_elf: &[String],
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
                foreign_elf: foreign_elf.to_vec(),
            },
        ),
        (Err(e), _) | (_, Err(e)) => {
            cache.warn(format!("the SBOMs were not added to the layer cache: {e}"))
        }
    }
}
