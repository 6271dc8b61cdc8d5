//! The recipe's Debian packages as a resolved input: [`crate::debian`] installs them,
//! pinned by the lock file or pinned now, and the pins join the lock.

use super::{LockMode, Lockfile, ResolvedSources};
use crate::debian::ca_certificates::{self, LocalCert};
use crate::debian::ld_so_cache;
use crate::debian::sysusers;
use crate::debian::{
    install, lock::PackagesLock, matching_lock, DebianError, DownloadProgress, PackageOptions, Pins,
};
use crate::recipe::PackagesSpec;
use crate::recipe::Recipe;
use crate::snapshot::SourceEntryKind;
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
        Some(spec) => {
            let mut installed = pins(recipe, spec, lock.packages.as_ref(), mode)
                .and_then(|pins| {
                    install(recipe, spec, pins, opts, &staging.join("debian"), progress)
                })
                .map_err(|e| e.in_recipe(recipe, spec))?;
            let local = extra_ca_certificates(recipe, spec, resolved)?;
            let extra = spec.extra_ca_certificates.first();
            if !ca_certificates::configure(&mut installed, local)? {
                if let Some(extra) = extra {
                    return Err(in_recipe(
                        recipe,
                        extra.span,
                        "`extra_ca_certificates` needs the `ca-certificates` package, which is not installed",
                        "add `ca-certificates` to `packages:`: cairn adds the certificates as its `update-ca-certificates` does",
                    ));
                }
            }
            installed.ld_so_cache = ld_so_cache::configure(&mut installed);
            installed.accounts = sysusers::configure(&mut installed)?;
            Some(installed)
        }
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

/// The recipe's `extra_ca_certificates:`, each the one file of its source.
fn extra_ca_certificates(
    recipe: &Recipe,
    spec: &PackagesSpec,
    resolved: &ResolvedSources,
) -> Result<Vec<LocalCert>, DebianError> {
    spec.extra_ca_certificates
        .iter()
        .map(|extra| {
            let tree = resolved.sources[&extra.source].tree();
            match &tree.entries[..] {
                [entry] if entry.rel_path.is_empty() => {
                    let SourceEntryKind::File(content) = &entry.kind else {
                        unreachable!("the entry of a single-file source is its file")
                    };
                    Ok(LocalCert {
                        source: extra.source.clone(),
                        content: content.clone(),
                        line: extra.span.line,
                    })
                }
                _ => Err(in_recipe(
                    recipe,
                    extra.span,
                    &format!(
                        "extra CA certificate source `{}` is a directory",
                        extra.source
                    ),
                    "give each certificate as a `path:` source of one PEM file",
                )),
            }
        })
        .collect()
}

fn in_recipe(recipe: &Recipe, span: crate::recipe::Span, message: &str, hint: &str) -> DebianError {
    DebianError::InRecipe(Box::new(
        crate::recipe::Diagnostic::new(&recipe.file, span, message.to_string()).with_hint(hint),
    ))
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
