//! `<recipe>.lock`: the digest of every source, so a recipe without inline pins still
//! builds from exactly the bytes it was locked with.
//!
//! JSON, pretty-printed with sorted keys so that a change reads well in a diff:
//! `{"cairn_lock": 1, "sources": {"app": {"kind": "file", "sha256": "sha256:…"}}}`,
//! plus `"tools": {"mksquashfs": "mksquashfs version 4.5.1 ..."}` when a VM disk runs a host tool.
//! plus `packages` ([`crate::debian::lock`]) when the recipe installs Debian packages:
//! one section, or one per platform for an image index over several platforms.

use crate::diag::Diagnose;
use crate::digest::Sha256Digest;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lockfile {
    pub cairn_lock: u32,
    /// Keyed by source name; a source with `{arch}` in its path has one entry per
    /// platform, keyed `<name>@<os>/<arch>[/<variant>]` (see [`source_lock_key`]).
    pub sources: BTreeMap<String, LockedSource>,
    /// The base image's pinned digest, when the recipe has a base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<LockedBase>,
    /// Host tools whose version may change output bytes (VM disks): name -> the
    /// version line the tool prints. Absent when a recipe runs no tools.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, String>,
    /// Debian packages, when the recipe installs some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<crate::debian::lock::PackageSections>,
}

impl Default for Lockfile {
    fn default() -> Self {
        Lockfile {
            cairn_lock: LOCK_VERSION,
            sources: BTreeMap::new(),
            base: None,
            tools: BTreeMap::new(),
            packages: None,
        }
    }
}

/// `"base": {"reference": "registry.example/debian:12", "digest": "sha256:…"}`: the
/// digest (a manifest or an index) the reference resolved to when it was pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedBase {
    /// `layout:<path>` or `registry/repository[:tag]`, as the recipe names the base.
    pub reference: String,
    pub digest: Sha256Digest,
}

/// The lock file key of source `name` when building for `platform`: the name itself,
/// or `<name>@<platform>` for a source whose path has `{arch}` (each platform reads
/// its own file, so each is pinned on its own).
pub fn source_lock_key(
    name: &str,
    per_platform: bool,
    platform: &crate::recipe::Platform,
) -> String {
    if per_platform {
        format!("{name}@{platform}")
    } else {
        name.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedSource {
    pub kind: LockedKind,
    pub sha256: Sha256Digest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockedKind {
    File,
    Dir,
    Archive,
    /// A Debian package (never in the lock's `sources`; see `packages`).
    Deb,
}

impl std::fmt::Display for LockedKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LockedKind::File => "file",
            LockedKind::Dir => "dir",
            LockedKind::Archive => "archive",
            LockedKind::Deb => "deb",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read lock file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lock file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("lock file {path} has version {found}; this cairn reads version {LOCK_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write lock file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Diagnose for LockError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            LockError::Parse { .. } | LockError::Version { .. } => {
                Some("regenerate it with `cairn lock <recipe>`".into())
            }
            LockError::Read { .. } | LockError::Write { .. } => None,
        }
    }
}

/// `dir/hello.yaml` -> `dir/hello.lock`.
pub fn lock_path_for(recipe_path: &Path) -> PathBuf {
    recipe_path.with_extension("lock")
}

impl Lockfile {
    /// Reads the lock file; a missing file is an empty lock.
    pub fn read(path: &Path) -> Result<Lockfile, LockError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lockfile::default()),
            Err(source) => {
                return Err(LockError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        let lock: Lockfile = serde_json::from_slice(&bytes).map_err(|source| LockError::Parse {
            path: path.into(),
            source,
        })?;
        if lock.cairn_lock != LOCK_VERSION {
            return Err(LockError::Version {
                path: path.into(),
                found: lock.cairn_lock,
            });
        }
        Ok(lock)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Struct fields serialise in declaration order and maps are BTreeMaps, so the
        // bytes are stable.
        let mut out = serde_json::to_vec_pretty(self).expect("lock file serialises");
        out.push(b'\n');
        out
    }

    /// Replaces the lock file atomically (temp file + rename).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        crate::oci::layout::write_file_atomically(path, &self.to_bytes()).map_err(|source| {
            LockError::Write {
                path: path.into(),
                source,
            }
        })
    }
}

/// A pin that differs between two locks: what it pins (`source app`, `base`, `tool
/// mke2fs`, `repository debian`, `deb:libssl3`), as the older and the newer lock have
/// it (`-` where one has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinChange {
    pub what: String,
    pub old: String,
    pub new: String,
}

impl Lockfile {
    /// Every pin that differs from this (older) lock to `newer`: sources, the base
    /// image, tools, package repositories, packages and the base's packages the
    /// resolution kept, each sorted by name. A
    /// package shows its version (and its digest only when the version stayed): the
    /// list a security rebuild is reviewed by.
    pub fn changes_to(&self, newer: &Lockfile) -> Vec<PinChange> {
        let mut out = Vec::new();
        let source = |s: &LockedSource| format!("{} {}", s.kind, s.sha256);
        let (a, b) = (Some(&self.sources), Some(&newer.sources));
        diff_pins(&mut out, "source ", a, b, source, source);
        let base = |l: &Lockfile| -> BTreeMap<String, LockedBase> {
            l.base.iter().map(|b| ("base".into(), b.clone())).collect()
        };
        let describe = |b: &LockedBase| format!("{} {}", b.reference, b.digest);
        let (a, b) = (base(self), base(newer));
        diff_pins(&mut out, "", Some(&a), Some(&b), describe, describe);
        let (a, b) = (Some(&self.tools), Some(&newer.tools));
        diff_pins(&mut out, "tool ", a, b, String::clone, String::clone);
        let (a, b) = (package_pins(self), package_pins(newer));
        diff_pins(
            &mut out,
            "repository ",
            Some(&a.repositories),
            Some(&b.repositories),
            |r| format!("{} (InRelease {})", r.suite, r.inrelease_sha256),
            |r| format!("signed by {}", r.signed_by),
        );
        diff_pins(
            &mut out,
            "deb:",
            Some(&a.packages),
            Some(&b.packages),
            |p| format!("{} {}", p.version, p.architecture),
            |p| p.sha256.to_string(),
        );
        // The base's packages the resolution kept: a new base can change them.
        diff_pins(
            &mut out,
            "base deb:",
            Some(&a.from_base),
            Some(&b.from_base),
            |version| version.to_string(),
            |_| String::new(),
        );
        out
    }
}

/// The repositories and packages `lock` pins, by name; in a lock with a section per
/// platform, by `<name>@<platform>`, as sources read per platform are keyed.
fn package_pins(lock: &Lockfile) -> PackagePins<'_> {
    let mut repositories = BTreeMap::new();
    let mut packages = BTreeMap::new();
    let mut from_base = BTreeMap::new();
    for (platform, section) in lock.packages.iter().flat_map(|p| p.sections()) {
        let key = |name: &str| match platform {
            Some(platform) => format!("{name}@{platform}"),
            None => name.to_string(),
        };
        repositories.extend(section.repositories.iter().map(|(n, r)| (key(n), r)));
        packages.extend(section.packages.iter().map(|(n, p)| (key(n), p)));
        from_base.extend(section.from_base.iter().map(|(n, v)| (key(n), v)));
    }
    PackagePins {
        repositories,
        packages,
        from_base,
    }
}

struct PackagePins<'a> {
    repositories: BTreeMap<String, &'a crate::debian::lock::LockedRepository>,
    packages: BTreeMap<String, &'a crate::debian::lock::LockedPackage>,
    /// The base image's packages the resolution kept: name -> version.
    from_base: BTreeMap<String, &'a String>,
}

/// Adds to `out` a change for every name whose value, as `describe` and `detail` show
/// it, differs between `old` and `new` (either may be absent); `detail` is shown only
/// where `describe` alone shows no difference. What neither shows is not a change (a
/// package listed by a new `Packages` index, itself the same package).
fn diff_pins<T>(
    out: &mut Vec<PinChange>,
    prefix: &str,
    old: Option<&BTreeMap<String, T>>,
    new: Option<&BTreeMap<String, T>>,
    describe: impl Fn(&T) -> String,
    detail: impl Fn(&T) -> String,
) {
    let names: std::collections::BTreeSet<&String> = old
        .into_iter()
        .chain(new)
        .flat_map(BTreeMap::keys)
        .collect();
    for name in names {
        let shown = |map: Option<&BTreeMap<String, T>>| {
            map.and_then(|m| m.get(name))
                .map(|v| (describe(v), detail(v)))
        };
        let (a, b) = (shown(old), shown(new));
        if a == b {
            continue;
        }
        let (old, new) = match (a, b) {
            (Some((a, x)), Some((b, y))) if a == b => (format!("{a} {x}"), format!("{b} {y}")),
            (a, b) => {
                let brief = |v: Option<(String, String)>| v.map_or_else(|| "-".into(), |v| v.0);
                (brief(a), brief(b))
            }
        };
        out.push(PinChange {
            what: format!("{prefix}{name}"),
            old,
            new,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_missing_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.lock");
        assert_eq!(Lockfile::read(&path).unwrap(), Lockfile::default());
        let mut lock = Lockfile::default();
        lock.sources.insert(
            "app".into(),
            LockedSource {
                kind: LockedKind::File,
                sha256: Sha256Digest::of(b"x"),
            },
        );
        lock.write(&path).unwrap();
        assert_eq!(Lockfile::read(&path).unwrap(), lock);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\n  \"cairn_lock\": 1,"), "{text}");
    }

    #[test]
    fn changes_list_each_pin_that_differs_with_package_versions_and_digests_only_when_needed() {
        use crate::debian::lock::{LockedPackage, PackageSections, PackagesLock};
        let package = |version: &str, bytes: &[u8], index: &str| LockedPackage {
            version: version.into(),
            architecture: "amd64".into(),
            repository: "debian".into(),
            filename: format!("pool/main/x_{version}.deb"),
            sha256: Sha256Digest::of(bytes),
            size: bytes.len() as u64,
            index: "main/binary-amd64/Packages.xz".into(),
            index_sha256: Sha256Digest::of(index.as_bytes()),
        };
        let lock = |packages: Vec<(&str, LockedPackage)>, app: &[u8]| Lockfile {
            sources: [(
                "app".to_string(),
                LockedSource {
                    kind: LockedKind::File,
                    sha256: Sha256Digest::of(app),
                },
            )]
            .into(),
            packages: Some(PackageSections::Single(PackagesLock {
                architecture: "amd64".into(),
                requested: vec!["libssl3".into()],
                repositories: BTreeMap::new(),
                packages: packages
                    .into_iter()
                    .map(|(n, p)| (n.to_string(), p))
                    .collect(),
                base: None,
                from_base: BTreeMap::new(),
            })),
            ..Lockfile::default()
        };
        let old = lock(
            vec![
                ("libssl3", package("3.0.11-1", b"old ssl", "index 1")),
                ("zlib1g", package("1.2.13", b"zlib", "index 1")),
                ("gone", package("1", b"gone", "index 1")),
            ],
            b"app",
        );
        let new = lock(
            vec![
                ("libssl3", package("3.0.15-1", b"new ssl", "index 2")),
                // The same package, listed by a newer index: not a change.
                ("zlib1g", package("1.2.13", b"zlib", "index 2")),
                ("added", package("2", b"added", "index 2")),
            ],
            b"app 2",
        );
        let shown: Vec<String> = old
            .changes_to(&new)
            .iter()
            .map(|c| format!("{}: {} -> {}", c.what, c.old, c.new))
            .collect();
        assert_eq!(
            shown,
            [
                format!(
                    "source app: file {} -> file {}",
                    Sha256Digest::of(b"app"),
                    Sha256Digest::of(b"app 2")
                ),
                "deb:added: - -> 2 amd64".to_string(),
                "deb:gone: 1 amd64 -> -".to_string(),
                "deb:libssl3: 3.0.11-1 amd64 -> 3.0.15-1 amd64".to_string(),
            ]
        );
        // Same version, other bytes: the digests say what changed.
        let rebuilt = lock(
            vec![("libssl3", package("3.0.11-1", b"rebuilt", "index 1"))],
            b"app",
        );
        let same = lock(
            vec![("libssl3", package("3.0.11-1", b"old ssl", "index 1"))],
            b"app",
        );
        let changes = same.changes_to(&rebuilt);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].old,
            format!("3.0.11-1 amd64 {}", Sha256Digest::of(b"old ssl"))
        );
        assert_eq!(
            changes[0].new,
            format!("3.0.11-1 amd64 {}", Sha256Digest::of(b"rebuilt"))
        );
        assert!(same.changes_to(&same).is_empty());
        // A new base image whose own libssl3 the resolution kept.
        let on_base = |version: &str| {
            let mut l = same.clone();
            let Some(PackageSections::Single(packages)) = l.packages.as_mut() else {
                panic!("one section")
            };
            packages.from_base = [("libssl3".to_string(), version.to_string())].into();
            l
        };
        let shown: Vec<String> = on_base("3.0.11-1")
            .changes_to(&on_base("3.0.15-1"))
            .iter()
            .map(|c| format!("{}: {} -> {}", c.what, c.old, c.new))
            .collect();
        assert_eq!(shown, ["base deb:libssl3: 3.0.11-1 -> 3.0.15-1"]);
    }

    #[test]
    fn package_sections_read_in_both_forms_and_name_a_bad_field() {
        use crate::debian::lock::{PackageSections, PackagesLock};
        let section = |arch: &str| PackagesLock {
            architecture: arch.into(),
            requested: vec!["busybox-static".into()],
            repositories: BTreeMap::new(),
            packages: BTreeMap::new(),
            base: None,
            from_base: BTreeMap::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.lock");
        let amd64 = crate::recipe::Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        for sections in [
            PackageSections::Single(section("amd64")),
            PackageSections::PerPlatform(
                [
                    ("linux/amd64".to_string(), section("amd64")),
                    ("linux/arm64".to_string(), section("arm64")),
                ]
                .into(),
            ),
        ] {
            let lock = Lockfile {
                packages: Some(sections),
                ..Lockfile::default()
            };
            lock.write(&path).unwrap();
            let read = Lockfile::read(&path).unwrap();
            assert_eq!(read, lock);
            let sections = read.packages.unwrap();
            assert_eq!(sections.of_platform(&amd64).unwrap().architecture, "amd64");
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"linux/arm64\": {\n      \"architecture\": \"arm64\""),
            "{text}"
        );
        // A typo inside a section is named, in either form.
        for bad in [
            r#"{"cairn_lock": 1, "sources": {}, "packages": {"architecture": "amd64", "requested": [], "repositories": {}, "packges": {}}}"#,
            r#"{"cairn_lock": 1, "sources": {}, "packages": {"linux/arm64": {"architecture": "arm64", "requested": [], "repositories": {}, "packges": {}}}}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = Lockfile::read(&path).unwrap_err().to_string();
            assert!(err.contains("unknown field `packges`"), "{err}");
        }
    }

    #[test]
    fn rejects_other_versions_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.lock");
        std::fs::write(&path, r#"{"cairn_lock": 7, "sources": {}}"#).unwrap();
        let err = Lockfile::read(&path).unwrap_err();
        let err = crate::diag::Report::of(&err).to_string();
        assert!(
            err.contains("version 7") && err.contains("cairn lock"),
            "{err}"
        );
    }
}
