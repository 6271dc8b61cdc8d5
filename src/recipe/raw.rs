//! The recipe as written: serde types for schema v1 that keep the position of every
//! value (`Spanned`) and refuse unknown fields. Nothing here is validated beyond YAML
//! types; fields are optional so that a missing one is reported by the validator
//! with a message of our own, at the enclosing mapping.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::fmt;
use std::marker::PhantomData;

pub(super) type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecipe {
    /// Kept as text so that `cairn: 2` or `cairn: one` get our own message.
    pub cairn: Option<Text>,
    pub name: Option<Text>,
    pub epoch: Option<Spanned<u64>>,
    pub platform: Option<Text>,
    pub platforms: Option<Spanned<Vec<Text>>>,
    pub base: Option<Spanned<RawBase>>,
    pub sources: Option<Spanned<SpannedMap<Spanned<RawSource>>>>,
    pub layers: Option<Spanned<Vec<Spanned<RawLayer>>>>,
    pub accounts: Option<RawAccounts>,
    pub config: Option<RawConfig>,
    pub annotations: Option<SpannedMap<Text>>,
    pub sbom: Option<Spanned<bool>>,
    pub compression: Option<Text>,
    pub vm: Option<Spanned<RawVm>>,
    pub repositories: Option<Spanned<SpannedMap<Spanned<RawRepository>>>>,
    pub packages: Option<Spanned<Vec<Text>>>,
    pub layering: Option<Spanned<RawLayering>>,
    pub path_filters: Option<Spanned<Vec<Spanned<RawPathFilter>>>>,
    pub extra_ca_certificates: Option<Spanned<Vec<Spanned<RawExtraCa>>>>,
    pub dpkg_database: Option<Text>,
    pub limits: Option<Spanned<RawLimits>>,
}

/// One of `path_filters:`: `{ exclude: GLOB }` or `{ include: GLOB }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPathFilter {
    pub exclude: Option<Text>,
    pub include: Option<Text>,
}

/// One of `extra_ca_certificates:`: `{ source: NAME }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExtraCa {
    pub source: Option<Text>,
}

/// `limits:` — how much each untrusted archive (an archive source, a base image) may
/// hold. The byte limit is text so that `8GiB` can be written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub entries: Option<Spanned<u64>>,
    pub bytes: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRepository {
    pub mirror: Option<Text>,
    pub suite: Option<Text>,
    pub components: Option<Spanned<Vec<Text>>>,
    pub keyring: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLayering {
    pub max_layers: Option<Spanned<u32>>,
}

/// `vm:` — a bootable disk built from the image's root file system.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVm {
    pub kernel: Option<Spanned<RawVmFile>>,
    pub initrd: Option<Spanned<RawVmInitrd>>,
    pub cmdline: Option<Text>,
    pub root: Option<Spanned<RawVmRoot>>,
    pub boot: Option<Text>,
    pub stub: Option<Spanned<RawVmFile>>,
    pub formats: Option<Spanned<Vec<Text>>>,
    pub secure_boot: Option<Spanned<RawSecureBoot>>,
}

/// `secure_boot: { key, cert }` under `vm:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecureBoot {
    pub key: Option<Text>,
    pub cert: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVmFile {
    pub source: Option<Text>,
    pub path: Option<Text>,
}

/// `initrd:` under `vm:`: a file, as `kernel:` names one (`source`, `path`), or one
/// cairn builds from files of the image (`init`, `files`, `modules`, `compression`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVmInitrd {
    pub source: Option<Text>,
    pub path: Option<Text>,
    pub init: Option<Text>,
    pub files: Option<Spanned<Vec<Text>>>,
    pub modules: Option<Spanned<Vec<Text>>>,
    pub compression: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVmRoot {
    pub fs: Option<Text>,
    pub size: Option<Text>,
    pub verity: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub path: Option<Text>,
    pub archive: Option<Text>,
    pub sha256: Option<Text>,
    pub license: Option<Text>,
    pub signature: Option<Spanned<RawSignature>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBase {
    pub layout: Option<Text>,
    #[serde(rename = "ref")]
    pub reference: Option<Text>,
    pub digest: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignature {
    pub path: Option<Text>,
    pub key: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLayer {
    pub name: Option<Text>,
    pub contents: Option<Spanned<Vec<Spanned<RawOp>>>>,
    pub compression: Option<Text>,
}

/// One op, kept as its keys and values in written order. Which keys are allowed
/// depends on the op key present (`copy`, `dir`, ...), so the validator checks them
/// and can say "`content` does not belong to a `dir` op" at the key itself. Every op
/// value is a scalar.
pub(super) type RawOp = SpannedMap<Text>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccounts {
    pub groups: Option<Vec<Spanned<RawGroup>>>,
    pub users: Option<Vec<Spanned<RawUser>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub name: Option<Text>,
    pub gid: Option<Spanned<u32>>,
    pub members: Option<Vec<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub name: Option<Text>,
    pub uid: Option<Spanned<u32>>,
    pub gid: Option<Spanned<u32>>,
    pub home: Option<Text>,
    pub shell: Option<Text>,
    pub gecos: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub entrypoint: Option<Vec<Text>>,
    pub cmd: Option<Vec<Text>>,
    pub env: Option<SpannedMap<Text>>,
    pub workdir: Option<Text>,
    pub user: Option<Text>,
    pub labels: Option<SpannedMap<Text>>,
    pub exposed_ports: Option<Vec<Text>>,
    pub volumes: Option<Vec<Text>>,
    pub stop_signal: Option<Text>,
}

/// A string-keyed mapping whose keys keep their positions, in written order.
/// (Duplicate keys never get here: the YAML reader refuses them.)
#[derive(Debug)]
pub(super) struct SpannedMap<V>(pub Vec<(Text, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SpannedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = SpannedMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Text>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(SpannedMap(entries))
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}
