//! `cairn audit registry`: does the registry hold anything the ledger cannot explain?
//! The backstop for the push hook, since a registry drops notifications when its
//! in-memory queue overflows or it restarts.
//!
//! [`LedgerFacts::read`] takes from the ledger, trusting only entries signed by the
//! given keys, the manifest digests that have a `build` entry and the last `verify`
//! verdict on each digest in each repository. [`audit`] then walks the registry (the catalog, or one
//! repository), every tag and every platform manifest of an index, and reports each
//! manifest that no signed `build` entry names (an index's platform manifests are
//! explained by the index's entry) and each tag whose last verdict failed. The
//! referrers of an explained image (SBOMs, attestations, found through the Referrers
//! API or the `sha256-<hex>` tag schema), that fallback index itself, and cosign's
//! `sha256-<hex>.att` and `.sig` tags count as explained; those of an unexplained
//! image do not. A registry lists no untagged manifests, so those are out of reach.

use crate::digest::Sha256Digest;
use crate::keys::{self, VerifyingKey};
use crate::ledger::{detail_str, Action, LedgerStore, StoreError};
use crate::registry::{oci_sha256, Client, ManifestDoc, Reference, RegistryError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What is audited: a whole registry or one of its repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `host[:port]`
    pub registry: String,
    pub repository: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not HOST[:PORT][/REPOSITORY] (e.g. registry.example:5000/team/app)")]
pub struct ScopeError(String);

impl std::str::FromStr for Scope {
    type Err = ScopeError;

    fn from_str(text: &str) -> Result<Scope, ScopeError> {
        let (registry, repository) = match text.split_once('/') {
            Some((host, repo)) => (host, Some(repo.trim_end_matches('/'))),
            None => (text, None),
        };
        let repository = repository.filter(|r| !r.is_empty());
        let bad_repo = repository
            .is_some_and(|r| r.contains(['@', ':']) || r.split('/').any(|part| part.is_empty()));
        if registry.is_empty() || registry.contains(['@', ' ']) || bad_repo {
            return Err(ScopeError(text.to_string()));
        }
        Ok(Scope {
            registry: registry.to_string(),
            repository: repository.map(str::to_string),
        })
    }
}

/// What the ledger says about images, from entries signed by trusted keys only.
#[derive(Debug, Default)]
pub struct LedgerFacts {
    /// Manifest digests named by a signed `build` entry.
    built: BTreeSet<Sha256Digest>,
    /// The last signed verdict on each manifest digest in each repository (true:
    /// verified): a verdict depends on the referrers, which live in the repository.
    verdicts: BTreeMap<(String, Sha256Digest), bool>,
    /// Entries left out because no trusted key signed them.
    pub untrusted_entries: u64,
}

impl LedgerFacts {
    /// Streams `ledger` once, keeping the facts of the entries a key of `trusted`
    /// signed.
    pub fn read(ledger: &dyn LedgerStore, trusted: &[VerifyingKey]) -> Result<Self, StoreError> {
        let trusted: Vec<(String, VerifyingKey)> =
            trusted.iter().map(|k| (keys::key_id(k), *k)).collect();
        let mut facts = LedgerFacts::default();
        for stored in ledger.entries()? {
            let entry = stored?.entry;
            if entry.verify(&trusted).is_err() {
                facts.untrusted_entries += 1;
                continue;
            }
            let digest = |key| detail_str(&entry, key).and_then(|d| d.parse().ok());
            match entry.action {
                Action::Build => {
                    if let Some(d) = digest("manifest_digest") {
                        facts.built.insert(d);
                    }
                }
                Action::Verify => {
                    // Verdicts on a layout name no repository: not about a registry.
                    let repository = detail_str(&entry, "reference")
                        .and_then(|r| r.parse::<Reference>().ok())
                        .map(|r| r.repository);
                    let verified = entry.details.get("verified").and_then(|v| v.as_bool());
                    if let (Some(repository), Some(d), Some(verified)) =
                        (repository, digest("image"), verified)
                    {
                        facts.verdicts.insert((repository, d), verified);
                    }
                }
                Action::Push | Action::Deploy => {}
            }
        }
        Ok(facts)
    }
}

/// Why a manifest is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No signed `build` entry names the manifest (nor the index that lists it).
    NoBuildEntry,
    /// The last signed verdict on the manifest failed.
    FailedVerdict,
    /// A referrer (or cosign tag) of an image the ledger does not explain.
    SubjectUnexplained,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::NoBuildEntry => "no signed build entry in the ledger",
            Reason::FailedVerdict => "its last verdict in the ledger failed",
            Reason::SubjectUnexplained => "a referrer of an image the ledger does not explain",
        })
    }
}

/// One manifest the ledger does not explain, and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub repository: String,
    /// The tag it was reached through.
    pub tag: String,
    pub digest: Sha256Digest,
    /// Set when the manifest is a platform manifest of the tagged index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_of: Option<Sha256Digest>,
    pub reason: Reason,
}

/// What an audit walked and found.
#[derive(Debug, Default, Serialize)]
pub struct AuditReport {
    pub registry: String,
    pub repositories: usize,
    pub tags: usize,
    /// Distinct manifests looked at (images, platform manifests, referrers).
    pub manifests: usize,
    pub findings: Vec<Finding>,
    pub untrusted_entries: u64,
}

impl AuditReport {
    /// Whether the ledger explains everything walked.
    pub fn explained(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The subject of a referrer-schema tag: `sha256-<hex>` (the fallback referrers
/// index) and cosign's `sha256-<hex>.att` and `sha256-<hex>.sig`.
fn tag_subject(tag: &str) -> Option<Sha256Digest> {
    let hex = tag.strip_prefix("sha256-")?;
    let hex = hex
        .strip_suffix(".att")
        .or_else(|| hex.strip_suffix(".sig"))
        .unwrap_or(hex);
    hex.parse().ok()
}

/// Walks `scope` with `client` and checks every manifest against `facts`.
pub fn audit(
    client: &Client,
    scope: &Scope,
    facts: &LedgerFacts,
) -> Result<AuditReport, RegistryError> {
    let repositories = match &scope.repository {
        Some(r) => vec![r.clone()],
        None => client.catalog(&scope.registry)?,
    };
    let mut report = AuditReport {
        registry: scope.registry.clone(),
        repositories: repositories.len(),
        untrusted_entries: facts.untrusted_entries,
        ..Default::default()
    };
    let mut seen = BTreeSet::new();
    for repository in &repositories {
        let repo = Reference {
            registry: scope.registry.clone(),
            repository: repository.clone(),
            tag: None,
            digest: None,
        };
        audit_repository(client, &repo, facts, &mut report, &mut seen)?;
    }
    report.manifests = seen.len();
    report
        .findings
        .sort_by_key(|f| (f.repository.clone(), f.tag.clone(), f.digest, f.reason));
    Ok(report)
}

fn audit_repository(
    client: &Client,
    repo: &Reference,
    facts: &LedgerFacts,
    report: &mut AuditReport,
    seen: &mut BTreeSet<(String, Sha256Digest)>,
) -> Result<(), RegistryError> {
    let tags = client.tags(repo)?;
    report.tags += tags.len();
    let finding = |tag: &str, digest, platform_of, reason| Finding {
        repository: repo.repository.clone(),
        tag: tag.to_string(),
        digest,
        platform_of,
        reason,
    };
    // Images first: whether a referrer-schema tag is explained depends on its subject.
    let mut explained: BTreeSet<Sha256Digest> = BTreeSet::new();
    let mut schema_tags = Vec::new();
    for tag in &tags {
        if let Some(subject) = tag_subject(tag) {
            schema_tags.push((tag, subject));
            continue;
        }
        // A tag deleted since it was listed is no longer in the registry.
        let Some(manifest) = client.find_manifest(&repo.with_tag(tag))? else {
            continue;
        };
        seen.insert((repo.repository.clone(), manifest.digest));
        let parsed = ManifestDoc::parse(
            &manifest.bytes,
            &manifest.media_type,
            &format!("manifest {}", manifest.digest),
        )?;
        let top_built = facts.built.contains(&manifest.digest);
        let verdict = (repo.repository.clone(), manifest.digest);
        if facts.verdicts.get(&verdict) == Some(&false) {
            report
                .findings
                .push(finding(tag, manifest.digest, None, Reason::FailedVerdict));
        }
        let mut images = vec![(manifest.digest, None, top_built)];
        for child in parsed.children() {
            let digest = oci_sha256(child)?;
            seen.insert((repo.repository.clone(), digest));
            let built = top_built || facts.built.contains(&digest);
            images.push((digest, Some(manifest.digest), built));
        }
        for (digest, platform_of, built) in images {
            if !built {
                report
                    .findings
                    .push(finding(tag, digest, platform_of, Reason::NoBuildEntry));
                continue;
            }
            explained.insert(digest);
            let (referrers, _) = client.referrers(repo, &digest, None)?;
            for referrer in &referrers {
                let referrer = oci_sha256(referrer)?;
                seen.insert((repo.repository.clone(), referrer));
                explained.insert(referrer);
            }
        }
    }
    for (tag, subject) in schema_tags {
        let Some(manifest) = client.find_manifest(&repo.with_tag(tag))? else {
            continue;
        };
        seen.insert((repo.repository.clone(), manifest.digest));
        if !explained.contains(&subject) {
            report.findings.push(finding(
                tag,
                manifest.digest,
                None,
                Reason::SubjectUnexplained,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_is_a_host_with_an_optional_repository() {
        let scope: Scope = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(scope.registry, "127.0.0.1:5000");
        assert_eq!(scope.repository, None);
        let scope: Scope = "registry.example/team/app/".parse().unwrap();
        assert_eq!(scope.registry, "registry.example");
        assert_eq!(scope.repository.as_deref(), Some("team/app"));
        for bad in ["", "/team/app", "host/team//app", "host/team/app:v1"] {
            let err = bad.parse::<Scope>().unwrap_err().to_string();
            assert!(err.contains("HOST[:PORT][/REPOSITORY]"), "{bad}: {err}");
        }
    }

    #[test]
    fn referrer_schema_and_cosign_tags_name_their_subject() {
        let digest = Sha256Digest::of(b"image");
        let hex = digest.hex();
        assert_eq!(tag_subject(&format!("sha256-{hex}")), Some(digest));
        assert_eq!(tag_subject(&format!("sha256-{hex}.att")), Some(digest));
        assert_eq!(tag_subject(&format!("sha256-{hex}.sig")), Some(digest));
        assert_eq!(tag_subject("v1"), None);
        assert_eq!(tag_subject("sha256-short"), None);
        assert_eq!(tag_subject(&format!("sha256-{hex}.sbom")), None);
    }
}
