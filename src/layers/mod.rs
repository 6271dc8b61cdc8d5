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

pub use accounts::image_user;
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
    /// SHA-1 of each regular file written, by its entry's place in the layer.
    #[serde(skip)]
    pub sha1: EntrySha1s,
}

/// The SHA-1 of each entry of a layer that is a regular file, by the entry's place in
/// the layer's sorted list (`None` for other entries): SPDX requires SHA-1 per file,
/// and it is computed in the pass that writes the bytes. By place, not keyed by
/// SHA-256: 21 bytes an entry where sorted (SHA-256, SHA-1) pairs took 52, at a
/// million files held through the SBOM stage. Shared, not copied, by the layer
/// cache's record of the layer. In JSON, a list of hex strings and nulls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntrySha1s(std::sync::Arc<Vec<Option<[u8; 20]>>>);

impl EntrySha1s {
    /// The SHA-1 of the entry at `place`, if it is a regular file.
    pub fn get(&self, place: usize) -> Option<&[u8; 20]> {
        self.0.get(place)?.as_ref()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<Option<[u8; 20]>>> for EntrySha1s {
    fn from(sha1s: Vec<Option<[u8; 20]>>) -> Self {
        EntrySha1s(std::sync::Arc::new(sha1s))
    }
}

impl serde::Serialize for EntrySha1s {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|sha1| sha1.map(hex::encode)))
    }
}

impl<'de> serde::Deserialize<'de> for EntrySha1s {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Sha1s;
        impl<'de> serde::de::Visitor<'de> for Sha1s {
            type Value = EntrySha1s;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of hex SHA-1s and nulls, one per layer entry")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<EntrySha1s, A::Error> {
                let mut sha1s = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(sha1) = seq.next_element::<Option<Sha1Hex>>()? {
                    sha1s.push(sha1.map(|Sha1Hex(sha1)| sha1));
                }
                Ok(EntrySha1s::from(sha1s))
            }
        }
        d.deserialize_seq(Sha1s)
    }
}

/// One SHA-1 as 40 hex digits, read without a string of its own.
struct Sha1Hex([u8; 20]);

impl<'de> serde::Deserialize<'de> for Sha1Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = Sha1Hex;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a SHA-1 as 40 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, hex_sha1: &str) -> Result<Sha1Hex, E> {
                let mut sha1 = [0u8; 20];
                hex::decode_to_slice(hex_sha1, &mut sha1).map_err(E::custom)?;
                Ok(Sha1Hex(sha1))
            }
        }
        d.deserialize_str(Hex)
    }
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
    // One item per entry, reserved whole: a list that grows by doubling holds both
    // copies at its last growth.
    let mut sha1 = Vec::with_capacity(tree.entries.len());
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
