//! `cairn build`: runs the stages in order and publishes the layout.
//!
//! Takes a validated [`Recipe`], [`BuildSettings`] (what to write and how: output
//! directory, format, lock mode, threads, the fallback epoch) and [`BuildHandles`]
//! (cache, registry client, signing key, cancel flag); gives a [`BuildReport`]
//! describing exactly what was written.
//!
//! Each stage is one function giving one value, in its own module:
//! [`plan::plan`] -> [`Plan`](plan::Plan) (every input pinned once), then per
//! platform [`layers::write_layers`] -> [`Layers`](layers::Layers) (base layers,
//! package and recipe layers, SBOMs), [`image::assemble`] -> [`Image`](image::Image)
//! (config, manifest), [`disk::build_disk`] (`vm:` only), [`attest::attest`] ->
//! [`Attestations`](attest::Attestations) (signed statements, referrers), and
//! finally [`publish::publish`] -> [`Published`](publish::Published) (index, side
//! files, layout or archive, disk, lock file). A [`BuildContext`] carries the layout
//! being written, the observer, the epoch and the cancel flag from stage to stage.

pub mod attest;
pub mod context;
pub mod disk;
pub mod error;
pub mod image;
pub mod layers;
pub mod names;
pub mod plan;
pub mod publish;
pub mod report;

#[cfg(test)]
mod tests;

use crate::debian;
use crate::layers::cache::LayerCache;
use crate::oci::layout::LayoutWriter;
use crate::output::archive::OutputFormat;
use crate::output::OutputError;
use crate::recipe::Recipe;
use crate::resolve::{self, LockMode, Lockfile};
use context::{BuildContext, BuildHandles, BuildSettings, Observer, Quiet};
use error::BuildError;
use names::SbomFiles;
use publish::PlatformImage;
use report::{BuildReport, Built, LockReport};

/// The epoch every timestamp in the image is set to.
pub fn effective_epoch(recipe: &Recipe, source_date_epoch: Option<u64>) -> u64 {
    recipe.epoch.or(source_date_epoch).unwrap_or(0)
}

pub fn build(
    recipe: &Recipe,
    settings: &BuildSettings,
    handles: &BuildHandles,
    observer: &dyn Observer,
) -> Result<BuildReport, BuildError> {
    if recipe.multi_platform && settings.format == OutputFormat::DockerArchive {
        return Err(BuildError::Unsupported(format!(
            "a docker-archive holds one image, but recipe `{}` builds {} platforms; use --format oci or oci-archive (an image index), or build with `platform:`",
            recipe.name,
            recipe.platforms.len()
        )));
    }
    let started_on = settings.clock.map(|now| now());
    let epoch = effective_epoch(recipe, settings.source_date_epoch);
    let lock_path = resolve::lock_path_for(&recipe.file.path);
    let old_lock = Lockfile::read(&lock_path)?;
    observer.stage("resolve");
    let cx = BuildContext {
        settings,
        handles,
        layout: LayoutWriter::begin(&settings.out_dir, &recipe.name)?,
        observer,
        epoch,
        jobs: settings.jobs.max(1),
        started_on,
    };
    let mut plan = plan::plan(
        recipe,
        old_lock,
        &plan::Pinning {
            lock_path: &lock_path,
            mode: settings.lock_mode,
            staging: &cx.layout.scratch_dir()?,
            registry: handles.registry.as_ref(),
            cache_dir: handles.cache.as_ref().map(LayerCache::dir),
            source_roots: &settings.source_roots,
            packages: &settings.packages,
            progress: observer,
        },
    )?;
    if let (Some(disk), Some(vm)) = (&mut plan.disk, &recipe.vm) {
        disk.secure_boot = crate::disk::secure_boot_key(recipe, vm, handles.secure_boot.as_ref())?;
    }

    // The loop owns the platforms' sources, so that each frees its source entries
    // once its layers are assembled (an entry per file; see `write_layers`).
    let mut platforms = std::mem::take(&mut plan.sources.platforms);
    let mut images = Vec::with_capacity(platforms.len());
    for platform in &mut platforms {
        let mut layers = layers::write_layers(&cx, &plan, platform)?;
        let platform = &*platform;
        let image = image::assemble(&cx, platform, &layers)?;
        let disk = disk::build_disk(&cx, &plan, platform, &mut layers, &image)?;
        let attestations = attest::attest(&cx, &plan, platform, &layers, &image)?;
        images.push(PlatformImage {
            platform: platform.platform.clone(),
            sbom_files: SbomFiles::of(recipe, &platform.platform),
            layers,
            image,
            attestations,
            disk,
        });
    }

    plan.sources.platforms = platforms;
    let published = publish::publish(cx, recipe, &plan, &mut images)?;
    Ok(Built {
        recipe,
        out_dir: &settings.out_dir,
        format: settings.format,
        epoch,
        plan,
        images,
        published,
        cache_warnings: handles
            .cache
            .iter()
            .flat_map(LayerCache::take_warnings)
            .collect(),
    }
    .report())
}

/// `cairn lock`: pins every source not pinned in the recipe itself, and the base image
/// (through `registry` for a `ref:` base) and the recipe's packages where the lock does
/// not pin them yet for this recipe; with `update`, resolves those two afresh. Sources
/// may come from the recipe's directory and `source_roots`.
pub fn lock(
    recipe: &Recipe,
    update: bool,
    registry: Option<&crate::registry::Client>,
    packages: &debian::PackageOptions,
    source_roots: &resolve::containment::SourceRoots,
) -> Result<LockReport, BuildError> {
    let lock_path = resolve::lock_path_for(&recipe.file.path);
    let old_lock = Lockfile::read(&lock_path)?;
    let staging = tempfile::tempdir().map_err(|source| OutputError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let plan = plan::plan(
        recipe,
        old_lock,
        &plan::Pinning {
            lock_path: &lock_path,
            mode: if update {
                LockMode::Update
            } else {
                LockMode::Repin
            },
            staging: staging.path(),
            registry,
            cache_dir: None,
            source_roots,
            packages,
            progress: &Quiet,
        },
    )?;
    let changed = plan.lock != plan.old_lock;
    if changed {
        plan.lock.write(&plan.lock_path)?;
    }
    Ok(LockReport {
        lock_file: plan.lock_path,
        changed,
        changes: plan.old_lock.changes_to(&plan.lock),
        sources: plan.lock,
    })
}
