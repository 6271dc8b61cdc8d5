//! The `packages` section of `<recipe>.lock`: what was resolved, pinned so that a
//! locked build needs neither the network nor a resolver, and can check every link of
//! the chain InRelease -> Packages index -> .deb. No mirror URL is recorded: where
//! packages are fetched from is the host's business, what they are is the lock's.

use crate::digest::Sha256Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesLock {
    /// The Debian architecture resolved for.
    pub architecture: String,
    /// The packages the recipe asked for, sorted: a lock for another request is stale.
    pub requested: Vec<String>,
    pub repositories: BTreeMap<String, LockedRepository>,
    /// Every package installed, by name.
    pub packages: BTreeMap<String, LockedPackage>,
    /// The base image resolved on (its pinned digest, as the lock's `base` gives it),
    /// when the recipe has `base:`: its installed packages took part in the
    /// resolution, so a lock resolved on another base is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Sha256Digest>,
    /// The base image's packages that met a request or a dependency, kept rather than
    /// installed again (name -> version); none of them is in `packages`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub from_base: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRepository {
    pub suite: String,
    pub components: Vec<String>,
    /// SHA-256 of the InRelease file as downloaded (signature included).
    pub inrelease_sha256: Sha256Digest,
    /// Fingerprint of the certificate whose key signed it.
    pub signed_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    pub version: String,
    pub architecture: String,
    pub repository: String,
    /// Path of the .deb below the mirror root.
    pub filename: String,
    pub sha256: Sha256Digest,
    pub size: u64,
    /// The Packages index that listed it (path below `dists/<suite>/`) and its
    /// digest, as the InRelease states it.
    pub index: String,
    pub index_sha256: Sha256Digest,
}

/// The lock's `packages`: one section for an image of one platform (the form every
/// lock has had since packages were first locked, so those locks still read and their
/// bytes do not change), or, for an image index over several platforms, one section
/// per platform keyed by the platform (`"linux/arm64"`), each resolved against that
/// architecture's indexes. A recipe whose platforms changed finds no matching section
/// and resolves again (`--locked` refuses it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PackageSections {
    Single(PackagesLock),
    PerPlatform(BTreeMap<String, PackagesLock>),
}

impl PackageSections {
    /// The section `platform` is built from: the one section, or that platform's. The
    /// caller still checks it matches the recipe (architecture included).
    pub fn of_platform(&self, platform: &crate::recipe::Platform) -> Option<&PackagesLock> {
        match self {
            PackageSections::Single(lock) => Some(lock),
            PackageSections::PerPlatform(map) => map.get(&platform.to_string()),
        }
    }

    /// Every section, with its platform key (none for a single section).
    pub fn sections(&self) -> Vec<(Option<&str>, &PackagesLock)> {
        match self {
            PackageSections::Single(lock) => vec![(None, lock)],
            PackageSections::PerPlatform(map) => {
                map.iter().map(|(k, l)| (Some(k.as_str()), l)).collect()
            }
        }
    }
}

/// A single section has `architecture`; a platform key never is that word (it has a
/// `/`), so the two forms never read as each other, and an error inside a section
/// names the field at fault rather than "no variant matched".
impl<'de> Deserialize<'de> for PackageSections {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let single = value.get("architecture").is_some();
        let sections = if single {
            serde_json::from_value(value).map(PackageSections::Single)
        } else {
            serde_json::from_value(value).map(PackageSections::PerPlatform)
        };
        sections.map_err(serde::de::Error::custom)
    }
}
