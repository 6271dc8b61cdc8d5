//! `<recipe>.lock`: the digest of every source, so a recipe without inline pins still
//! builds from exactly the bytes it was locked with.
//!
//! JSON, pretty-printed with sorted keys so that a change reads well in a diff:
//! `{"cairn_lock": 1, "sources": {"app": {"kind": "file", "sha256": "sha256:…"}}}`,
//! plus `"tools": {"mke2fs": "mke2fs 1.47.0 (5-Feb-2023)"}` when a VM disk is built.
//! plus `packages` ([`crate::debian::lock`]) when the recipe installs Debian packages.

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
    pub packages: Option<crate::debian::lock::PackagesLock>,
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
