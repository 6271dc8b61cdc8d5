//! The recipe's Debian packages as a resolved input: [`crate::debian`] installs them,
//! pinned by the lock file or pinned now, and the pins join the lock. An image index
//! over several platforms installs them once per platform, each from its own section
//! of the lock ([`PackageSections`]).

use super::{LockMode, Lockfile, ResolvedSources};
use crate::base::fs::{BaseFs, DPKG_STATUS, DPKG_STATUS_DIR, DPKG_STATUS_LIMIT};
use crate::debian::ca_certificates::{self, LocalCert};
use crate::debian::ld_so_cache;
use crate::debian::status::{self, BasePackages, StatusFile};
use crate::debian::sysusers;
use crate::debian::{
    debian_arch, install,
    lock::{PackageSections, PackagesLock},
    matching_lock, DebianError, DownloadProgress, FetchedReleases, OnBase, PackageOptions, Pins,
};
use crate::digest::Sha256Digest;
use crate::recipe::PackagesSpec;
use crate::recipe::Recipe;
use crate::snapshot::limits::size_text;
use crate::snapshot::SourceEntryKind;
use std::path::Path;

/// The base image the packages go on, as [`hook_install`] needs it.
pub struct PackageBase<'a> {
    /// Its pinned digest, which a lock resolved on it records.
    pub digest: Sha256Digest,
    /// Reads its installed packages ([`base_packages`]): called only when the
    /// packages are resolved (a lock that matches has accounted for them already).
    pub read_installed: &'a dyn Fn() -> Result<BasePackages, DebianError>,
}

/// What `cairn build` and `cairn lock` call, between resolving sources and
/// assembling layers: installs the recipe's packages for its platform into `resolved`
/// (their pins in `resolved.packages`, for [`lock_sections`]), on top of `base`'s
/// installed packages, then `layers::debian::hook_layers` gives their layers.
/// `releases` holds the InReleases this resolution fetched, which every platform
/// shares.
#[allow(clippy::too_many_arguments)]
pub fn hook_install(
    recipe: &Recipe,
    lock: &Lockfile,
    mode: LockMode,
    opts: &PackageOptions,
    staging: &Path,
    progress: &dyn DownloadProgress,
    base: Option<&PackageBase<'_>>,
    releases: &mut FetchedReleases,
    resolved: &mut ResolvedSources,
) -> Result<(), DebianError> {
    let installed = match &recipe.packages {
        Some(spec) => {
            let existing = lock
                .packages
                .as_ref()
                .and_then(|p| p.of_platform(&recipe.platform));
            let base_installed: BasePackages;
            let mut pins =
                pins(recipe, spec, existing, mode, base).map_err(|e| e.in_recipe(recipe, spec))?;
            if let (Pins::Resolve { warn, .. }, Some(base)) = (pins, base) {
                base_installed = (base.read_installed)()?;
                pins = Pins::Resolve {
                    warn,
                    base: Some(OnBase {
                        digest: base.digest,
                        installed: &base_installed,
                    }),
                };
            }
            let mut installed = install(
                recipe,
                spec,
                pins,
                opts,
                &staging.join("debian"),
                progress,
                releases,
            )
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
    if let Some(i) = &installed {
        resolved.warnings.extend(i.warnings.iter().cloned());
    }
    resolved.packages = installed;
    Ok(())
}

/// The lock's `packages` for what each platform installed (in `recipe`'s platform
/// order): one section for an image of one platform, else one per platform.
pub fn lock_sections<'a>(
    recipe: &Recipe,
    installed: impl Iterator<Item = (&'a crate::recipe::Platform, &'a PackagesLock)>,
) -> Option<PackageSections> {
    let mut sections: Vec<(String, PackagesLock)> = installed
        .map(|(platform, lock)| (platform.to_string(), lock.clone()))
        .collect();
    match (recipe.platforms.len(), sections.len()) {
        (_, 0) => None,
        (1, _) => sections
            .pop()
            .map(|(_, lock)| PackageSections::Single(lock)),
        _ => Some(PackageSections::PerPlatform(sections.into_iter().collect())),
    }
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
/// match the recipe and the base (unless updating), else resolved now (on no base
/// yet: the caller reads it only then), which `--locked` refuses.
fn pins<'a>(
    recipe: &Recipe,
    spec: &PackagesSpec,
    existing: Option<&'a PackagesLock>,
    mode: LockMode,
    base: Option<&PackageBase<'_>>,
) -> Result<Pins<'a>, DebianError> {
    let matching = matching_lock(recipe, spec, existing, base.map(|b| b.digest))?;
    let resolve = |warn| Pins::Resolve { warn, base: None };
    Ok(match (mode, matching) {
        (LockMode::Update, _) => resolve(false),
        (_, Some(l)) => Pins::Locked(l),
        (LockMode::Locked, None) => {
            return Err(DebianError::StaleLock {
                detail: match existing {
                    None if recipe.platforms.len() > 1 => {
                        format!("it pins no packages for {}", recipe.platform)
                    }
                    None => "it pins no packages".into(),
                    Some(_) => {
                        "the requested packages, repositories, architecture or base image changed"
                            .into()
                    }
                },
            })
        }
        (LockMode::PinMissing, None) => resolve(true),
        (LockMode::Repin, None) => resolve(false),
    })
}

/// The packages installed in a base image, from the dpkg status its file system
/// kept ([`crate::base::fs::kept_limit`]), for a `platform` image.
pub fn base_packages(
    fs: &BaseFs,
    platform: &crate::recipe::Platform,
) -> Result<BasePackages, DebianError> {
    let is_status = |key: &str| key == DPKG_STATUS || key.starts_with(DPKG_STATUS_DIR);
    if let Some((key, size)) = fs.too_large.iter().find(|(key, _)| is_status(key)) {
        return Err(DebianError::BadBaseStatus {
            file: format!("/{key}"),
            detail: format!(
                "it is {}, more than cairn reads ({})",
                size_text(*size),
                size_text(DPKG_STATUS_LIMIT)
            ),
        });
    }
    let files: Vec<StatusFile<'_>> = fs
        .kept_files
        .iter()
        .filter(|(key, _)| is_status(key))
        .map(|(key, text)| StatusFile {
            path: format!("/{key}"),
            text,
            per_package: key != DPKG_STATUS,
        })
        .collect();
    status::read(&files, debian_arch(platform)?)
}
