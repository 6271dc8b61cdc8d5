//! The recipe's Debian packages as a resolved input: [`crate::debian`] installs them,
//! pinned by the lock file or pinned now, and the pins join the lock.

use super::{LockMode, Lockfile, ResolvedSources};
use crate::debian::{
    install, lock::PackagesLock, matching_lock, DebianError, DownloadProgress, PackageOptions, Pins,
};
use crate::recipe::PackagesSpec;
use crate::recipe::Recipe;
use std::path::Path;

/// What `cairn build` and `cairn lock` call, between resolving sources and
/// assembling layers: installs the recipe's packages into `resolved` (and its lock),
/// then `layers::debian::hook_layers` gives their layers.
pub fn hook_install(
    recipe: &Recipe,
    lock: &Lockfile,
    mode: LockMode,
    opts: &PackageOptions,
    staging: &Path,
    progress: &dyn DownloadProgress,
    resolved: &mut ResolvedSources,
) -> Result<(), DebianError> {
    let installed = match &recipe.packages {
        Some(spec) => Some(
            pins(recipe, spec, lock.packages.as_ref(), mode)
                .and_then(|pins| {
                    install(recipe, spec, pins, opts, &staging.join("debian"), progress)
                })
                .map_err(|e| e.in_recipe(recipe, spec))?,
        ),
        None if mode == LockMode::Locked && lock.packages.is_some() => {
            return Err(DebianError::StaleLock {
                detail: "it pins packages, but the recipe installs none".into(),
            })
        }
        None => None,
    };
    resolved.lock.packages = installed.as_ref().map(|i| i.lock.clone());
    resolved.lock_changed = resolved.lock != *lock;
    if let Some(i) = &installed {
        resolved.warnings.extend(i.warnings.iter().cloned());
    }
    resolved.packages = installed;
    Ok(())
}

/// Where the packages' pins come from under `mode`: the lock file's when they still
/// match the recipe (unless updating), else resolved now, which `--locked` refuses.
fn pins<'a>(
    recipe: &Recipe,
    spec: &PackagesSpec,
    existing: Option<&'a PackagesLock>,
    mode: LockMode,
) -> Result<Pins<'a>, DebianError> {
    let matching = matching_lock(recipe, spec, existing)?;
    Ok(match (mode, matching) {
        (LockMode::Update, _) => Pins::Resolve { warn: false },
        (_, Some(l)) => Pins::Locked(l),
        (LockMode::Locked, None) => {
            return Err(DebianError::StaleLock {
                detail: match existing {
                    None => "it pins no packages".into(),
                    Some(_) => {
                        "the requested packages, repositories or architecture changed".into()
                    }
                },
            })
        }
        (LockMode::PinMissing, None) => Pins::Resolve { warn: true },
        (LockMode::Repin, None) => Pins::Resolve { warn: false },
    })
}
