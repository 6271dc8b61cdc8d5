//! `cairn build`: runs the stages in order and publishes the layout.
//!
//! Takes a validated [`Recipe`] and [`BuildOptions`] (how to build: output directory,
//! lock mode, threads, the fallback epoch, a cancel flag); gives a [`BuildReport`]
//! describing exactly what was written.

use crate::digest::Sha256Digest;
use crate::image::{self, canonical_json, ImageError};
use crate::layers::{self, LayerBlob, LayerError, TreeEntryKind, TreeError};
use crate::output::{LayoutWriter, OutputError};
use crate::recipe::Recipe;
use crate::resolve::{self, lock::LockError, LockMode, Lockfile, ResolveError};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct BuildOptions {
    /// The layout goes to `out_dir/<name>/`.
    pub out_dir: PathBuf,
    pub lock_mode: LockMode,
    /// Compression threads; output bytes do not depend on it.
    pub jobs: usize,
    /// SOURCE_DATE_EPOCH as read by the caller; used when the recipe sets no epoch.
    pub source_date_epoch: Option<u64>,
    /// Set (e.g. by a Ctrl-C handler) to stop the build; nothing is published.
    pub cancel: std::sync::Arc<AtomicBool>,
}

/// Told about progress; the CLI draws bars with it.
pub trait Observer {
    fn layer_started(&self, _name: &str, _content_bytes: u64) {}
    fn bytes_written(&self, _n: u64) {}
    fn layer_finished(&self, _layer: &LayerBlob) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub name: String,
    pub layout: PathBuf,
    pub manifest_digest: Sha256Digest,
    pub manifest_size: u64,
    pub config_digest: Sha256Digest,
    pub platform: String,
    pub epoch: u64,
    pub layers: Vec<LayerReport>,
    /// The lock file, if this build wrote it (new pins).
    pub lock_written: Option<PathBuf>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    pub name: String,
    pub digest: Sha256Digest,
    pub size: u64,
    pub diff_id: Sha256Digest,
    pub uncompressed_size: u64,
    pub entries: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Layer(LayerError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("interrupted; the previous output, if any, is unchanged")]
    Interrupted,
}

impl From<LayerError> for BuildError {
    fn from(e: LayerError) -> Self {
        match e {
            LayerError::Tar {
                source: layers::tar::TarError::Interrupted,
                ..
            } => BuildError::Interrupted,
            e => BuildError::Layer(e),
        }
    }
}

/// The epoch every timestamp in the image is set to.
pub fn effective_epoch(recipe: &Recipe, source_date_epoch: Option<u64>) -> u64 {
    recipe.epoch.or(source_date_epoch).unwrap_or(0)
}

pub fn platform_string(recipe: &Recipe) -> String {
    let p = &recipe.platform;
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

pub fn build(
    recipe: &Recipe,
    opts: &BuildOptions,
    observer: &dyn Observer,
) -> Result<BuildReport, BuildError> {
    let epoch = effective_epoch(recipe, opts.source_date_epoch);
    let lock_path = resolve::lock_path_for(&recipe.file.path);
    let lock = Lockfile::read(&lock_path)?;
    let layout = LayoutWriter::begin(&opts.out_dir, &recipe.name)?;
    let staging = layout.scratch_dir()?;
    let resolved = resolve::resolve(recipe, &lock, &lock_path, opts.lock_mode, &staging)?;
    let trees = layers::assemble(recipe, &resolved)?;

    let mut blobs = Vec::with_capacity(trees.len());
    for tree in &trees {
        if opts.cancel.load(Ordering::Relaxed) {
            return Err(BuildError::Interrupted);
        }
        let content_bytes = tree
            .entries
            .values()
            .map(|e| match &e.kind {
                TreeEntryKind::File(layers::FileData::Source(c)) => c.size,
                TreeEntryKind::File(layers::FileData::Inline(b)) => b.len() as u64,
                _ => 0,
            })
            .sum();
        observer.layer_started(&tree.name, content_bytes);
        let blob =
            layers::write_layer(tree, epoch, opts.jobs.max(1), &layout, &opts.cancel, &|n| {
                observer.bytes_written(n)
            })?;
        observer.layer_finished(&blob);
        blobs.push(blob);
    }

    let config = image::image_config(recipe, &blobs, epoch)?;
    let config_blob = layout.put_blob(&canonical_json(&config))?;
    let manifest = image::manifest(recipe, &config_blob, &blobs)?;
    let manifest_blob = layout.put_blob(&canonical_json(&manifest))?;
    let index = image::index(recipe, &manifest_blob)?;
    if opts.cancel.load(Ordering::Relaxed) {
        return Err(BuildError::Interrupted);
    }
    let layout_path = layout.publish(&index)?;

    let lock_written = if resolved.lock_changed && opts.lock_mode == LockMode::PinMissing {
        resolved.lock.write(&lock_path)?;
        Some(lock_path)
    } else {
        None
    };
    Ok(BuildReport {
        name: recipe.name.clone(),
        layout: layout_path,
        manifest_digest: manifest_blob.digest,
        manifest_size: manifest_blob.size,
        config_digest: config_blob.digest,
        platform: platform_string(recipe),
        epoch,
        layers: blobs
            .into_iter()
            .map(|b| LayerReport {
                name: b.name,
                digest: b.digest,
                size: b.size,
                diff_id: b.diff_id,
                uncompressed_size: b.uncompressed_size,
                entries: b.entries,
            })
            .collect(),
        lock_written,
        warnings: resolved.warnings,
    })
}

/// What `cairn lock` did.
#[derive(Debug, Serialize)]
pub struct LockReport {
    pub lock_file: PathBuf,
    pub changed: bool,
    pub sources: Lockfile,
}

/// `cairn lock`: pins every source not pinned in the recipe itself.
pub fn lock(recipe: &Recipe) -> Result<LockReport, BuildError> {
    let lock_path = resolve::lock_path_for(&recipe.file.path);
    let lock = Lockfile::read(&lock_path)?;
    let staging = tempfile::tempdir().map_err(|source| OutputError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let resolved = resolve::resolve(recipe, &lock, &lock_path, LockMode::Repin, staging.path())?;
    if resolved.lock_changed {
        resolved.lock.write(&lock_path)?;
    }
    Ok(LockReport {
        lock_file: lock_path,
        changed: resolved.lock_changed,
        sources: resolved.lock,
    })
}
