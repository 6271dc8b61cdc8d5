//! The recipe's Debian packages as a resolved input: [`crate::debian`] installs them,
//! pinned by the lock file or pinned now, and the pins join the lock.

use super::{LockMode, Lockfile, ResolvedSources};
use crate::debian::{install, DebianError, DownloadProgress, PackageOptions};
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
            install(
                recipe,
                spec,
                lock.packages.as_ref(),
                mode,
                opts,
                &staging.join("debian"),
                progress,
            )
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
