//! `cairn build`: runs the stages in order and publishes the layout.
//!
//! Takes a validated [`Recipe`] and [`BuildOptions`] (how to build: output directory,
//! lock mode, threads, the fallback epoch, a cancel flag); gives a [`BuildReport`]
//! describing exactly what was written.

use crate::attest::{self, contents, dsse, intoto, keys, keys::SigningKey, sbom};
use crate::debian::{self, DebianError};
use crate::digest::Sha256Digest;
use crate::image::{self, canonical_json, Artifact, ImageError};
use crate::layers::{self, LayerBlob, LayerError, TreeEntryKind, TreeError};
use crate::output::{LayoutWriter, OutputError};
use crate::recipe::{ImagePath, Recipe};
use crate::resolve::{self, lock::LockError, LockMode, Lockfile, ResolveError};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    /// Signs the provenance and SBOM statements when given.
    pub sign_key: Option<SigningKey>,
    /// Wall clock (seconds since the epoch) for `startedOn`/`finishedOn` in the
    /// provenance; `None` keeps the provenance free of times (the default).
    pub clock: Option<fn() -> u64>,
    /// Cache, clock and host mirrors for Debian packages (`packages:` recipes).
    pub packages: debian::PackageOptions,
}

/// Told about progress; the CLI draws bars and measures stage times with it.
pub trait Observer: debian::DownloadProgress {
    /// A new stage of the build begins (`resolve`, `layers`, `sbom`, `sign`,
    /// `publish`); the previous one has ended.
    fn stage(&self, _name: &'static str) {}
    fn layer_started(&self, _name: &str, _content_bytes: u64) {}
    fn bytes_written(&self, _n: u64) {}
    fn layer_finished(&self, _layer: &LayerBlob) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}
impl debian::DownloadProgress for Quiet {}

#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub name: String,
    pub layout: PathBuf,
    pub manifest_digest: Sha256Digest,
    pub manifest_size: u64,
    pub config_digest: Sha256Digest,
    pub platform: String,
    pub epoch: u64,
    pub layers: Vec<LayerBlob>,
    /// The lock file, if this build wrote it (new pins).
    pub lock_written: Option<PathBuf>,
    /// SBOMs written beside the layout (and attached to the image as referrers).
    pub spdx: PathBuf,
    pub cyclonedx: PathBuf,
    /// Whether the SBOMs are also embedded in the image (`sbom:` in the recipe).
    pub sbom_embedded: bool,
    /// Signed DSSE envelopes, one per line, when the build was signed.
    pub attestations: Option<PathBuf>,
    /// Key id of the signing key.
    pub signed_by: Option<String>,
    /// Manifests attached to the image (SBOMs, attestations) in the layout.
    pub referrers: Vec<ReferrerReport>,
    /// Every source (Debian packages as `deb:<name>`, by .deb digest) and the digest
    /// it was built from.
    pub sources: std::collections::BTreeMap<String, Sha256Digest>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReferrerReport {
    pub artifact_type: String,
    pub manifest_digest: Sha256Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Packages(#[from] DebianError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Layer(LayerError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Sbom(#[from] sbom::SbomError),
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

/// Where the embedded SBOMs live in the image.
pub const SBOM_DIR: &str = "/usr/share/sbom";
pub const SBOM_LAYER: &str = "sbom";
const CAIRN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The side files a build may write beside the layout.
fn side_file_names(name: &str) -> [String; 3] {
    [
        format!("{name}.spdx.json"),
        format!("{name}.cdx.json"),
        format!("{name}.intoto.jsonl"),
    ]
}

pub fn build(
    recipe: &Recipe,
    opts: &BuildOptions,
    observer: &dyn Observer,
) -> Result<BuildReport, BuildError> {
    let started_on = opts.clock.map(|now| now());
    let epoch = effective_epoch(recipe, opts.source_date_epoch);
    let platform = platform_string(recipe);
    let lock_path = resolve::lock_path_for(&recipe.file.path);
    let lock = Lockfile::read(&lock_path)?;
    observer.stage("resolve");
    let layout = LayoutWriter::begin(&opts.out_dir, &recipe.name)?;
    let staging = layout.scratch_dir()?;
    let mut resolved = resolve::resolve(recipe, &lock, &lock_path, opts.lock_mode, &staging)?;
    let (mode, pkgs) = (opts.lock_mode, &opts.packages);
    debian::hook_install(recipe, &lock, mode, pkgs, &staging, observer, &mut resolved)?;
    let below = debian::hook_layers(recipe, &resolved)?;
    let trees = layers::assemble_on(recipe, &resolved, below)?;
    observer.stage("layers");

    let write = |tree: &layers::LayerTree| -> Result<LayerBlob, BuildError> {
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
        Ok(blob)
    };
    let mut blobs = trees.iter().map(write).collect::<Result<Vec<_>, _>>()?;

    observer.stage("sbom");
    // SBOMs describe the layers as written (their SHA-1s were computed in the same
    // pass); the SBOM layer itself is not in them.
    let contents = contents::image_contents(recipe, &resolved, &trees);
    let mut sha1 = sbom::Sha1Index::new();
    for blob in &mut blobs {
        sha1.append(&mut blob.sha1);
    }
    let recipe_file_name = recipe.file.path.file_name().map_or_else(
        || "recipe".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let sbom_input = sbom::SbomInput {
        image_name: &recipe.name,
        epoch,
        platform: &platform,
        recipe_file_name: &recipe_file_name,
        contents: &contents,
        cairn_version: CAIRN_VERSION,
        sha1: &sha1,
    };
    // Shared, not copied, by the SBOM layer, the referrers and the side files: an
    // SBOM lists every file of the image and can be tens of megabytes.
    let spdx: Arc<[u8]> = sbom::spdx_json(&sbom_input)?.into();
    let cyclonedx: Arc<[u8]> = sbom::cyclonedx_json(&sbom_input).into();
    if recipe.sbom {
        let at = |ext: &str| {
            ImagePath::parse(&format!("{SBOM_DIR}/{}.{ext}", recipe.name))
                .expect("image names are path-safe")
        };
        let files = vec![
            (at("spdx.json"), spdx.clone()),
            (at("cdx.json"), cyclonedx.clone()),
        ];
        let layer = layers::generated_layer(recipe, &trees, SBOM_LAYER, files)?;
        blobs.push(write(&layer)?);
    }

    let config = image::image_config(recipe, &blobs, epoch)?;
    let config_blob = layout.put_blob(&canonical_json(&config))?;
    let manifest = image::manifest(recipe, &config_blob, &blobs)?;
    let manifest_blob = layout.put_blob(&canonical_json(&manifest))?;

    let mut artifacts = vec![
        Artifact {
            artifact_type: sbom::SPDX_MEDIA_TYPE.into(),
            blob: layout.put_blob(&spdx)?,
            annotations: Default::default(),
        },
        Artifact {
            artifact_type: sbom::CYCLONEDX_MEDIA_TYPE.into(),
            blob: layout.put_blob(&cyclonedx)?,
            annotations: Default::default(),
        },
    ];
    let mut side_files: Vec<(String, Arc<[u8]>)> = vec![
        (format!("{}.spdx.json", recipe.name), spdx.clone()),
        (format!("{}.cdx.json", recipe.name), cyclonedx.clone()),
    ];
    let signed_by = match &opts.sign_key {
        Some(key) => {
            observer.stage("sign");
            let facts = intoto::ProvenanceFacts {
                image_name: &recipe.name,
                manifest_digest: manifest_blob.digest,
                recipe_file_name: &recipe_file_name,
                recipe_sha256: Sha256Digest::of(recipe.file.text.as_bytes()),
                lock_sha256: (!recipe.sources.is_empty() || recipe.packages.is_some())
                    .then(|| Sha256Digest::of(&resolved.lock.to_bytes())),
                epoch,
                platform: &platform,
                sources: &contents.sources,
                cairn_version: CAIRN_VERSION,
                times: started_on
                    .zip(opts.clock.map(|now| now()))
                    .map(|(s, f)| (image::rfc3339(s), image::rfc3339(f))),
            };
            let statements = [
                (
                    intoto::SLSA_PROVENANCE_V1,
                    intoto::provenance_statement(&facts).to_json(),
                ),
                (
                    intoto::SPDX_PREDICATE,
                    intoto::sbom_statement_json(&recipe.name, manifest_blob.digest, &spdx),
                ),
            ];
            let mut jsonl = Vec::new();
            for (predicate_type, payload) in statements {
                let start = jsonl.len();
                let envelope = dsse::Envelope::sign(dsse::INTOTO_PAYLOAD_TYPE, payload, key);
                envelope.write_json(&mut jsonl);
                drop(envelope);
                let blob = layout.put_blob(&jsonl[start..])?;
                jsonl.push(b'\n');
                artifacts.push(Artifact {
                    artifact_type: attest::DSSE_MEDIA_TYPE.into(),
                    blob,
                    annotations: [(
                        attest::PREDICATE_TYPE_ANNOTATION.to_string(),
                        predicate_type.to_string(),
                    )]
                    .into(),
                });
            }
            side_files.push((format!("{}.intoto.jsonl", recipe.name), jsonl.into()));
            Some(keys::key_id(&key.verifying_key()))
        }
        None => None,
    };

    observer.stage("publish");
    let empty_config = layout.put_blob(image::EMPTY_JSON)?;
    let mut referrers = Vec::with_capacity(artifacts.len());
    for artifact in &artifacts {
        let manifest = image::artifact_manifest(artifact, &manifest_blob, &empty_config)?;
        referrers.push((
            artifact.artifact_type.clone(),
            layout.put_blob(&canonical_json(&manifest))?,
        ));
    }
    let index = image::index(recipe, &manifest_blob, &referrers)?;
    if opts.cancel.load(Ordering::Relaxed) {
        return Err(BuildError::Interrupted);
    }
    let layout_path = layout.publish(&index, &side_files, &side_file_names(&recipe.name))?;

    let lock_written = if resolved.lock_changed && opts.lock_mode == LockMode::PinMissing {
        resolved.lock.write(&lock_path)?;
        Some(lock_path)
    } else {
        None
    };
    let beside = |ext: &str| opts.out_dir.join(format!("{}.{ext}", recipe.name));
    Ok(BuildReport {
        name: recipe.name.clone(),
        layout: layout_path,
        manifest_digest: manifest_blob.digest,
        manifest_size: manifest_blob.size,
        config_digest: config_blob.digest,
        platform,
        epoch,
        layers: blobs,
        lock_written,
        spdx: beside("spdx.json"),
        cyclonedx: beside("cdx.json"),
        sbom_embedded: recipe.sbom,
        attestations: signed_by.as_ref().map(|_| beside("intoto.jsonl")),
        signed_by,
        referrers: referrers
            .into_iter()
            .map(|(artifact_type, blob)| ReferrerReport {
                artifact_type,
                manifest_digest: blob.digest,
            })
            .collect(),
        sources: contents
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.sha256))
            .collect(),
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

/// `cairn lock`: pins every source not pinned in the recipe itself, and resolves the
/// recipe's packages afresh.
pub fn lock(recipe: &Recipe, packages: &debian::PackageOptions) -> Result<LockReport, BuildError> {
    let lock_path = resolve::lock_path_for(&recipe.file.path);
    let lock = Lockfile::read(&lock_path)?;
    let staging = tempfile::tempdir().map_err(|source| OutputError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let mut resolved =
        resolve::resolve(recipe, &lock, &lock_path, LockMode::Repin, staging.path())?;
    let mode = LockMode::Repin;
    debian::hook_install(
        recipe,
        &lock,
        mode,
        packages,
        staging.path(),
        &Quiet,
        &mut resolved,
    )?;
    if resolved.lock_changed {
        resolved.lock.write(&lock_path)?;
    }
    Ok(LockReport {
        lock_file: lock_path,
        changed: resolved.lock_changed,
        sources: resolved.lock,
    })
}
