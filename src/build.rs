//! `cairn build`: runs the stages in order and publishes the layout.
//!
//! Takes a validated [`Recipe`] and [`BuildOptions`] (how to build: output directory,
//! format, lock mode, threads, the fallback epoch, a cancel flag); gives a
//! [`BuildReport`] describing exactly what was written.
//!
//! Structure: [`build`] pins every input once (`resolve_inputs`: each platform's
//! sources, the base image, the lock file), builds one image per platform
//! (`build_platform_image`: base layers, recipe layers, SBOMs, config, manifest,
//! signed statements, referrers), then writes the index and publishes the layout or
//! archive.

use crate::attest::contents::BaseInfo;
use crate::attest::{contents, dsse, intoto, sbom};
use crate::base::{self, BaseImage, BaseLayer, BaseStore};
use crate::debian::{self, DebianError};
use crate::diag::{self, Diagnose, Interrupted};
use crate::digest::Sha256Digest;
use crate::disk;
use crate::image::{self, Artifact, ImageError};
use crate::keys::{self, SigningKey};
use crate::layers::{self, cache::LayerCache, LayerBlob, LayerError, TreeEntryKind, TreeError};
use crate::oci::json::canonical_json;
use crate::oci::layout::{LayoutError, LayoutWriter, SideFile, StoredBlob};
use crate::oci::time::rfc3339;
use crate::output::archive::{self, DockerImage, OutputFormat};
use crate::output::OutputError;
use crate::recipe::{Diagnostic, ImagePath, Platform, Recipe};
use crate::resolve::{self, lock::LockError, platforms, LockMode, Lockfile, ResolveError};
use crate::snapshot::{Content, Location};
use crate::warm;
use serde::Serialize;
use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub struct BuildOptions {
    /// The layout goes to `out_dir/<name>/` (an archive to `out_dir/<name>.tar`).
    pub out_dir: PathBuf,
    pub format: OutputFormat,
    pub lock_mode: LockMode,
    /// Compression threads; output bytes do not depend on it.
    pub jobs: usize,
    /// SOURCE_DATE_EPOCH as read by the caller; used when the recipe sets no epoch.
    pub source_date_epoch: Option<u64>,
    /// Set (e.g. by a Ctrl-C handler) to stop the build; nothing is published.
    pub cancel: std::sync::Arc<AtomicBool>,
    /// Signs the provenance and SBOM statements when given.
    pub sign_key: Option<SigningKey>,
    /// Fetches a `ref:` base image; needed only by recipes that have one.
    pub registry: Option<crate::registry::Client>,
    /// Wall clock (seconds since the epoch) for `startedOn`/`finishedOn` in the
    /// provenance; `None` keeps the provenance free of times (the default).
    pub clock: Option<fn() -> u64>,
    /// Cache, clock and host mirrors for Debian packages (`packages:` recipes).
    pub packages: debian::PackageOptions,
    /// Reuse and store layer blobs here; `None` writes every layer anew.
    pub cache: Option<LayerCache>,
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
    /// The layout directory, or the archive file for an archive format.
    pub layout: PathBuf,
    pub format: OutputFormat,
    pub manifest_digest: Sha256Digest,
    pub manifest_size: u64,
    pub config_digest: Sha256Digest,
    pub platform: String,
    pub epoch: u64,
    /// The layers cairn wrote (after the base image's, if any).
    pub layers: Vec<LayerBlob>,
    /// The base image, if the recipe has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseInfo>,
    /// The base image's layers, reused unchanged below `layers`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub base_layers: Vec<BaseLayer>,
    /// For a multi-platform build, each platform's image (`manifest_digest` is then
    /// the image index over them; the fields above describe the first platform).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<PlatformReport>,
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
    /// The VM disk, when the recipe has `vm:`.
    pub disk: Option<disk::DiskReport>,
    /// Whether every image's layers and SBOMs were replayed whole from the cache (an
    /// unchanged rebuild; see [`crate::warm`]).
    pub image_cached: bool,
}

/// One platform's image of a multi-platform build.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformReport {
    pub platform: String,
    pub manifest_digest: Sha256Digest,
    pub config_digest: Sha256Digest,
    pub spdx: PathBuf,
    pub cyclonedx: PathBuf,
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
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    #[error("{0}")]
    Base(Box<Diagnostic>),
    #[error("{0}")]
    Unsupported(String),
    #[error("interrupted; the previous output, if any, is unchanged")]
    Interrupted(#[from] Interrupted),
}

impl Diagnose for BuildError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            BuildError::Lock(e) => e.hint(),
            BuildError::Resolve(e) => e.hint(),
            BuildError::Packages(e) => e.hint(),
            BuildError::Tree(e) => e.hint(),
            BuildError::Layer(e) => e.hint(),
            BuildError::Disk(e) => e.hint(),
            BuildError::Base(diagnostic) => diagnostic.hint(),
            BuildError::Image(_)
            | BuildError::Sbom(_)
            | BuildError::Output(_)
            | BuildError::Layout(_)
            | BuildError::Unsupported(_)
            | BuildError::Interrupted(_) => None,
        }
    }

    fn location(&self) -> Option<diag::Location<'_>> {
        match self {
            BuildError::Resolve(e) => e.location(),
            BuildError::Packages(e) => e.location(),
            BuildError::Tree(e) => e.location(),
            BuildError::Disk(e) => e.location(),
            BuildError::Base(diagnostic) => diagnostic.location(),
            BuildError::Lock(_)
            | BuildError::Layer(_)
            | BuildError::Image(_)
            | BuildError::Sbom(_)
            | BuildError::Output(_)
            | BuildError::Layout(_)
            | BuildError::Unsupported(_)
            | BuildError::Interrupted(_) => None,
        }
    }
}

impl From<LayerError> for BuildError {
    fn from(e: LayerError) -> Self {
        match e {
            LayerError::Tar {
                source: layers::tar::TarError::Interrupted(interrupted),
                ..
            } => BuildError::Interrupted(interrupted),
            e => BuildError::Layer(e),
        }
    }
}

/// The epoch every timestamp in the image is set to.
pub fn effective_epoch(recipe: &Recipe, source_date_epoch: Option<u64>) -> u64 {
    recipe.epoch.or(source_date_epoch).unwrap_or(0)
}

/// Where the embedded SBOMs live in the image.
pub const SBOM_DIR: &str = "/usr/share/sbom";
pub const SBOM_LAYER: &str = "sbom";
/// The tag a `docker-archive` gives the image (`<name>:latest`): a recipe names an
/// image, not a tag.
pub const DOCKER_ARCHIVE_TAG: &str = "latest";
const CAIRN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The start of the names of a platform's SBOM side files: `<name>`, or
/// `<name>.<os>-<arch>[-<variant>]` when the recipe builds several platforms.
fn side_file_prefix(recipe: &Recipe, platform: &Platform) -> String {
    if recipe.multi_platform {
        format!("{}.{}", recipe.name, platform.to_string().replace('/', "-"))
    } else {
        recipe.name.clone()
    }
}

/// The side files a build of `recipe` may write beside the layout.
fn side_file_names(recipe: &Recipe) -> Vec<String> {
    let mut names = vec![format!("{}.intoto.jsonl", recipe.name)];
    let mut prefixes = vec![recipe.name.clone()];
    prefixes.extend(recipe.platforms.iter().map(|p| side_file_prefix(recipe, p)));
    for prefix in prefixes {
        names.push(format!("{prefix}.spdx.json"));
        names.push(format!("{prefix}.cdx.json"));
    }
    names.dedup();
    names
}

pub fn build(
    recipe: &Recipe,
    opts: &BuildOptions,
    observer: &dyn Observer,
) -> Result<BuildReport, BuildError> {
    if recipe.multi_platform && opts.format == OutputFormat::DockerArchive {
        return Err(BuildError::Unsupported(format!(
            "a docker-archive holds one image, but recipe `{}` builds {} platforms; use --format oci or oci-archive (an image index), or build with `platform:`",
            recipe.name,
            recipe.platforms.len()
        )));
    }
    let started_on = opts.clock.map(|now| now());
    let epoch = effective_epoch(recipe, opts.source_date_epoch);
    let lock_path = resolve::lock_path_for(&recipe.file.path);
    let old_lock = Lockfile::read(&lock_path)?;
    observer.stage("resolve");
    let layout = LayoutWriter::begin(&opts.out_dir, &recipe.name)?;
    let staging = layout.scratch_dir()?;
    let inputs = resolve_inputs(
        recipe,
        &old_lock,
        &InputContext {
            lock_path: &lock_path,
            mode: opts.lock_mode,
            staging: &staging,
            registry: opts.registry.as_ref(),
            cache_dir: opts.cache.as_ref().map(LayerCache::dir),
            packages: &opts.packages,
            progress: observer,
        },
    )?;

    let mut images = Vec::with_capacity(inputs.sources.platforms.len());
    for sources in &inputs.sources.platforms {
        let job = PlatformJob {
            recipe: &sources.recipe,
            platform: &sources.platform,
            resolved: &sources.resolved,
            base: inputs.base.as_ref(),
            lock_sha256: (!recipe.sources.is_empty()
                || recipe.base.is_some()
                || recipe.packages.is_some())
            .then(|| Sha256Digest::of(&inputs.lock.to_bytes())),
            epoch,
            started_on,
            side_file_prefix: side_file_prefix(recipe, &sources.platform),
            disk: inputs.disk.as_ref(),
        };
        images.push(build_platform_image(&job, opts, &layout, observer)?);
    }

    observer.stage("publish");
    let referrers: Vec<(String, StoredBlob)> = images
        .iter()
        .flat_map(|i| i.referrers.iter().cloned())
        .collect();
    let (top, index) = if recipe.multi_platform {
        let manifests: Vec<(Platform, StoredBlob)> = images
            .iter()
            .map(|i| (i.platform.clone(), i.manifest))
            .collect();
        let platform_index = layout.put_blob(&image::platform_index(recipe, &manifests)?)?;
        (
            platform_index,
            image::index_of_index(recipe, &platform_index, &referrers)?,
        )
    } else {
        let only = &images[0];
        (
            only.manifest,
            image::index(recipe, &only.manifest, &only.referrers)?,
        )
    };
    let mut side_files: Vec<SideFile> = Vec::new();
    let mut envelopes: Vec<Sha256Digest> = Vec::new();
    for i in &images {
        for (ext, blob) in [("spdx.json", i.spdx), ("cdx.json", i.cyclonedx)] {
            side_files.push(SideFile {
                name: format!("{}.{ext}", i.side_file_prefix),
                blobs: vec![blob],
                line_per_blob: false,
            });
        }
        envelopes.extend_from_slice(&i.envelopes);
    }
    let image_cached = images.iter().all(|i| i.image_cached);
    let signed_by = opts
        .sign_key
        .as_ref()
        .map(|key| keys::key_id(&key.verifying_key()));
    if signed_by.is_some() {
        side_files.push(SideFile {
            name: format!("{}.intoto.jsonl", recipe.name),
            blobs: envelopes,
            line_per_blob: true,
        });
    }
    if opts.cancel.load(Ordering::Relaxed) {
        return Err(Interrupted.into());
    }
    let stale = side_file_names(recipe);
    let layout_path = match opts.format {
        OutputFormat::Oci => layout.publish(&index, &side_files, &stale)?,
        OutputFormat::OciArchive => layout.publish_archive(
            &index,
            |dir, out| archive::write_oci_archive(dir, epoch, out).map_err(OutputError::from),
            &side_files,
            &stale,
        )?,
        OutputFormat::DockerArchive => {
            let only = &images[0];
            let image = DockerImage {
                repo: &recipe.name,
                tag: DOCKER_ARCHIVE_TAG,
                config: only.config.digest,
                layers: image::layer_list(only.base.as_ref(), &only.layers)
                    .into_iter()
                    .map(|(blob, media_type, diff_id)| (blob.digest, media_type, diff_id))
                    .collect(),
            };
            layout.publish_archive(
                &index,
                |dir, out| {
                    archive::write_docker_archive(dir, &image, epoch, out)
                        .map_err(OutputError::from)
                },
                &side_files,
                &stale,
            )?
        }
    };

    let disk = match images.first_mut().and_then(|i| i.disk.take()) {
        Some(d) => Some(d.publish(&recipe.name)?),
        None => {
            disk::remove_stale(&opts.out_dir, &recipe.name, &[])?;
            None
        }
    };

    let lock_written = if inputs.lock != old_lock && opts.lock_mode == LockMode::PinMissing {
        inputs.lock.write(&lock_path)?;
        Some(lock_path)
    } else {
        None
    };
    let beside = |name: &str| opts.out_dir.join(name);
    let platform_reports: Vec<PlatformReport> = images
        .iter()
        .map(|i| PlatformReport {
            platform: i.platform.to_string(),
            manifest_digest: i.manifest.digest,
            config_digest: i.config.digest,
            spdx: beside(&format!("{}.spdx.json", i.side_file_prefix)),
            cyclonedx: beside(&format!("{}.cdx.json", i.side_file_prefix)),
        })
        .collect();
    // Debian packages count as sources, named `deb:<package>`, by .deb digest.
    let package_digests: Vec<(String, Sha256Digest)> = inputs
        .sources
        .platforms
        .first()
        .and_then(|p| p.resolved.packages.as_ref())
        .map(|installed| {
            installed
                .packages
                .iter()
                .map(|p| (debian::source_name(&p.name), p.pin.sha256))
                .collect()
        })
        .unwrap_or_default();
    let first = images.swap_remove(0);
    Ok(BuildReport {
        name: recipe.name.clone(),
        layout: layout_path,
        format: opts.format,
        manifest_digest: top.digest,
        manifest_size: top.size,
        config_digest: first.config.digest,
        platform: first.platform.to_string(),
        epoch,
        layers: first.layers,
        base: first.base_info,
        base_layers: first.base.map(|b| b.layers).unwrap_or_default(),
        images: if recipe.multi_platform {
            platform_reports
        } else {
            Vec::new()
        },
        lock_written,
        spdx: beside(&format!("{}.spdx.json", first.side_file_prefix)),
        cyclonedx: beside(&format!("{}.cdx.json", first.side_file_prefix)),
        sbom_embedded: recipe.sbom,
        attestations: signed_by
            .as_ref()
            .map(|_| beside(&format!("{}.intoto.jsonl", recipe.name))),
        signed_by,
        referrers: referrers
            .into_iter()
            .map(|(artifact_type, blob)| ReferrerReport {
                artifact_type,
                manifest_digest: blob.digest,
            })
            .collect(),
        sources: platforms::source_digests(recipe, &inputs.sources.platforms)
            .into_iter()
            .chain(package_digests)
            .collect(),
        warnings: inputs
            .warnings
            .into_iter()
            .chain(opts.cache.iter().flat_map(LayerCache::take_warnings))
            .collect(),
        disk,
        image_cached,
    })
}

/// Every input pinned: each platform's sources, the base, and the lock file that
/// records them.
struct Inputs<'c> {
    sources: platforms::AllSources,
    base: Option<PinnedBase<'c>>,
    /// The VM disk to build (`vm:`), its kernel and tools found and pinned.
    disk: Option<disk::DiskPlan>,
    lock: Lockfile,
    warnings: Vec<String>,
}

/// The base image, pinned, and the store it is read from.
struct PinnedBase<'c> {
    store: Box<dyn BaseStore + 'c>,
    reference: String,
    digest: Sha256Digest,
    span: crate::recipe::Span,
}

/// How [`resolve_inputs`] pins and fetches.
struct InputContext<'a, 'c> {
    lock_path: &'a std::path::Path,
    mode: LockMode,
    staging: &'a std::path::Path,
    registry: Option<&'c crate::registry::Client>,
    cache_dir: Option<&'a std::path::Path>,
    packages: &'a debian::PackageOptions,
    progress: &'a dyn debian::DownloadProgress,
}

fn resolve_inputs<'c>(
    recipe: &Recipe,
    lock: &Lockfile,
    cx: &InputContext<'_, 'c>,
) -> Result<Inputs<'c>, BuildError> {
    let InputContext {
        lock_path,
        mode,
        staging,
        registry,
        cache_dir,
        ..
    } = *cx;
    let mut sources = platforms::resolve_all(recipe, lock, lock_path, mode, staging, cache_dir)?;
    let mut new_lock = sources.lock.clone();
    let mut warnings = sources.warnings.clone();
    // The recipe parser allows `packages:` only for a single-platform image.
    if let [only] = sources.platforms.as_mut_slice() {
        let before = only.resolved.warnings.len();
        resolve::packages::hook_install(
            &only.recipe,
            lock,
            mode,
            cx.packages,
            staging,
            cx.progress,
            &mut only.resolved,
        )?;
        new_lock.packages = only.resolved.lock.packages.clone();
        warnings.extend(only.resolved.warnings.drain(before..));
    }
    // The recipe parser allows `vm:` only for a single-platform image without a base.
    let disk = match (&recipe.vm, sources.platforms.as_mut_slice()) {
        (Some(vm), [only]) => {
            let before = only.resolved.warnings.len();
            let plan = disk::plan(&only.recipe, vm, &mut only.resolved, lock, lock_path, mode)?;
            new_lock.tools = only.resolved.lock.tools.clone();
            warnings.extend(only.resolved.warnings.drain(before..));
            Some(plan)
        }
        _ => None,
    };
    let base = match &recipe.base {
        Some(spec) => {
            let error = |cause: &dyn Diagnose| {
                BuildError::Base(Box::new(
                    Diagnostic::new(&recipe.file, spec.span, cause.to_string()).with_hint_of(cause),
                ))
            };
            let store = base::open_store(&recipe.file.dir, &spec.source, registry, staging)
                .map_err(|e| error(&e))?;
            let (digest, entry, warning) =
                resolve::base::pin(spec, store.as_ref(), lock, mode).map_err(|e| error(&e))?;
            new_lock.base = Some(entry);
            warnings.extend(warning);
            Some(PinnedBase {
                store,
                reference: spec.source.reference(),
                digest,
                span: spec.span,
            })
        }
        None => {
            if mode == LockMode::Locked {
                if let Some(locked) = &lock.base {
                    return Err(BuildError::Resolve(ResolveError::Lock {
                        message: format!(
                            "{} pins base image {}, but the recipe has no `base:`",
                            lock_path.display(),
                            locked.reference
                        ),
                        hint: "run `cairn lock` to bring the lock file up to date, and commit it"
                            .into(),
                    }));
                }
            }
            None
        }
    };
    Ok(Inputs {
        sources,
        base,
        disk,
        lock: new_lock,
        warnings,
    })
}

/// What one platform's image needs.
struct PlatformJob<'a> {
    /// The recipe as built for this platform (`{arch}` replaced).
    recipe: &'a Recipe,
    platform: &'a Platform,
    resolved: &'a resolve::ResolvedSources,
    base: Option<&'a PinnedBase<'a>>,
    lock_sha256: Option<Sha256Digest>,
    epoch: u64,
    started_on: Option<u64>,
    /// `<name>` or, for a multi-platform build, `<name>.<os>-<arch>[-<variant>]`.
    side_file_prefix: String,
    disk: Option<&'a disk::DiskPlan>,
}

/// One platform's image, written into the layout.
struct PlatformImage {
    platform: Platform,
    manifest: StoredBlob,
    config: StoredBlob,
    layers: Vec<LayerBlob>,
    base: Option<BaseImage>,
    base_info: Option<BaseInfo>,
    /// SBOM and attestation manifests whose subject is this image.
    referrers: Vec<(String, StoredBlob)>,
    /// The SBOM blobs, also published as side files.
    spdx: Sha256Digest,
    cyclonedx: Sha256Digest,
    /// The signed DSSE envelope blobs (none when unsigned).
    envelopes: Vec<Sha256Digest>,
    side_file_prefix: String,
    /// The VM disk built from this image's root file system, not yet published.
    disk: Option<disk::DiskBuild>,
    /// Whether its layers and SBOMs were replayed from the cache.
    image_cached: bool,
}

/// Builds one platform's image into `layout`: base layers copied, the recipe's layers
/// written, SBOMs generated (and embedded), config and manifest stored, statements
/// signed and every artifact attached to the manifest as a referrer.
fn build_platform_image(
    job: &PlatformJob,
    opts: &BuildOptions,
    layout: &LayoutWriter,
    observer: &dyn Observer,
) -> Result<PlatformImage, BuildError> {
    let recipe = job.recipe;
    let platform = job.platform.to_string();
    let epoch = job.epoch;
    let (base, base_fs) = match job.base {
        Some(pinned) => {
            let error = |e: base::BaseError| {
                BuildError::Base(Box::new(
                    Diagnostic::new(
                        &recipe.file,
                        pinned.span,
                        format!("base image {} ({}): {e}", pinned.reference, pinned.digest),
                    )
                    .with_hint_of(&e),
                ))
            };
            let image = base::select(
                pinned.store.as_ref(),
                &pinned.reference,
                pinned.digest,
                job.platform,
            )
            .map_err(error)?;
            let fs = base::copy_layers(pinned.store.as_ref(), &image, layout, &opts.cancel)
                .map_err(|e| match e {
                    base::BaseError::Interrupted(interrupted) => interrupted.into(),
                    e => error(e),
                })?;
            (Some(image), Some(fs))
        }
        None => (None, None),
    };
    let recipe_file_name = recipe.file.path.file_name().map_or_else(
        || "recipe".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    // Replayed from the cache when nothing changed (see `warm`); the disk needs the
    // layer trees, and a registry-shared cache pushes from the layer entries.
    let base_info = base.as_ref().map(contents::base_info);
    let warm = opts
        .cache
        .as_ref()
        .filter(|cache| job.disk.is_none() && !cache.has_remote())
        .map(|cache| {
            let key = warm::image_key(
                recipe,
                job.platform,
                epoch,
                job.resolved,
                base_info.as_ref(),
                cache.program(),
            );
            (cache, key)
        });
    let replayed = warm
        .as_ref()
        .and_then(|(cache, key)| warm::replay(cache, key, layout));
    let Written {
        blobs,
        spdx,
        cyclonedx,
        sources,
        base_info,
        trees,
    } = match replayed {
        Some(replayed) => {
            observer.stage("layers");
            for layer in &replayed.layers {
                observer.layer_started(&layer.name, layer.uncompressed_size);
                observer.bytes_written(layer.uncompressed_size);
                observer.layer_finished(layer);
            }
            observer.stage("sbom");
            Written {
                blobs: replayed.layers,
                spdx: replayed.spdx,
                cyclonedx: replayed.cyclonedx,
                sources: contents::source_infos(recipe, job.resolved),
                base_info,
                trees: None,
            }
        }
        None => {
            let written = write_layers_and_sboms(
                job,
                opts,
                layout,
                observer,
                (base.as_ref(), base_fs.as_ref()),
                &recipe_file_name,
            )?;
            if let Some((cache, key)) = &warm {
                warm::record(
                    cache,
                    key,
                    &written.blobs,
                    written.spdx,
                    written.cyclonedx,
                    layout,
                );
            }
            written
        }
    };

    let config = image::image_config(recipe, job.platform, base.as_ref(), &blobs, epoch)?;
    let config_blob = layout.put_blob(&canonical_json(&config))?;
    let manifest = image::manifest(recipe, &config_blob, base.as_ref(), &blobs)?;
    let manifest_blob = layout.put_blob(&canonical_json(&manifest))?;

    let mut artifacts = vec![
        Artifact {
            artifact_type: sbom::SPDX_MEDIA_TYPE.into(),
            blob: spdx,
            annotations: Default::default(),
        },
        Artifact {
            artifact_type: sbom::CYCLONEDX_MEDIA_TYPE.into(),
            blob: cyclonedx,
            annotations: Default::default(),
        },
    ];
    let disk = match job.disk {
        Some(plan) => {
            if opts.cancel.load(Ordering::Relaxed) {
                return Err(Interrupted.into());
            }
            observer.stage("disk");
            let spdx_path = layout.blob_path(&spdx.digest);
            let input = disk::DiskInput {
                recipe,
                layers: trees
                    .as_deref()
                    .expect("a recipe with vm: is never replayed"),
                epoch,
                out_dir: &opts.out_dir,
                image_manifest: manifest_blob.digest,
                spdx: &spdx_path,
                spdx_size: spdx.size,
                sources: &sources,
                recipe_file_name: &recipe_file_name,
                lock_sha256: job.lock_sha256,
                sign_key: opts.sign_key.as_ref(),
                cairn_version: CAIRN_VERSION,
            };
            Some(disk::build(plan, &input)?)
        }
        None => None,
    };
    let mut envelopes: Vec<Sha256Digest> = Vec::new();
    if let Some(key) = &opts.sign_key {
        observer.stage("sign");
        let facts = intoto::ProvenanceFacts {
            image_name: &recipe.name,
            manifest_digest: manifest_blob.digest,
            recipe_file_name: &recipe_file_name,
            recipe_sha256: Sha256Digest::of(recipe.file.text.as_bytes()),
            lock_sha256: job.lock_sha256,
            epoch,
            platform: &platform,
            sources: &sources,
            base: base_info.as_ref(),
            cairn_version: CAIRN_VERSION,
            times: job
                .started_on
                .zip(opts.clock.map(|now| now()))
                .map(|(s, f)| (rfc3339(s), rfc3339(f))),
        };
        let provenance = dsse::Envelope::sign(
            dsse::INTOTO_PAYLOAD_TYPE,
            intoto::provenance_statement(&facts).to_json(),
            key,
        );
        let provenance = layout.put_blob(&provenance.to_json())?;
        let sbom_statement = sign_sbom_statement(
            &intoto::sbom_statement_around(&recipe.name, manifest_blob.digest),
            &layout.blob_path(&spdx.digest),
            spdx.size,
            key,
            layout,
        )?;
        for (predicate_type, blob) in [
            (intoto::SLSA_PROVENANCE_V1, provenance),
            (intoto::SPDX_PREDICATE, sbom_statement),
        ] {
            envelopes.push(blob.digest);
            artifacts.push(Artifact {
                artifact_type: crate::oci::media_type::DSSE_ENVELOPE.into(),
                blob,
                annotations: [(
                    crate::oci::annotation::PREDICATE_TYPE.to_string(),
                    predicate_type.to_string(),
                )]
                .into(),
            });
        }
    }

    let empty_config = layout.put_blob(image::EMPTY_JSON)?;
    let mut referrers = Vec::with_capacity(artifacts.len());
    for artifact in &artifacts {
        let manifest = image::artifact_manifest(artifact, &manifest_blob, &empty_config)?;
        referrers.push((
            artifact.artifact_type.clone(),
            layout.put_blob(&canonical_json(&manifest))?,
        ));
    }
    Ok(PlatformImage {
        platform: job.platform.clone(),
        manifest: manifest_blob,
        config: config_blob,
        layers: blobs,
        base,
        base_info,
        referrers,
        spdx: spdx.digest,
        cyclonedx: cyclonedx.digest,
        envelopes,
        side_file_prefix: job.side_file_prefix.clone(),
        disk,
        image_cached: trees.is_none(),
    })
}

/// What the normal (not replayed) path wrote: the image's own layers and SBOMs.
struct Written {
    blobs: Vec<LayerBlob>,
    spdx: StoredBlob,
    cyclonedx: StoredBlob,
    sources: Vec<contents::SourceInfo>,
    base_info: Option<BaseInfo>,
    /// The layer trees (`None` when replayed from the cache).
    trees: Option<Vec<layers::LayerTree>>,
}

/// Assembles the layer trees on top of the base and the packages, writes (or takes
/// from the layer cache) each layer, then generates the SBOMs and the SBOM layer.
fn write_layers_and_sboms(
    job: &PlatformJob,
    opts: &BuildOptions,
    layout: &LayoutWriter,
    observer: &dyn Observer,
    (base, base_fs): (Option<&BaseImage>, Option<&base::BaseFs>),
    recipe_file_name: &str,
) -> Result<Written, BuildError> {
    let recipe = job.recipe;
    let platform = job.platform.to_string();
    let epoch = job.epoch;
    let below = layers::debian::hook_layers(recipe, job.resolved, base_fs)?;
    let mut trees = layers::assemble_on(recipe, job.resolved, base_fs, below)?;
    observer.stage("layers");

    let write = |tree: &layers::LayerTree| -> Result<LayerBlob, BuildError> {
        if opts.cancel.load(Ordering::Relaxed) {
            return Err(Interrupted.into());
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
        let blob = layers::cache::write_layer(
            opts.cache.as_ref(),
            tree,
            epoch,
            recipe.layer_compression(&tree.name),
            opts.jobs.max(1),
            layout,
            &opts.cancel,
            &|n| observer.bytes_written(n),
        )?;
        observer.layer_finished(&blob);
        Ok(blob)
    };
    let mut blobs = trees.iter().map(write).collect::<Result<Vec<_>, _>>()?;

    observer.stage("sbom");
    // SBOMs describe the layers as written (their SHA-1s were computed in the same
    // pass); the SBOM layer itself is not in them.
    let mut contents = contents::image_contents(recipe, job.resolved, base.zip(base_fs), &trees);
    let mut sha1 = crate::digest::Sha1Index::new();
    if let Some(fs) = &base_fs {
        sha1.extend(fs.sha1.iter().map(|(k, v)| (*k, *v)));
    }
    for blob in &mut blobs {
        sha1.append(&mut blob.sha1);
    }
    let sbom_input = sbom::SbomInput {
        image_name: &recipe.name,
        epoch,
        platform: &platform,
        recipe_file_name,
        contents: &contents,
        cairn_version: CAIRN_VERSION,
        sha1: &sha1,
    };
    // Written straight into blobs, which the SBOM layer, the referrers, the signed
    // statement and the side files read back: an SBOM lists every file of the image
    // and is tens of megabytes at tens of thousands of files.
    let write_sbom = |write: &dyn Fn(&mut dyn Write) -> Result<(), sbom::SbomError>| {
        let mut blob = layout.blob_writer()?;
        write(&mut blob)?;
        Ok::<_, BuildError>(layout.commit_blob(blob)?)
    };
    let spdx = write_sbom(&|out| sbom::write_spdx_json(&sbom_input, out))?;
    let cyclonedx = write_sbom(&|out| {
        sbom::write_cyclonedx_json(&sbom_input, out).map_err(sbom::SbomError::Write)
    })?;
    // The per-file list and SHA-1s serve only the SBOMs: freed before the next layer.
    drop(sha1);
    contents.files = Vec::new();
    let blob_content = |blob: &StoredBlob| Content {
        location: Location::Path(layout.blob_path(&blob.digest)),
        size: blob.size,
        sha256: blob.digest,
    };
    if recipe.sbom {
        let at = |ext: &str| {
            ImagePath::parse(&format!("{SBOM_DIR}/{}.{ext}", recipe.name))
                .expect("image names are path-safe")
        };
        let files = vec![
            (
                at("spdx.json"),
                layers::FileData::Source(blob_content(&spdx).into()),
            ),
            (
                at("cdx.json"),
                layers::FileData::Source(blob_content(&cyclonedx).into()),
            ),
        ];
        let layer = layers::generated_layer(recipe, base_fs, &trees, SBOM_LAYER, files)?;
        blobs.push(write(&layer)?);
        trees.push(layer);
    }

    Ok(Written {
        blobs,
        spdx,
        cyclonedx,
        sources: contents.sources,
        base_info: contents.base,
        trees: Some(trees),
    })
}

/// Signs the SPDX in-toto statement (`before`, the SPDX document in the blob at
/// `spdx_path` without its final newline, `after`) and stores the DSSE envelope as a
/// blob. The document is read from the file, twice for the signature and once more
/// for the base64 payload, never held in memory.
fn sign_sbom_statement(
    around: &(Vec<u8>, Vec<u8>),
    spdx_path: &Path,
    spdx_size: u64,
    key: &SigningKey,
    layout: &LayoutWriter,
) -> Result<StoredBlob, BuildError> {
    let mut blob = layout.blob_writer()?;
    intoto::write_signed_sbom_statement(around, spdx_path, spdx_size, key, &mut blob).map_err(
        |source| OutputError::Io {
            path: spdx_path.to_path_buf(),
            source,
        },
    )?;
    Ok(layout.commit_blob(blob)?)
}

/// What `cairn lock` did.
#[derive(Debug, Serialize)]
pub struct LockReport {
    pub lock_file: PathBuf,
    pub changed: bool,
    pub sources: Lockfile,
}

/// `cairn lock`: pins every source not pinned in the recipe itself, the base image
/// (through `registry` for a `ref:` base), and resolves the recipe's packages afresh.
pub fn lock(
    recipe: &Recipe,
    registry: Option<&crate::registry::Client>,
    packages: &debian::PackageOptions,
) -> Result<LockReport, BuildError> {
    let lock_path = resolve::lock_path_for(&recipe.file.path);
    let lock = Lockfile::read(&lock_path)?;
    let staging = tempfile::tempdir().map_err(|source| OutputError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let inputs = resolve_inputs(
        recipe,
        &lock,
        &InputContext {
            lock_path: &lock_path,
            mode: LockMode::Repin,
            staging: staging.path(),
            registry,
            cache_dir: None,
            packages,
            progress: &Quiet,
        },
    )?;
    let changed = inputs.lock != lock;
    if changed {
        inputs.lock.write(&lock_path)?;
    }
    Ok(LockReport {
        lock_file: lock_path,
        changed,
        sources: inputs.lock,
    })
}
