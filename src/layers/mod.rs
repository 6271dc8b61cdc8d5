//! Stage 3: layers. Assembles each layer's file tree ([`tree`]) and writes it as a
//! canonical tar ([`tar`]) compressed by deterministic parallel gzip ([`gzip`]), zstd
//! or nothing ([`compress`]) straight into the output's blob store: nothing is held in
//! memory but a few compression chunks, whatever the layer's size.

mod accounts;
pub mod cache;
pub mod compress;
pub mod debian;
pub mod elf;
pub mod gzip;
mod links;
pub mod sorted;
pub mod tar;
pub mod tree;

pub use tree::{
    assemble, assemble_on, generated_layer, layer_from_entries, FileData, GeneratedFrom, LayerTree,
    Origin, TreeEntry, TreeEntryKind, TreeError,
};

use crate::diag::Diagnose;
use crate::digest::{HashingWriter, Sha256Digest};
use crate::oci::compression::Compression;
use crate::oci::layout::{LayoutError, LayoutWriter};
use std::borrow::Cow;
use std::sync::atomic::AtomicBool;

/// A written layer blob.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerBlob {
    pub name: String,
    /// Digest and size of the compressed blob.
    pub digest: Sha256Digest,
    pub size: u64,
    /// Digest and size of the uncompressed tar (the OCI `diff_id`).
    pub diff_id: Sha256Digest,
    pub uncompressed_size: u64,
    pub entries: usize,
    pub compression: Compression,
    /// Whether the blob came from the layer cache rather than being written now.
    pub cached: bool,
    /// SHA-1 of each regular file written, by SHA-256.
    #[serde(skip)]
    pub sha1: crate::digest::Sha1Index,
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer `{layer}`: {source}")]
    Tar {
        layer: String,
        source: tar::TarError,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

impl Diagnose for LayerError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            LayerError::Tar { source, .. } => source.hint(),
            LayerError::Layout(_) => None,
        }
    }
}

impl LayerBlob {
    /// The OCI media type of the blob.
    pub fn media_type(&self) -> &'static str {
        self.compression.media_type()
    }
}

/// Writes `tree` as one layer blob into `layout`, compressing on `jobs` threads (the
/// bytes do not depend on `jobs`).
pub fn write_layer(
    tree: &LayerTree,
    epoch: u64,
    compression: Compression,
    jobs: usize,
    layout: &LayoutWriter,
    cancel: &AtomicBool,
    on_bytes: &dyn Fn(u64),
) -> Result<LayerBlob, LayerError> {
    let tar_err = |source| LayerError::Tar {
        layer: tree.name.clone(),
        source,
    };
    let blob = layout.blob_writer()?;
    let compressed = compress::LayerEncoder::new(blob, compression, jobs)
        .map_err(|e| tar_err(tar::TarError::Write(e)))?;
    let uncompressed = HashingWriter::new(compressed);
    // One pair per regular file, reserved whole: a list that grows by doubling holds
    // both copies at its last growth (some 80 MB at a million files).
    let files = tree
        .entries
        .values()
        .filter(|e| matches!(e.kind, TreeEntryKind::File(_)))
        .count();
    let mut sha1 = Vec::with_capacity(files);
    let uncompressed =
        tar::write_tar(tree, epoch, uncompressed, cancel, on_bytes, &mut sha1).map_err(tar_err)?;
    let (diff_id, uncompressed_size, compressed) = uncompressed.finish();
    let blob = compressed
        .finish()
        .map_err(|e| tar_err(tar::TarError::Write(e)))?;
    let stored = layout.commit_blob(blob)?;
    Ok(LayerBlob {
        name: tree.name.clone(),
        digest: stored.digest,
        size: stored.size,
        diff_id,
        uncompressed_size,
        entries: tree.entries.len(),
        compression,
        cached: false,
        sha1: sha1.into(),
    })
}
