//! What runs in an environment now, told only from entries signed by trusted keys:
//! for each workload (namespace, kind, name and cluster of an admitted deployment; a
//! hand-recorded `ledger record deploy` is the environment's one unnamed workload),
//! the images of its latest deployment, since when each has run there, who deployed
//! it, and the signed `build` entry that made it (recipe, sources, signer).
//!
//! An entry whose signature does not verify with a trusted key is never taken as fact:
//! it is counted as skipped, and nothing it says is shown.

use super::entry::{Action, Entry};
use super::Stored;
use crate::keys::VerifyingKey;
use serde::Serialize;
use std::collections::BTreeMap;

/// What runs in one environment.
#[derive(Debug, Serialize)]
pub struct Running {
    pub env: String,
    /// One per image of each workload, by workload then image.
    pub images: Vec<RunningImage>,
    /// Entries not signed by a trusted key (or whose signature does not verify),
    /// skipped.
    pub skipped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunningImage {
    /// `namespace/Kind/name` (and `@cluster`), empty for a hand-recorded deployment.
    pub workload: String,
    pub image: String,
    pub digest: String,
    /// When this image started running in the workload (the first of the latest
    /// deployments that kept it), and that entry.
    pub since: String,
    pub seq: u64,
    /// The cluster user who deployed it, else the identity that recorded it.
    pub by: String,
    /// The latest trusted `build` entry of this digest, if any.
    pub build: Option<BuildBehind>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildBehind {
    pub seq: u64,
    pub time: String,
    pub recipe: Option<String>,
    pub recipe_sha256: Option<String>,
    /// Source name -> digest.
    pub sources: BTreeMap<String, String>,
    /// Key id that signed the build entry, and the identity it declared.
    pub signer_key_id: String,
    pub signer_identity: String,
}

/// The images running in `env`, from `entries` (in ledger order), trusting only
/// entries signed by `trusted`.
pub fn running(entries: &[Stored], env: &str, trusted: &[(String, VerifyingKey)]) -> Running {
    let mut skipped = 0;
    let mut workloads: BTreeMap<String, Workload> = BTreeMap::new();
    let mut builds: BTreeMap<String, BuildBehind> = BTreeMap::new();
    for stored in entries {
        let e = &stored.entry;
        if e.verify(trusted).is_err() {
            skipped += 1;
            continue;
        }
        match e.action {
            Action::Build => {
                for artifact in built_artifacts(e) {
                    builds.insert(artifact.to_string(), build_behind(e));
                }
            }
            Action::Deploy if detail(e, "env") == Some(env) => {
                // A disk deployed by its dm-verity root hash has no digest.
                let digest = detail(e, "digest").or_else(|| detail(e, "roothash"));
                let (Some(image), Some(digest)) = (detail(e, "image"), digest) else {
                    continue;
                };
                let workload = workload_name(e);
                // Entries of one admission share its uid; a hand-recorded deploy is a
                // request of its own.
                let request =
                    detail(e, "uid").map_or_else(|| format!("entry {}", e.seq), str::to_string);
                let state = workloads.entry(workload.clone()).or_default();
                if state.request != request {
                    state.request = request;
                    state.previous = std::mem::take(&mut state.images);
                }
                let kept = state
                    .previous
                    .get(digest)
                    .or_else(|| state.images.get(digest))
                    .cloned();
                let row = kept.unwrap_or_else(|| RunningImage {
                    workload,
                    image: image.to_string(),
                    digest: digest.to_string(),
                    since: e.time.clone(),
                    seq: e.seq,
                    by: detail(e, "username")
                        .filter(|u| !u.is_empty())
                        .unwrap_or(&e.actor.identity)
                        .to_string(),
                    build: None,
                });
                state.images.insert(digest.to_string(), row);
            }
            _ => {}
        }
    }
    let images = workloads
        .into_values()
        .flat_map(|state| state.images.into_values())
        .map(|mut row| {
            row.build = builds.get(&row.digest).cloned();
            row
        })
        .collect();
    Running {
        env: env.to_string(),
        images,
        skipped,
    }
}

/// One workload's deployment now in force (a request uid), its images by digest, and
/// those of the deployment before it, whose `since` carries over to an image kept.
#[derive(Default)]
struct Workload {
    request: String,
    images: BTreeMap<String, RunningImage>,
    previous: BTreeMap<String, RunningImage>,
}

fn detail<'a>(entry: &'a Entry, key: &str) -> Option<&'a str> {
    entry.details.get(key).and_then(|v| v.as_str())
}

fn workload_name(e: &Entry) -> String {
    let Some(name) = detail(e, "name") else {
        return String::new();
    };
    let mut workload = format!(
        "{}/{}/{}",
        detail(e, "namespace").unwrap_or_default(),
        detail(e, "kind").unwrap_or_default(),
        name
    );
    if let Some(cluster) = detail(e, "cluster") {
        workload = format!("{workload}@{cluster}");
    }
    workload
}

/// What a build entry made, as deployments name it: the manifest digest, and for a
/// VM disk each disk file's digest and the dm-verity root hash.
fn built_artifacts(e: &Entry) -> Vec<&str> {
    let disk = e.details.get("disk");
    let files = disk
        .and_then(|d| d.get("files"))
        .and_then(|f| f.as_object())
        .into_iter()
        .flat_map(|f| f.values().filter_map(|v| v.as_str()));
    detail(e, "manifest_digest")
        .into_iter()
        .chain(files)
        .chain(
            disk.and_then(|d| d.get("roothash"))
                .and_then(|r| r.as_str()),
        )
        .collect()
}

fn build_behind(e: &Entry) -> BuildBehind {
    let sources = e
        .details
        .get("sources")
        .and_then(|s| s.as_object())
        .map(|s| {
            s.iter()
                .map(|(name, digest)| (name.clone(), digest.as_str().unwrap_or_default().into()))
                .collect()
        })
        .unwrap_or_default();
    BuildBehind {
        seq: e.seq,
        time: e.time.clone(),
        recipe: detail(e, "recipe").map(str::to_string),
        recipe_sha256: detail(e, "recipe_sha256").map(str::to_string),
        sources,
        signer_key_id: e.actor.key_id.clone(),
        signer_identity: e.actor.identity.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{record, Ledger};

    fn details(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn admitted(uid: &str, digest: &str, user: &str) -> BTreeMap<String, serde_json::Value> {
        details(&[
            ("image", format!("r.example/app@{digest}").into()),
            ("digest", digest.into()),
            ("env", "prod".into()),
            ("namespace", "shop".into()),
            ("kind", "Deployment".into()),
            ("name", "web".into()),
            ("uid", uid.into()),
            ("username", user.into()),
        ])
    }

    #[test]
    fn kept_images_keep_their_since_and_untrusted_entries_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path().join("ledger.jsonl"));
        let ci = crate::keys::generate();
        let intruder = crate::keys::generate();
        let (a, b) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let at = |n: u32| format!("2026-12-06T10:00:{n:02}Z");
        let build = details(&[
            ("manifest_digest", a.clone().into()),
            ("recipe", "app.yaml".into()),
            ("recipe_sha256", format!("sha256:{}", "c".repeat(64)).into()),
            (
                "sources",
                serde_json::json!({"src": format!("sha256:{}", "d".repeat(64))}),
            ),
        ]);
        record(&ledger, Action::Build, build, "ci", at(0), &ci).unwrap();
        // Request 1 runs a; request 2 runs a and b (a kept, since request 1).
        record(
            &ledger,
            Action::Deploy,
            admitted("u1", &a, "alice"),
            "svc",
            at(1),
            &ci,
        )
        .unwrap();
        record(
            &ledger,
            Action::Deploy,
            admitted("u2", &a, "bob"),
            "svc",
            at(2),
            &ci,
        )
        .unwrap();
        record(
            &ledger,
            Action::Deploy,
            admitted("u2", &b, "bob"),
            "svc",
            at(3),
            &ci,
        )
        .unwrap();
        // A forged deployment of another image, signed by a key not trusted.
        let forged = admitted("u3", &format!("sha256:{}", "e".repeat(64)), "mallory");
        record(&ledger, Action::Deploy, forged, "svc", at(4), &intruder).unwrap();
        let trusted = [(crate::keys::key_id(&ci.verifying_key()), ci.verifying_key())];
        let running = running(&ledger.read().unwrap().entries, "prod", &trusted);
        assert_eq!(running.skipped, 1);
        let rows: Vec<(&str, &str, &str)> = running
            .images
            .iter()
            .map(|r| (r.digest.as_str(), r.since.as_str(), r.by.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                (a.as_str(), at(1).as_str(), "alice"),
                (b.as_str(), at(3).as_str(), "bob")
            ]
        );
        assert_eq!(running.images[0].workload, "shop/Deployment/web");
        let build = running.images[0].build.as_ref().unwrap();
        assert_eq!(build.recipe.as_deref(), Some("app.yaml"));
        assert_eq!(build.signer_identity, "ci");
        assert!(running.images[1].build.is_none());
    }
}
