//! Base images: reading the image a recipe builds on, from an OCI layout
//! ([`LayoutStore`]) or a registry, through one [`BaseStore`] interface.
//!
//! [`select`] fetches the pinned manifest or index (verified against its digest),
//! picks the manifest for the platform being built and reads its config;
//! [`copy_layers`] streams each layer blob byte for byte into the output layout
//! (never recompressed) while decompressing it once to check its `diff_id` and to read
//! the file system ([`BaseFs`]) the recipe's layers go on top of; [`read_fs`] reads
//! the file system alone, for the resolve stage (the installed packages).

pub mod fs;
mod layout;
mod registry;

pub use fs::{BaseEntry, BaseFs, BaseKind};
pub use layout::LayoutStore;
pub use registry::RegistryStore;

use crate::diag::{Diagnose, Interrupted};
use crate::digest::{HashingReader, Sha256Digest};
use crate::oci::compression::Compression;
use crate::oci::layout::{LayoutError, LayoutWriter};
use crate::oci::media_type;
use crate::recipe::Platform;
use crate::registry::RegistryError;
use crate::snapshot::limits::{Budget, Limits};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::Serialize;
use std::borrow::Cow;
use std::io::{self, Read, Write};

/// Where base image manifests and blobs come from.
pub trait BaseStore {
    /// The digest the reference names now: a layout's one image, a registry tag.
    fn resolve(&self) -> Result<Sha256Digest, BaseError>;
    /// The bytes of the manifest or index `digest` (checked by the caller).
    fn manifest(&self, digest: &Sha256Digest) -> Result<Vec<u8>, BaseError>;
    /// A blob's bytes as a stream (checked by the caller as it reads).
    fn blob(&self, digest: &Sha256Digest) -> Result<Box<dyn Read + '_>, BaseError>;
}

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("cannot read {what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("the base image has no {what} {digest}")]
    Missing {
        what: &'static str,
        digest: Sha256Digest,
    },
    #[error(
        "the base image's {what} does not match its digest: expected {expected}, found {actual}"
    )]
    DigestMismatch {
        what: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error("the base image is not valid: {0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Layer {
        what: String,
        source: fs::BaseFsError,
    },
    #[error("the base image has no manifest for {platform}; it has {available}")]
    NoPlatform { platform: String, available: String },
    #[error("the base's {what} cannot be written into the output: {source}")]
    Output { what: String, source: LayoutError },
    #[error("{0}")]
    Registry(RegistryError),
    #[error("no registry client was given to fetch {image}")]
    NoRegistryClient { image: String },
    #[error("{0}")]
    Interrupted(#[from] Interrupted),
}

/// Every base error has a hint: it is placed at the recipe's `base:`.
impl Diagnose for BaseError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            BaseError::Missing { .. } => "the base image is incomplete: copy it again in full (e.g. `skopeo copy --all`)",
            BaseError::DigestMismatch { .. } => "the base image is corrupt or was tampered with: fetch it again from where it came from (its pinned digest covers every blob)",
            BaseError::NoPlatform { .. } => "build for a platform the base image has, or use a base image for this platform",
            BaseError::Registry(e) => return e.hint().or(Some("check the `base:` of the recipe".into())),
            BaseError::Layer { source, .. } => return source.hint().or(Some("check the `base:` of the recipe".into())),
            BaseError::Io { .. } => "`layout:` names an OCI image layout directory (with `index.json` and `blobs/`), relative to the recipe file, e.g. one written by `skopeo copy docker://... oci:DIR`",
            _ => "check the `base:` of the recipe",
        }.into())
    }
}

/// A layer of the base image as its manifest and config describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseLayer {
    pub digest: Sha256Digest,
    pub size: u64,
    pub media_type: String,
    pub diff_id: Sha256Digest,
}

/// The base image for one platform.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// `layout:<path>` or `registry/repository[:tag]`, as in the lock file.
    pub reference: String,
    /// The pinned digest (a manifest, or the index the manifest was chosen from).
    pub pinned: Sha256Digest,
    /// This platform's manifest.
    pub manifest_digest: Sha256Digest,
    pub config: ImageConfiguration,
    pub layers: Vec<BaseLayer>,
}

/// A manifest or index of the base image, in the oci-spec types (a Docker manifest or
/// manifest list has the same shape).
enum BaseDoc {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

impl BaseDoc {
    /// Its `mediaType`, else what its shape says it is.
    fn media_type(&self) -> String {
        let (declared, shape) = match self {
            BaseDoc::Index(i) => (i.media_type(), media_type::OCI_INDEX),
            BaseDoc::Manifest(m) => (m.media_type(), media_type::OCI_MANIFEST),
        };
        declared
            .as_ref()
            .map_or_else(|| shape.to_string(), MediaType::to_string)
    }
}

/// Fetches the manifest or index `digest`, checked against it, and reads it typed.
fn fetch_manifest(store: &dyn BaseStore, digest: &Sha256Digest) -> Result<BaseDoc, BaseError> {
    let bytes = store.manifest(digest)?;
    let actual = Sha256Digest::of(&bytes);
    if actual != *digest {
        return Err(BaseError::DigestMismatch {
            what: "manifest".into(),
            expected: *digest,
            actual,
        });
    }
    // Only an index lists `manifests`, only a manifest has `config` and `layers`: the
    // document parses as one of the two at most.
    if let Ok(index) = serde_json::from_slice(&bytes) {
        return Ok(BaseDoc::Index(index));
    }
    serde_json::from_slice(&bytes)
        .map(BaseDoc::Manifest)
        .map_err(|e| {
            BaseError::Invalid(format!(
                "manifest {digest} is not an OCI image manifest or index: {e}"
            ))
        })
}

fn descriptor_digest(d: &Descriptor, what: &str) -> Result<Sha256Digest, BaseError> {
    d.digest()
        .as_ref()
        .parse()
        .map_err(|_| BaseError::Invalid(format!("{what} has no sha256 `digest`")))
}

fn platform_of(d: &Descriptor) -> Option<Platform> {
    let p = d.platform().as_ref()?;
    Some(Platform {
        os: p.os().to_string(),
        architecture: p.architecture().to_string(),
        variant: p.variant().clone(),
    })
}

/// The manifest of `index` for `platform`: an exact match, or the one manifest for
/// the same os and architecture when the recipe names no variant (`linux/arm64`
/// matches `linux/arm64/v8`).
fn choose_platform(index: &ImageIndex, platform: &Platform) -> Result<Sha256Digest, BaseError> {
    let candidates: Vec<(&Descriptor, Platform)> = index
        .manifests()
        .iter()
        .filter(|d| media_type::is_manifest(d.media_type().as_ref()))
        .filter_map(|d| platform_of(d).map(|p| (d, p)))
        .collect();
    let exact: Vec<_> = candidates.iter().filter(|(_, p)| p == platform).collect();
    let loose: Vec<_> = candidates
        .iter()
        .filter(|(_, p)| {
            platform.variant.is_none()
                && p.os == platform.os
                && p.architecture == platform.architecture
        })
        .collect();
    let chosen = match (exact.as_slice(), loose.as_slice()) {
        ([one, ..], _) | ([], [one]) => one.0,
        _ => {
            let mut available: Vec<String> =
                candidates.iter().map(|(_, p)| p.to_string()).collect();
            available.sort();
            available.dedup();
            return Err(BaseError::NoPlatform {
                platform: platform.to_string(),
                available: if available.is_empty() {
                    "no platform manifests".into()
                } else {
                    available.join(", ")
                },
            });
        }
    };
    descriptor_digest(chosen, "an index entry")
}

/// Reads the base pinned at `pinned` for `platform`: the manifest (through the index
/// if `pinned` is one) and its config, each checked against its digest.
pub fn select(
    store: &dyn BaseStore,
    reference: &str,
    pinned: Sha256Digest,
    platform: &Platform,
) -> Result<BaseImage, BaseError> {
    let top = fetch_manifest(store, &pinned)?;
    let top_media_type = top.media_type();
    let (manifest_digest, manifest) = match top {
        BaseDoc::Index(index) if media_type::is_index(&top_media_type) => {
            let digest = choose_platform(&index, platform)?;
            (digest, fetch_manifest(store, &digest)?)
        }
        other => (pinned, other),
    };
    let media_type = manifest.media_type();
    let manifest = match manifest {
        BaseDoc::Manifest(m) if media_type::is_manifest(&media_type) => m,
        _ => {
            return Err(BaseError::Invalid(format!(
                "manifest {manifest_digest} has media type `{media_type}`, not an image manifest"
            )))
        }
    };
    let config_digest = descriptor_digest(manifest.config(), "the manifest's config")?;
    let mut config_bytes = Vec::new();
    let mut reader = HashingReader::new(store.blob(&config_digest)?);
    reader
        .read_to_end(&mut config_bytes)
        .map_err(|source| BaseError::Io {
            what: format!("config {config_digest}"),
            source,
        })?;
    let (actual, _) = reader.finish();
    if actual != config_digest {
        return Err(BaseError::DigestMismatch {
            what: "config".into(),
            expected: config_digest,
            actual,
        });
    }
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| BaseError::Invalid(format!("config {config_digest}: {e}")))?;
    let config_platform = Platform {
        os: config.os().to_string(),
        architecture: config.architecture().to_string(),
        variant: config.variant().clone(),
    };
    if config_platform.os != platform.os || config_platform.architecture != platform.architecture {
        return Err(BaseError::NoPlatform {
            platform: platform.to_string(),
            available: format!("only {config_platform} (manifest {manifest_digest})"),
        });
    }
    let diff_ids = config.rootfs().diff_ids();
    let layer_descs = manifest.layers();
    if diff_ids.len() != layer_descs.len() {
        return Err(BaseError::Invalid(format!(
            "manifest {manifest_digest} lists {} layers, its config {} diff_ids",
            layer_descs.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::with_capacity(layer_descs.len());
    for (d, diff_id) in layer_descs.iter().zip(diff_ids) {
        let media_type = d.media_type().to_string();
        if Compression::of_layer(&media_type).is_none() {
            return Err(BaseError::Invalid(format!(
                "layer \"{}\" has media type `{media_type}`, which cairn cannot read",
                d.digest()
            )));
        }
        layers.push(BaseLayer {
            digest: descriptor_digest(d, "a layer")?,
            size: d.size(),
            media_type,
            diff_id: diff_id.parse().map_err(|_| {
                BaseError::Invalid(format!("config diff_id `{diff_id}` is not a sha256 digest"))
            })?,
        });
    }
    Ok(BaseImage {
        reference: reference.to_string(),
        pinned,
        manifest_digest,
        config,
        layers,
    })
}

/// Passes everything read through to `copy` as well.
struct Tee<R, W> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Decompresses one layer from `raw` into `fs`; gives its diff_id.
fn read_layer(
    raw: &mut impl Read,
    media_type: &str,
    index: usize,
    fs: &mut BaseFs,
    budget: &mut Budget,
) -> Result<Sha256Digest, fs::BaseFsError> {
    let compression = Compression::of_layer(media_type).unwrap_or(Compression::None);
    let decoded = compression.decompressing(raw)?;
    let mut hashing = HashingReader::new(decoded);
    fs.apply_layer(index, &mut hashing, budget)?;
    io::copy(&mut hashing, &mut io::sink())?;
    Ok(hashing.finish().0)
}

/// Copies every layer of `base` into `layout` unchanged, checking each blob against
/// its digest and size and its content against its `diff_id`, and reads the base
/// file system from them, all layers together within `limits`. Stops between layers
/// once `cancel` is set. The config is not copied: the built image has its own.
pub fn copy_layers(
    store: &dyn BaseStore,
    base: &BaseImage,
    layout: &LayoutWriter,
    limits: Limits,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<BaseFs, BaseError> {
    read_layers(store, base, Some(layout), limits, Some(cancel))
}

/// Reads the base file system from `base`'s layers as [`copy_layers`] does, with the
/// same checks, without copying them anywhere: what the resolve stage reads the
/// base's installed packages from (the resolve stage as a whole is not cancellable).
pub fn read_fs(
    store: &dyn BaseStore,
    base: &BaseImage,
    limits: Limits,
) -> Result<BaseFs, BaseError> {
    read_layers(store, base, None, limits, None)
}

/// Where a layer's raw bytes go as they are read: into the output layout, or only
/// through a hash.
enum RawCopy<'a> {
    Layout(&'a LayoutWriter, crate::oci::layout::BlobWriter),
    Hash(crate::digest::HashingWriter<io::Sink>),
}

impl Write for RawCopy<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RawCopy::Layout(_, w) => w.write(buf),
            RawCopy::Hash(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            RawCopy::Layout(_, w) => w.flush(),
            RawCopy::Hash(w) => w.flush(),
        }
    }
}

fn read_layers(
    store: &dyn BaseStore,
    base: &BaseImage,
    layout: Option<&LayoutWriter>,
    limits: Limits,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<BaseFs, BaseError> {
    let mut base_fs = BaseFs::default();
    let mut budget = Budget::new(limits);
    for (index, layer) in base.layers.iter().enumerate() {
        if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
            return Err(Interrupted.into());
        }
        let what = || format!("layer {} ({})", layer.digest, fs::layer_name(index));
        let io_err = |source| BaseError::Io {
            what: what(),
            source,
        };
        let output = |source| BaseError::Output {
            what: what(),
            source,
        };
        let mut copy = match layout {
            Some(layout) => RawCopy::Layout(layout, layout.blob_writer().map_err(output)?),
            None => RawCopy::Hash(crate::digest::HashingWriter::new(io::sink())),
        };
        let read = {
            let mut raw = Tee {
                inner: store.blob(&layer.digest)?,
                copy: &mut copy,
            };
            let read = read_layer(
                &mut raw,
                &layer.media_type,
                index,
                &mut base_fs,
                &mut budget,
            );
            // Hash the rest of the raw blob whatever the decoder made of it: damaged
            // bytes are reported as a digest mismatch, not as the decoding error the
            // damage happened to cause.
            io::copy(&mut raw, &mut io::sink()).map_err(io_err)?;
            read
        };
        let (digest, size) = match copy {
            RawCopy::Layout(layout, writer) => {
                let stored = layout.commit_blob(writer).map_err(output)?;
                (stored.digest, stored.size)
            }
            RawCopy::Hash(hashing) => {
                let (digest, size, _) = hashing.finish();
                (digest, size)
            }
        };
        if digest != layer.digest || size != layer.size {
            return Err(BaseError::DigestMismatch {
                what: format!("layer {}", fs::layer_name(index)),
                expected: layer.digest,
                actual: digest,
            });
        }
        let diff_id = read.map_err(|source| BaseError::Layer {
            what: what(),
            source,
        })?;
        if diff_id != layer.diff_id {
            return Err(BaseError::DigestMismatch {
                what: format!("uncompressed layer {} (diff_id)", fs::layer_name(index)),
                expected: layer.diff_id,
                actual: diff_id,
            });
        }
    }
    Ok(base_fs)
}

/// The store a recipe's `base:` reads from. Layout paths are relative to
/// `recipe_dir`; a registry base needs `client` and keeps downloads in `scratch`.
pub fn open_store<'c>(
    recipe_dir: &std::path::Path,
    source: &crate::recipe::BaseSource,
    client: Option<&'c crate::registry::Client>,
    scratch: &std::path::Path,
) -> Result<Box<dyn BaseStore + 'c>, BaseError> {
    match (source, client) {
        (crate::recipe::BaseSource::Layout { path }, _) => {
            Ok(Box::new(LayoutStore::new(recipe_dir.join(path))))
        }
        (crate::recipe::BaseSource::Registry(image), Some(client)) => Ok(Box::new(
            RegistryStore::new(client, image, scratch.to_path_buf()),
        )),
        (crate::recipe::BaseSource::Registry(image), None) => Err(BaseError::NoRegistryClient {
            image: image.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests;
