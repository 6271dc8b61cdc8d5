//! Debian packages from signed apt repositories, with the chain of trust kept whole:
//! InRelease signature ([`release`]) -> Packages index (its SHA-256 from the signed
//! InRelease) -> `.deb` (its SHA-256 from the index) -> every file in the image.
//!
//! [`install`] takes the recipe's `packages:` and the lock; it resolves
//! ([`solver`]) or reads the pins from the lock ([`lock`]), fetches every file through
//! a content-addressed cache ([`fetch`]), downloading in parallel, and unpacks each
//! package ([`deb`]). `layers::debian` then spreads the packages over layers with dpkg
//! metadata so that scanners see them. Maintainer scripts never run; see the README
//! for what is not supported.

pub mod alternatives;
pub mod apt_conf;
pub mod apt_sources;
pub mod ca_certificates;
mod copyright;
pub(crate) mod deb;
pub mod dpkg_database;
mod fetch;
pub mod index;
pub mod ld_so_cache;
pub mod lock;
mod path_filter;
pub use path_filter::fnmatch;
pub(crate) mod release;
pub mod solver;
pub mod status;
pub mod sysusers;
pub mod version;

use crate::diag::{Diagnose, Location};
use crate::digest::Sha256Digest;
use crate::recipe::{DpkgDatabase, Mirror, PackagesSpec, Platform, Recipe, RepositorySpec};
use crate::snapshot::{SourceEntryKind, SourceTree};
use apt_sources::HostSource;
use fetch::Fetcher;
use lock::{LockedPackage, LockedRepository, PackagesLock};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// How to reach and check repositories: everything the host decides, passed in by the
/// caller (library code reads neither the clock, the environment nor `/etc`).
#[derive(Debug, Clone)]
pub struct PackageOptions {
    /// cairn's cache directory; packages are cached in its `debs/` subdirectory.
    pub cache_dir: PathBuf,
    /// Now, in seconds since the epoch: InRelease `Valid-Until` and key validity are
    /// checked against it.
    pub now: u64,
    /// The host's apt sources, for repositories with `mirror: host`.
    pub host_sources: Vec<HostSource>,
    /// The host's apt configuration file that turns `Valid-Until` checking off for all
    /// its sources (`Acquire::Check-Valid-Until "false"`): `mirror: host` repositories
    /// follow it, with a warning.
    pub host_valid_until_off: Option<PathBuf>,
    /// Never touch the network: everything must be in the cache.
    pub offline: bool,
}

/// Told how many bytes are downloaded, for progress bars.
pub trait DownloadProgress {
    /// `bytes` are about to be downloaded in `files` files.
    fn downloads_started(&self, _files: usize, _bytes: u64) {}
    fn downloaded(&self, _bytes: u64) {}
    fn downloads_finished(&self) {}
}

/// The packages of an image, unpacked and pinned.
#[derive(Debug, serde::Serialize)]
pub struct InstalledPackages {
    /// Sorted by name.
    pub packages: Vec<InstalledPackage>,
    pub lock: PackagesLock,
    /// Not in the warm image key: messages for the user, not inputs.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// What cairn makes in place of `update-ca-certificates` when `ca-certificates` is
    /// installed ([`ca_certificates::configure`]). Not in the warm image key: a
    /// function of the packages above and of the recipe's sources, which are.
    #[serde(skip)]
    pub ca_certificates: Option<ca_certificates::CaCertificates>,
    /// Whether, and for what, cairn makes `/etc/ld.so.cache` in place of `libc-bin`'s
    /// `ldconfig` trigger ([`ld_so_cache::configure`]); made from the layers' tree.
    /// Not in the warm image key, for the same reason.
    #[serde(skip)]
    pub ld_so_cache: Option<ld_so_cache::LdSoCache>,
    /// `base-passwd`'s master files and the packages' sysusers.d fragments
    /// ([`sysusers::configure`]), which the accounts layer merges with `accounts:`.
    /// Not in the warm image key: read from the packages above.
    #[serde(skip)]
    pub accounts: Option<sysusers::PackageAccounts>,
}

/// The SBOM source name of a package: `deb:<name>` (recipe source names cannot hold
/// `:`, so the two never clash).
pub fn source_name(package: &str) -> String {
    format!("deb:{package}")
}

#[derive(Debug, serde::Serialize)]
pub struct InstalledPackage {
    pub name: String,
    pub pin: LockedPackage,
    pub suite: String,
    pub inrelease_sha256: Sha256Digest,
    pub signed_by: String,
    /// The package's control stanza as the .deb carries it.
    pub control: String,
    pub md5sums: Option<String>,
    /// The files installed: the package's, less what `path_filters:` left out.
    pub tree: SourceTree,
    /// The paths `path_filters:` left out (absolute), which the SBOMs record.
    pub left_out: Vec<String>,
    /// The `update-alternatives --install` calls of its `postinst`, which cairn makes
    /// the links of natively ([`alternatives`]).
    pub alternatives: Vec<alternatives::Install>,
    /// Its maintainer scripts, none of them run, each with what cairn did natively in
    /// its place (the provenance lists them).
    pub scripts: Vec<MaintainerScript>,
    /// Its entries of dpkg's database, with `dpkg_database: full`. Not in the warm image
    /// key: made from the package's bytes, which are, and that recipe field.
    #[serde(skip)]
    pub dpkg_database: Option<dpkg_database::PackageDatabase>,
    /// SPDX expression from a machine-readable copyright file, if it has one (read
    /// before `path_filters:` apply).
    pub license: Option<String>,
    /// Recipe line of `packages:` (or of the package's own entry when requested).
    pub line: u32,
}

/// A maintainer script of an installed package: never run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MaintainerScript {
    /// `preinst`, `postinst`, `prerm`, `postrm`, `config` or `triggers`.
    pub name: String,
    pub sha256: Sha256Digest,
    /// What cairn did natively in its place: one line per effect (empty: nothing).
    pub done_natively: Vec<String>,
}

impl InstalledPackage {
    /// Whether this package's `Replaces` names `other` (by name, at a version the
    /// relation allows): then a file both ship is this package's, as dpkg lets a
    /// package take over a file of a package it replaces.
    pub fn replaces(&self, other: &InstalledPackage) -> bool {
        let Ok(control) = self.control.parse::<deb822_fast::Deb822>() else {
            return false;
        };
        let Some(field) = control.iter().next().and_then(|p| p.get("Replaces")) else {
            return false;
        };
        let other_version = version::Version::parse(&other.pin.version);
        index::parse_relations(field)
            .into_iter()
            .flatten()
            .flatten()
            .any(|r| r.name == other.name && r.allows(other_version.as_ref()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    #[error("Debian packages for platform architecture `{0}` are not supported")]
    Architecture(String),
    #[error("cannot read keyring {keyring}: {detail}")]
    Keyring { keyring: String, detail: String },
    #[error("InRelease is not trustworthy (keyring {keyring}): {detail}")]
    Signature { keyring: String, detail: String },
    #[error("the repository's Release expired on {valid_until} (now: {now})")]
    Expired { valid_until: String, now: String },
    #[error("the signed Release cannot be read: {detail}")]
    BadRelease { detail: String },
    #[error("Packages index {index} cannot be read: {detail}")]
    BadIndex { index: String, detail: String },
    #[error("repository `{repository}` has no Packages index for {component}/binary-{architecture} in its InRelease")]
    NoIndex {
        repository: String,
        component: String,
        architecture: String,
    },
    #[error("cannot install {wanted} ({chain}): {why}")]
    Unsatisfiable {
        wanted: String,
        chain: String,
        why: String,
    },
    #[error("packages `{package}` {version} and `{other}` {other_version} cannot be installed together: `{package}` declares `Conflicts`/`Breaks: {relation}`")]
    Conflict {
        package: String,
        version: String,
        relation: String,
        other: String,
        other_version: String,
    },
    /// `installing`: "`name` version"; `declared`: which side declares what.
    #[error("{installing} cannot be installed on the base image, which has `{base_package}` {base_version}: {declared}")]
    BaseConflict {
        installing: String,
        base_package: String,
        base_version: String,
        declared: String,
    },
    #[error("{what} does not match its pin: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("cannot download {what} from {url}: {detail}")]
    Download {
        what: String,
        url: String,
        detail: String,
    },
    #[error("{what} is not in the package cache and --offline forbids downloading it")]
    Offline { what: String },
    #[error("repository `{repository}` uses `mirror: host`, but the host's apt configuration has no source for suite `{suite}`")]
    NoHostMirror { repository: String, suite: String },
    #[error("package cache {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("package `{package}` is not a valid .deb: {detail}")]
    BadDeb { package: String, detail: String },
    #[error("repository `{repository}`: {source}")]
    InRepository {
        repository: String,
        source: Box<DebianError>,
    },
    /// An error placed in the recipe (at the repository or `packages:`), as build
    /// errors are.
    #[error("{0}")]
    InRecipe(Box<crate::recipe::Diagnostic>),
    #[error("the lock file's packages do not match the recipe ({detail})")]
    StaleLock { detail: String },
    #[error("the lock file pins {what}, but {detail}")]
    LockMismatch { what: String, detail: String },
    #[error("the base image's dpkg status {file} cannot be read: {detail}")]
    BadBaseStatus { file: String, detail: String },
    #[error("package `{package}` is installed in the base image at {base_version}; the recipe's repositories have it only at {candidate_version}, so installing it ({chain}) would downgrade it")]
    Downgrade {
        package: String,
        base_version: String,
        candidate_version: String,
        chain: String,
    },
}

impl Diagnose for DebianError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        let hint = match self {
            DebianError::Architecture { .. } => "use linux/amd64, linux/arm64, linux/arm/v7, linux/386, linux/ppc64le, linux/s390x or linux/riscv64",
            DebianError::Keyring { .. } => "give an OpenPGP keyring (binary .gpg or armored .asc), e.g. /usr/share/keyrings/debian-archive-keyring.gpg",
            DebianError::Signature { .. } => "cairn installs only from repositories whose InRelease verifies with the recipe's keyring; check the mirror and the `keyring:`",
            DebianError::Expired { .. } => "the mirror serves stale metadata (or a replayed one): use an up-to-date mirror (a `mirror: host` repository accepts an expired Release only where the host's apt configuration does: `Acquire::Check-Valid-Until \"false\"`)",
            DebianError::NoIndex { .. } => "check `suite`, `components` and the platform architecture",
            DebianError::Unsatisfiable { .. } => "check the package names, or add the repository (or component) that has it",
            DebianError::Conflict { .. } => "request only one of them (a dependency that allows alternatives can be met by naming the other alternative in `packages:`)",
            DebianError::BaseConflict { base_package, .. } => {
                return Some(format!("a layer cannot remove the base's `{base_package}`: request a version (or another alternative) that does not conflict, or build on a base without `{base_package}`").into())
            }
            DebianError::DigestMismatch { .. } => "the mirror or the cache served other bytes than the signed metadata promises; nothing was installed",
            DebianError::Offline { .. } => "build once without --offline (or run `cairn lock`) to fill the cache",
            DebianError::NoHostMirror { .. } => "add it to /etc/apt/sources.list(.d), or give `mirror:` a URL",
            DebianError::StaleLock { .. } => "--locked builds use only the lock; run `cairn lock` and commit the lock file",
            DebianError::LockMismatch { .. } => "the lock and the repository disagree: run `cairn lock --update` to re-resolve, or build where the package cache still holds the pinned files",
            DebianError::BadBaseStatus { .. } => "cairn reads the base's installed packages from its dpkg status to build on them; use a base image whose dpkg status is intact",
            DebianError::Downgrade { package, .. } => {
                return Some(format!("the base's version comes from a suite the recipe does not list: add it to `packages.repositories` (e.g. `bookworm-security` or `bookworm-updates` beside `bookworm`), or, if `{package}` is requested, drop it from `packages:` to keep the base's").into())
            }
            DebianError::InRepository { source, .. } => return source.hint(),
            DebianError::InRecipe(diagnostic) => return diagnostic.hint(),
            _ => return None,
        };
        Some(hint.into())
    }

    fn location(&self) -> Option<Location<'_>> {
        match self {
            DebianError::InRepository { source, .. } => source.location(),
            DebianError::InRecipe(diagnostic) => diagnostic.location(),
            _ => None,
        }
    }
}

impl DebianError {
    fn in_repository(self, repository: &str) -> DebianError {
        DebianError::InRepository {
            repository: repository.to_string(),
            source: Box::new(self),
        }
    }

    /// This error as a diagnostic in the recipe: at the repository it concerns, else
    /// at `packages:`, with this error's hint.
    pub fn in_recipe(self, recipe: &Recipe, spec: &PackagesSpec) -> DebianError {
        let span = match &self {
            DebianError::InRepository { repository, .. } => spec
                .repositories
                .get(repository)
                .map_or(spec.span, |r| r.span),
            // A requested package nobody has, or only older than the base's: at its
            // name in the list.
            DebianError::Unsatisfiable { wanted, .. }
            | DebianError::Downgrade {
                package: wanted, ..
            } => spec
                .requested
                .iter()
                .find(|r| r.name == *wanted)
                .map_or(spec.span, |r| r.span),
            _ => spec.span,
        };
        let hint = self.hint().map_or_else(
            || "see the Debian packages section of the README".to_string(),
            Cow::into_owned,
        );
        DebianError::InRecipe(Box::new(
            crate::recipe::Diagnostic::new(&recipe.file, span, self.to_string()).with_hint(hint),
        ))
    }
}

/// The Debian architecture of an OCI platform.
pub fn debian_arch(platform: &Platform) -> Result<&'static str, DebianError> {
    Ok(
        match (platform.architecture.as_str(), platform.variant.as_deref()) {
            ("amd64", _) => "amd64",
            ("arm64", _) => "arm64",
            ("arm", Some("v7")) => "armhf",
            ("arm", Some("v5")) => "armel",
            ("386", _) => "i386",
            ("ppc64le", _) => "ppc64el",
            ("s390x", _) => "s390x",
            ("riscv64", _) => "riscv64",
            (other, _) => return Err(DebianError::Architecture(other.to_string())),
        },
    )
}

/// Where the pins of the packages come from: the caller (`resolve`) decides, by its
/// lock mode and [`matching_lock`].
#[derive(Debug, Clone, Copy)]
pub enum Pins<'a> {
    /// The lock file's pins, which match the recipe.
    Locked(&'a PackagesLock),
    /// Resolved now from the repositories, on top of the base image's installed
    /// packages if there is a base; with `warn`, a warning says they were not pinned
    /// before.
    Resolve {
        warn: bool,
        base: Option<OnBase<'a>>,
    },
}

/// The base image packages are resolved on: its pinned digest and its installed
/// packages.
#[derive(Debug, Clone, Copy)]
pub struct OnBase<'a> {
    pub digest: Sha256Digest,
    pub installed: &'a status::BasePackages,
}

/// The InReleases one resolution fetched, each by its URL: an image index resolves
/// its packages once per platform, and each repository's InRelease is fetched once and
/// shared, so that every platform's section pins the same InRelease even if the
/// mirror publishes a new one meanwhile.
#[derive(Debug, Default)]
pub struct FetchedReleases(BTreeMap<String, Sha256Digest>);

/// The packages the recipe requests, sorted by name.
fn requested_names(spec: &PackagesSpec) -> Vec<String> {
    let mut requested: Vec<String> = spec.requested.iter().map(|r| r.name.clone()).collect();
    requested.sort();
    requested
}

/// `existing` if it pins what the recipe asks for now (the same packages, repositories
/// and architecture) on the base pinned at `base` (if any).
pub fn matching_lock<'a>(
    recipe: &Recipe,
    spec: &PackagesSpec,
    existing: Option<&'a PackagesLock>,
    base: Option<Sha256Digest>,
) -> Result<Option<&'a PackagesLock>, DebianError> {
    let arch = debian_arch(&recipe.platform)?;
    let requested = requested_names(spec);
    Ok(existing.filter(|l| l.base == base && lock_matches(l, spec, arch, &requested)))
}

/// Resolves (or takes from the lock, per `pins`), fetches and unpacks the recipe's
/// packages. `staging` receives the unpacked files (content-addressed) and must
/// outlive the returned trees. Resolving takes an InRelease from `releases` when this
/// resolution already fetched it, and adds those it fetches.
pub fn install(
    recipe: &Recipe,
    spec: &PackagesSpec,
    pins: Pins,
    opts: &PackageOptions,
    staging: &Path,
    progress: &dyn DownloadProgress,
    releases: &mut FetchedReleases,
) -> Result<InstalledPackages, DebianError> {
    let arch = debian_arch(&recipe.platform)?;
    let fetcher = Fetcher::new(&opts.cache_dir, opts.offline);
    let requested = requested_names(spec);
    let mut warnings = Vec::new();
    let (lock, resolved) = match pins {
        Pins::Locked(l) => (l.clone(), false),
        Pins::Resolve { warn, base } => {
            let lock = resolve(
                spec, arch, requested, base, opts, &fetcher, recipe, releases,
            )?;
            if warn {
                warnings.push(format!(
                    "packages were not pinned; resolved {} packages and pinned them in the lock file",
                    lock.packages.len()
                ));
            }
            (lock, true)
        }
    };
    // The chain is checked again on every build, resolved or locked: the InRelease
    // verifies with the keyring and names the index, which named the .deb.
    let releases =
        verify_locked_releases(recipe, spec, &lock, opts, &fetcher, resolved, &mut warnings)?;
    let debs = download_debs(spec, &lock, opts, &fetcher, progress)?;
    std::fs::create_dir_all(staging).map_err(|source| DebianError::Cache {
        path: staging.to_path_buf(),
        source,
    })?;
    let line_of = |name: &str| {
        spec.requested
            .iter()
            .find(|r| r.name == name)
            .map_or(spec.span.line, |r| r.span.line)
    };
    let packages = debs
        .into_par_iter()
        .map(|(name, path)| {
            let pin = &lock.packages[&name];
            let contents = deb::read(&path, &name, staging, recipe.limits)?;
            let license = copyright_license(&contents.tree, &name);
            let (tree, left_out) = path_filter::apply(&spec.path_filters, contents.tree);
            let dpkg_database = match spec.dpkg_database {
                DpkgDatabase::Full => Some(dpkg_database::package_database(
                    &name,
                    &contents.control,
                    &contents.control_members,
                    &tree,
                )?),
                DpkgDatabase::Distroless => None,
            };
            let (alternatives, unread) =
                alternatives::installs_in(contents.postinst.as_deref().unwrap_or_default());
            let unread = unread.into_iter().map(|call| {
                format!("package `{name}`: its postinst calls `{call}`, which cairn cannot read without running the script: that alternative's links are not made")
            });
            let warnings: Vec<String> = unread.collect();
            let scripts = contents
                .scripts
                .into_iter()
                .map(|(script, sha256)| MaintainerScript {
                    done_natively: if script == "postinst" {
                        alternatives.iter().map(alternatives::Install::describe).collect()
                    } else {
                        Vec::new()
                    },
                    name: script,
                    sha256,
                })
                .collect();
            let repo = &lock.repositories[&pin.repository];
            Ok((InstalledPackage {
                line: line_of(&name),
                pin: pin.clone(),
                suite: repo.suite.clone(),
                inrelease_sha256: repo.inrelease_sha256,
                signed_by: releases[&pin.repository].clone(),
                control: contents.control,
                md5sums: contents.md5sums,
                tree,
                left_out,
                alternatives,
                scripts,
                dpkg_database,
                license,
                name,
            }, warnings))
        })
        .collect::<Result<Vec<_>, DebianError>>()?;
    let (packages, unread): (Vec<_>, Vec<_>) = packages.into_iter().unzip();
    warnings.extend(unread.into_iter().flatten());
    Ok(InstalledPackages {
        packages,
        lock,
        warnings,
        ca_certificates: None,
        ld_so_cache: None,
        accounts: None,
    })
}

fn lock_matches(
    lock: &PackagesLock,
    spec: &PackagesSpec,
    arch: &str,
    requested: &[String],
) -> bool {
    lock.architecture == arch
        && lock.requested == requested
        && lock.repositories.len() == spec.repositories.len()
        && spec.repositories.values().all(|r| {
            lock.repositories
                .get(&r.name)
                .is_some_and(|l| l.suite == r.suite && l.components == r.components)
        })
}

/// The archive root URL of `repo`.
fn mirror_url(repo: &RepositorySpec, opts: &PackageOptions) -> Result<String, DebianError> {
    match &repo.mirror {
        Mirror::Url(url) => Ok(url.clone()),
        Mirror::Host => apt_sources::mirror_for(&opts.host_sources, &repo.suite)
            .map(|source| source.uri.clone())
            .ok_or_else(|| DebianError::NoHostMirror {
                repository: repo.name.clone(),
                suite: repo.suite.clone(),
            }),
    }
}

/// Why `repo`'s Release is not checked for expiry, if it is not: a `mirror: host`
/// repository follows the host's apt configuration (the source's own
/// `check-valid-until`, else `Acquire::Check-Valid-Until`), as it follows the host's
/// choice of mirror. A mirror the recipe names is always checked.
fn valid_until_off(repo: &RepositorySpec, opts: &PackageOptions) -> Option<String> {
    if repo.mirror != Mirror::Host {
        return None;
    }
    let source = apt_sources::mirror_for(&opts.host_sources, &repo.suite)?;
    match source.check_valid_until {
        Some(false) => Some(format!(
            "`check-valid-until=no` on the host's apt source {}",
            source.uri
        )),
        Some(true) => None,
        None => opts.host_valid_until_off.as_ref().map(|file| {
            format!(
                "`{}` false in {}",
                apt_conf::CHECK_VALID_UNTIL,
                file.display()
            )
        }),
    }
}

fn keyring(recipe: &Recipe, repo: &RepositorySpec) -> Result<Vec<u8>, DebianError> {
    let path = recipe.file.dir.join(&repo.keyring);
    std::fs::read(&path).map_err(|e| DebianError::Keyring {
        keyring: repo.keyring.clone(),
        detail: e.to_string(),
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, DebianError> {
    std::fs::read(path).map_err(|source| DebianError::Cache {
        path: path.to_path_buf(),
        source,
    })
}

/// Fetches and verifies each repository's InRelease and Packages indexes, and
/// resolves the request against them.
#[allow(clippy::too_many_arguments)]
fn resolve(
    spec: &PackagesSpec,
    arch: &str,
    requested: Vec<String>,
    base: Option<OnBase<'_>>,
    opts: &PackageOptions,
    fetcher: &Fetcher,
    recipe: &Recipe,
    releases: &mut FetchedReleases,
) -> Result<PackagesLock, DebianError> {
    let mut candidates = Vec::new();
    let mut repositories = BTreeMap::new();
    for repo in spec.repositories.values() {
        let (found, locked) = fetch_repository(repo, arch, opts, fetcher, recipe, releases)
            .map_err(|e| e.in_repository(&repo.name))?;
        candidates.extend(found);
        repositories.insert(repo.name.clone(), locked);
    }
    let pool = solver::Pool::new(candidates);
    let no_base = status::BasePackages::default();
    let solution = solver::solve(&pool, &requested, base.map_or(&no_base, |b| b.installed))?;
    let packages = solution
        .chosen
        .into_iter()
        .map(|(name, c)| {
            (
                name,
                LockedPackage {
                    version: c.version.to_string(),
                    architecture: if c.arch_all { "all" } else { arch }.to_string(),
                    repository: c.origin.repository.clone(),
                    filename: c.filename,
                    sha256: c.sha256,
                    size: c.size,
                    index: c.origin.path.clone(),
                    index_sha256: c.origin.sha256,
                },
            )
        })
        .collect();
    Ok(PackagesLock {
        architecture: arch.to_string(),
        requested,
        repositories,
        packages,
        base: base.map(|b| b.digest),
        from_base: solution
            .from_base
            .into_iter()
            .map(|(name, version)| (name, version.to_string()))
            .collect(),
    })
}

/// One repository's verified InRelease and the candidates of its indexes.
fn fetch_repository(
    repo: &RepositorySpec,
    arch: &str,
    opts: &PackageOptions,
    fetcher: &Fetcher,
    recipe: &Recipe,
    releases: &mut FetchedReleases,
) -> Result<(Vec<index::Candidate>, LockedRepository), DebianError> {
    let mut candidates = Vec::new();
    let base = mirror_url(repo, opts)?;
    let dists = format!("{base}/dists/{}", repo.suite);
    let what = "its InRelease";
    let url = format!("{dists}/InRelease");
    // Fetched already in this resolution: the cache has it under its digest.
    let fetched = releases.0.get(&url).map(|sha256| (*sha256, None));
    let (path, inrelease_sha256) = fetcher.get(what, fetched, || Ok(vec![url.clone()]), &|_| {})?;
    releases.0.insert(url, inrelease_sha256);
    let release = release::verify(
        &read_file(&path)?,
        &keyring(recipe, repo)?,
        &repo.keyring,
        opts.now,
        valid_until_off(repo, opts).is_none(),
    )?;
    for component in &repo.components {
        let (index, (sha256, size)) = ["xz", "gz", ""]
            .iter()
            .map(|ext| {
                let dot = if ext.is_empty() { "" } else { "." };
                format!("{component}/binary-{arch}/Packages{dot}{ext}")
            })
            .find_map(|p| release.sha256.get(&p).map(|d| (p, *d)))
            .ok_or_else(|| DebianError::NoIndex {
                repository: repo.name.clone(),
                component: component.clone(),
                architecture: arch.to_string(),
            })?;
        let what = format!("its Packages index {index}");
        let (path, _) = fetcher.get(
            &what,
            Some((sha256, Some(size))),
            || Ok(index_urls(&dists, &index, &sha256, release.by_hash)),
            &|_| {},
        )?;
        let origin = std::sync::Arc::new(index::IndexOrigin {
            repository: repo.name.clone(),
            path: index.clone(),
            sha256,
        });
        let text = decompress_index(&path, &index)?;
        candidates.extend(index::parse_index(&text, arch, &origin)?);
    }
    Ok((
        candidates,
        LockedRepository {
            suite: repo.suite.clone(),
            components: repo.components.clone(),
            inrelease_sha256,
            signed_by: release.signer,
        },
    ))
}

/// Where an index of `dists` is downloaded from: by its digest first when the Release
/// offers that (`Acquire-By-Hash`), as apt does, since a mirror being updated may
/// already serve a newer file under the index's own name; then by that name.
fn index_urls(dists: &str, index: &str, sha256: &Sha256Digest, by_hash: bool) -> Vec<String> {
    let by_name = format!("{dists}/{index}");
    match index.rsplit_once('/') {
        Some((directory, _)) if by_hash => vec![
            format!("{dists}/{directory}/by-hash/SHA256/{}", sha256.hex()),
            by_name,
        ],
        _ => vec![by_name],
    }
}

/// The decompressed index text.
fn decompress_index(path: &Path, index: &str) -> Result<String, DebianError> {
    let file = std::fs::File::open(path).map_err(|source| DebianError::Cache {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = std::io::BufReader::new(file);
    let mut decoded: Box<dyn Read> = if index.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(reader))
    } else if index.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    let mut text = String::new();
    decoded
        .read_to_string(&mut text)
        .map_err(|e| DebianError::BadIndex {
            index: index.to_string(),
            detail: e.to_string(),
        })?;
    Ok(text)
}

/// Verifies each locked repository's InRelease (from the cache, or downloaded and
/// checked against the locked digest) with the recipe's keyring, checks it was
/// signed by the locked key and lists every locked index with the locked digest.
/// Returns each repository's signer. Expiry is checked only when the lock was just
/// resolved: a lock rebuilds later from a Release that was valid when it was pinned.
/// An expired Release the host's apt configuration accepts adds to `warnings`.
fn verify_locked_releases(
    recipe: &Recipe,
    spec: &PackagesSpec,
    lock: &PackagesLock,
    opts: &PackageOptions,
    fetcher: &Fetcher,
    just_resolved: bool,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, DebianError> {
    if let Some((pkg, pin)) = lock
        .packages
        .iter()
        .find(|(_, p)| !lock.repositories.contains_key(&p.repository))
    {
        return Err(DebianError::StaleLock {
            detail: format!(
                "package `{pkg}` is pinned from repository `{}`, which the lock does not list",
                pin.repository
            ),
        });
    }
    let mut signers = BTreeMap::new();
    for (name, locked) in &lock.repositories {
        let repo = spec
            .repositories
            .get(name)
            .ok_or_else(|| DebianError::StaleLock {
                detail: format!("the recipe has no repository `{name}`"),
            })?;
        let mut check = || -> Result<String, DebianError> {
            let what = "its InRelease";
            let (path, _) = fetcher.get(
                what,
                Some((locked.inrelease_sha256, None)),
                || {
                    Ok(vec![format!(
                        "{}/dists/{}/InRelease",
                        mirror_url(repo, opts)?,
                        repo.suite
                    )])
                },
                &|_| {},
            )
            .map_err(|e| match e {
                DebianError::DigestMismatch { actual, .. } => DebianError::LockMismatch {
                    what: format!("its InRelease as {}", locked.inrelease_sha256),
                    detail: format!(
                        "the mirror now serves {actual}: it has published a new Release since the lock was made, and the pinned one is not in the package cache"
                    ),
                },
                other => other,
            })?;
            let unchecked = valid_until_off(repo, opts);
            let release = release::verify(
                &read_file(&path)?,
                &keyring(recipe, repo)?,
                &repo.keyring,
                opts.now,
                just_resolved && unchecked.is_none(),
            )?;
            if let (true, Some(why), Some(until)) = (just_resolved, &unchecked, release.valid_until)
            {
                if until < opts.now {
                    warnings.push(format!(
                        "repository `{name}`: its Release expired on {}; used anyway, as the host's apt configuration says ({why})",
                        release::rfc2822(until)
                    ));
                }
            }
            if release.signer != locked.signed_by {
                return Err(DebianError::LockMismatch {
                    what: format!("repository `{name}` as signed by {}", locked.signed_by),
                    detail: format!("its InRelease is signed by {}", release.signer),
                });
            }
            for (pkg, pin) in lock.packages.iter().filter(|(_, p)| p.repository == *name) {
                match release.sha256.get(&pin.index) {
                    Some((d, _)) if *d == pin.index_sha256 => {}
                    other => {
                        return Err(DebianError::LockMismatch {
                            what: format!(
                                "package `{pkg}` from index {} ({})",
                                pin.index, pin.index_sha256
                            ),
                            detail: match other {
                                Some((d, _)) => {
                                    format!("the signed InRelease gives that index as {d}")
                                }
                                None => "the signed InRelease does not list that index".into(),
                            },
                        })
                    }
                }
            }
            Ok(release.signer)
        };
        let signer = check().map_err(|e| e.in_repository(name))?;
        signers.insert(name.clone(), signer);
    }
    Ok(signers)
}

/// Every locked .deb as a verified file in the cache, downloading what is missing in
/// parallel. Sorted by package name.
fn download_debs(
    spec: &PackagesSpec,
    lock: &PackagesLock,
    opts: &PackageOptions,
    fetcher: &Fetcher,
    progress: &dyn DownloadProgress,
) -> Result<Vec<(String, PathBuf)>, DebianError> {
    let mut have = Vec::new();
    let mut missing = Vec::new();
    for (name, pin) in &lock.packages {
        match fetcher.cached(&pin.sha256) {
            Some(path) => have.push((name.clone(), path)),
            None => missing.push((name, pin)),
        }
    }
    if !missing.is_empty() {
        let bytes = missing.iter().map(|(_, p)| p.size).sum();
        progress.downloads_started(missing.len(), bytes);
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let workers = missing.len().min(8);
        let results = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let tx = tx.clone();
                    let (next, missing) = (&next, &missing);
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some((name, pin)) = missing.get(i) else {
                                break;
                            };
                            let repo = &spec.repositories[&pin.repository];
                            let got = fetcher.get(
                                &format!("package `{name}` {} ({})", pin.version, pin.filename),
                                Some((pin.sha256, Some(pin.size))),
                                || {
                                    Ok(vec![format!(
                                        "{}/{}",
                                        mirror_url(repo, opts)?,
                                        pin.filename
                                    )])
                                },
                                &|n| {
                                    let _ = tx.send(n);
                                },
                            );
                            let failed = got.is_err();
                            out.push(got.map(|(path, _)| ((*name).clone(), path)));
                            if failed {
                                break;
                            }
                        }
                        out
                    })
                })
                .collect();
            drop(tx);
            for n in rx {
                progress.downloaded(n);
            }
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(DebianError::BadDeb {
                            package: "(download worker)".into(),
                            detail: "a download thread panicked".into(),
                        })]
                    })
                })
                .collect::<Vec<_>>()
        });
        progress.downloads_finished();
        for r in results {
            have.push(r?);
        }
    }
    have.sort();
    Ok(have)
}

/// The SPDX expression of the package's machine-readable copyright file, if any.
fn copyright_license(tree: &SourceTree, name: &str) -> Option<String> {
    let wanted = format!("usr/share/doc/{name}/copyright");
    let entry = tree.entries.iter().find(|e| *e.rel_path == *wanted)?;
    let SourceEntryKind::File(content) = &entry.kind else {
        return None;
    };
    let text = std::fs::read_to_string(content.path()).ok()?;
    copyright::license_expression(&text)
}

#[cfg(test)]
mod tests;
