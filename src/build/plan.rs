//! The resolve stage: every input pinned once, before anything is written. Gives a
//! [`Plan`]: each platform's sources (and Debian packages), the base image, the VM
//! disk's inputs, and the lock file as it should now be.

use super::error::BuildError;
use crate::base::{self, BaseStore};
use crate::debian;
use crate::diag::Diagnose;
use crate::digest::Sha256Digest;
use crate::disk;
use crate::recipe::{BaseSource, Diagnostic, Recipe, Span};
use crate::resolve::containment::SourceRoots;
use crate::resolve::{self, platforms, LockMode, Lockfile, ResolveError};
use std::path::{Path, PathBuf};

/// Every input pinned: each platform's sources, the base, and the lock file that
/// records them.
pub struct Plan<'c> {
    pub sources: platforms::AllSources,
    pub base: Option<PinnedBase<'c>>,
    /// The VM disk to build (`vm:`), its kernel and tools found and pinned.
    pub disk: Option<disk::DiskPlan>,
    /// The lock file as read, and where it lives.
    pub old_lock: Lockfile,
    pub lock_path: PathBuf,
    /// The lock file as it should now be.
    pub lock: Lockfile,
    /// The SHA-256 of `lock`, recorded in provenance when the recipe has anything to
    /// pin.
    pub lock_sha256: Option<Sha256Digest>,
    pub warnings: Vec<String>,
}

/// The base image, pinned, and the store it is read from.
pub struct PinnedBase<'c> {
    pub store: Box<dyn BaseStore + 'c>,
    pub reference: String,
    pub digest: Sha256Digest,
    pub span: Span,
}

/// How [`plan`] pins and fetches.
pub struct Pinning<'a, 'c> {
    pub lock_path: &'a Path,
    pub mode: LockMode,
    /// Where archives are staged (on the layout's file system).
    pub staging: &'a Path,
    pub registry: Option<&'c crate::registry::Client>,
    pub cache_dir: Option<&'a Path>,
    /// Outside directories sources may come from (`--allow-source-root`).
    pub source_roots: &'a SourceRoots,
    pub packages: &'a debian::PackageOptions,
    pub progress: &'a dyn debian::DownloadProgress,
}

/// Pins every input of `recipe` against `old_lock`, the lock file as read.
pub fn plan<'c>(
    recipe: &Recipe,
    old_lock: Lockfile,
    cx: &Pinning<'_, 'c>,
) -> Result<Plan<'c>, BuildError> {
    let Pinning {
        lock_path,
        mode,
        staging,
        registry,
        cache_dir,
        source_roots,
        ..
    } = *cx;
    let lock = &old_lock;
    let mut sources = platforms::resolve_all(
        recipe,
        lock,
        lock_path,
        mode,
        staging,
        cache_dir,
        source_roots,
    )?;
    let mut new_lock = sources.lock.clone();
    let mut warnings = sources.warnings.clone();
    let base = match &recipe.base {
        Some(spec) => {
            let error = |cause: &dyn Diagnose| {
                BuildError::Base(Box::new(
                    Diagnostic::new(&recipe.file, spec.span, cause.to_string()).with_hint_of(cause),
                ))
            };
            let source = match &spec.source {
                // Its layers go into the image: a host path like any source's.
                BaseSource::Layout { path } => BaseSource::Layout {
                    path: source_roots
                        .resolve("base layout", &recipe.file.dir, path)
                        .map_err(|e| error(&e))?
                        .display()
                        .to_string(),
                },
                remote => remote.clone(),
            };
            let store = base::open_store(&recipe.file.dir, &source, registry, staging)
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
    // Each platform installs its architecture's packages, pinned in its own section,
    // on top of the packages its base image has installed.
    // One fetch of each InRelease for every platform.
    let multi = recipe.platforms.len() > 1;
    let mut releases = debian::FetchedReleases::default();
    for platform in &mut sources.platforms {
        let before = platform.resolved.warnings.len();
        let platform_recipe = &platform.recipe;
        let read_installed = base
            .as_ref()
            .map(|pinned| move || base_packages(platform_recipe, pinned));
        let package_base = base
            .as_ref()
            .zip(read_installed.as_ref())
            .map(|(pinned, read)| resolve::packages::PackageBase {
                digest: pinned.digest,
                read_installed: read,
            });
        resolve::packages::hook_install(
            platform_recipe,
            lock,
            mode,
            cx.packages,
            staging,
            cx.progress,
            package_base.as_ref(),
            &mut releases,
            &mut platform.resolved,
        )?;
        for w in platform.resolved.warnings.drain(before..) {
            warnings.push(if multi {
                format!("{w} (for {})", platform.platform)
            } else {
                w
            });
        }
    }
    new_lock.packages = resolve::packages::lock_sections(
        recipe,
        sources.platforms.iter().filter_map(|p| {
            let installed = p.resolved.packages.as_ref()?;
            Some((&p.platform, &installed.lock))
        }),
    );
    if let (LockMode::Locked, Some(spec)) = (mode, &recipe.packages) {
        // Every platform's section matched, so a difference is a section for a
        // platform the recipe no longer builds, or the form (one section, or one per
        // platform): not the lock this recipe writes.
        if new_lock.packages != lock.packages {
            let stale = debian::DebianError::StaleLock {
                detail: "its package sections are not those of the recipe's platforms".into(),
            };
            return Err(BuildError::Packages(stale.in_recipe(recipe, spec)));
        }
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
    let lock_sha256 =
        (!recipe.sources.is_empty() || recipe.base.is_some() || recipe.packages.is_some())
            .then(|| Sha256Digest::of(&new_lock.to_bytes()));
    Ok(Plan {
        sources,
        base,
        disk,
        old_lock,
        lock_path: lock_path.to_path_buf(),
        lock: new_lock,
        lock_sha256,
        warnings,
    })
}

/// The packages installed in the pinned base image, for `recipe`'s platform: its
/// layers read once more (checked as when they are copied), for the dpkg status.
fn base_packages(
    recipe: &Recipe,
    pinned: &PinnedBase,
) -> Result<debian::status::BasePackages, debian::DebianError> {
    let at_base = |cause: &dyn Diagnose| {
        debian::DebianError::InRecipe(Box::new(
            Diagnostic::new(
                &recipe.file,
                pinned.span,
                format!(
                    "base image {} ({}): {cause}",
                    pinned.reference, pinned.digest
                ),
            )
            .with_hint_of(cause),
        ))
    };
    let read = || {
        let image = base::select(
            pinned.store.as_ref(),
            &pinned.reference,
            pinned.digest,
            &recipe.platform,
        )?;
        base::read_fs(pinned.store.as_ref(), &image, recipe.limits)
    };
    let fs = read().map_err(|e| at_base(&e))?;
    resolve::packages::base_packages(&fs, &recipe.platform).map_err(|e| at_base(&e))
}
