//! `cairn trace --roothash HEX`: from a running machine to its build. The dm-verity
//! root hash a machine booted with (`roothash=` in its /proc/cmdline) is looked up in
//! the ledger: the `build` entries that recorded a disk with that root hash (image,
//! manifest digest, recipe, disk files, and the key that signed the entry) and the
//! `deploy` entries that deployed it, by root hash or by one of those disks' digests.
//! With trusted keys, only entries whose signature verifies count; without, the
//! entries are shown as they claim, unchecked.

use crate::keys::VerifyingKey;
use crate::ledger::{Action, Entry, Stored};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct RootHashTrace {
    pub roothash: String,
    pub builds: Vec<BuildOfRoot>,
    pub deployments: Vec<DeploymentOfRoot>,
    /// Whether entry signatures were checked against trusted keys.
    pub signatures_checked: bool,
    /// Entries naming the root hash whose signature did not verify, left out.
    pub skipped: u64,
}

#[derive(Debug, Serialize)]
pub struct BuildOfRoot {
    pub seq: u64,
    pub time: String,
    pub image: Option<String>,
    pub manifest_digest: Option<String>,
    pub recipe: Option<String>,
    pub recipe_sha256: Option<String>,
    /// Disk format -> digest of the disk file.
    pub disk_files: BTreeMap<String, String>,
    /// The key id that signed the entry, and the identity it declared.
    pub signer_key_id: String,
    pub signer_identity: String,
}

#[derive(Debug, Serialize)]
pub struct DeploymentOfRoot {
    pub seq: u64,
    pub time: String,
    pub env: Option<String>,
    /// What the entry says was deployed (`roothash=...` or a disk digest).
    pub deployed: String,
    pub identity: String,
}

fn detail(e: &Entry, key: &str) -> Option<String> {
    e.details
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

/// The builds and deployments of `roothash` (lower-case hex) in `entries`, trusting
/// only entries signed by `trusted` unless it is empty.
pub fn trace(
    entries: &[Stored],
    roothash: &str,
    trusted: &[(String, VerifyingKey)],
) -> RootHashTrace {
    let mut skipped = 0;
    let mut builds = Vec::new();
    let mut deployments = Vec::new();
    let mut disk_digests: Vec<String> = Vec::new();
    for stored in entries {
        let e = &stored.entry;
        let disk = e.details.get("disk");
        let built = e.action == Action::Build
            && disk
                .and_then(|d| d.get("roothash"))
                .and_then(|r| r.as_str())
                == Some(roothash);
        let deployed = e.action == Action::Deploy
            && (detail(e, "roothash").as_deref() == Some(roothash)
                || detail(e, "disk").is_some_and(|d| disk_digests.contains(&d)));
        if !built && !deployed {
            continue;
        }
        if !trusted.is_empty() && e.verify(trusted).is_err() {
            skipped += 1;
            continue;
        }
        if built {
            let disk_files: BTreeMap<String, String> = disk
                .and_then(|d| d.get("files"))
                .and_then(|f| f.as_object())
                .map(|f| {
                    f.iter()
                        .filter_map(|(format, d)| Some((format.clone(), d.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            disk_digests.extend(disk_files.values().cloned());
            builds.push(BuildOfRoot {
                seq: e.seq,
                time: e.time.clone(),
                image: detail(e, "image"),
                manifest_digest: detail(e, "manifest_digest"),
                recipe: detail(e, "recipe"),
                recipe_sha256: detail(e, "recipe_sha256"),
                disk_files,
                signer_key_id: e.actor.key_id.clone(),
                signer_identity: e.actor.identity.clone(),
            });
        } else {
            deployments.push(DeploymentOfRoot {
                seq: e.seq,
                time: e.time.clone(),
                env: detail(e, "env"),
                deployed: detail(e, "image").unwrap_or_default(),
                identity: e.actor.identity.clone(),
            });
        }
    }
    RootHashTrace {
        roothash: roothash.to_string(),
        builds,
        deployments,
        signatures_checked: !trusted.is_empty(),
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::ledger::{record, Ledger};

    #[test]
    fn a_root_hash_leads_to_its_signed_build_and_deployments() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path().join("ledger.jsonl"));
        let (ci, other) = (keys::generate(), keys::generate());
        let root = "ab".repeat(32);
        let raw = format!("sha256:{}", "cd".repeat(32));
        let build = BTreeMap::from([
            ("image".to_string(), "vm".into()),
            (
                "manifest_digest".to_string(),
                format!("sha256:{}", "ef".repeat(32)).into(),
            ),
            ("recipe".to_string(), "vm.yaml".into()),
            (
                "disk".to_string(),
                serde_json::json!({"files": {"raw": raw}, "roothash": root}),
            ),
        ]);
        let at = |s: u32| format!("2026-12-07T04:00:{s:02}Z");
        record(&ledger, Action::Build, build, "ci", at(0), &ci).unwrap();
        let by_root = BTreeMap::from([
            ("image".to_string(), format!("roothash={root}").into()),
            ("roothash".to_string(), root.clone().into()),
            ("env".to_string(), "prod".into()),
        ]);
        record(&ledger, Action::Deploy, by_root.clone(), "ops", at(1), &ci).unwrap();
        let by_disk = BTreeMap::from([
            ("image".to_string(), raw.clone().into()),
            ("digest".to_string(), raw.clone().into()),
            ("disk".to_string(), raw.clone().into()),
            ("env".to_string(), "staging".into()),
        ]);
        record(&ledger, Action::Deploy, by_disk, "ops", at(2), &ci).unwrap();
        record(&ledger, Action::Deploy, by_root, "mallory", at(3), &other).unwrap();
        let entries = ledger.read().unwrap().entries;

        let trusted = vec![(keys::key_id(&ci.verifying_key()), ci.verifying_key())];
        let t = trace(&entries, &root, &trusted);
        assert_eq!(t.builds.len(), 1);
        assert_eq!(t.builds[0].recipe.as_deref(), Some("vm.yaml"));
        assert_eq!(t.builds[0].signer_key_id, trusted[0].0);
        assert_eq!(t.builds[0].disk_files["raw"], raw);
        let envs: Vec<_> = t
            .deployments
            .iter()
            .map(|d| d.env.clone().unwrap())
            .collect();
        assert_eq!(envs, ["prod", "staging"]);
        assert_eq!(t.skipped, 1);

        let unchecked = trace(&entries, &root, &[]);
        assert_eq!((unchecked.deployments.len(), unchecked.skipped), (3, 0));
        assert!(trace(&entries, &"00".repeat(32), &trusted)
            .builds
            .is_empty());
    }
}
