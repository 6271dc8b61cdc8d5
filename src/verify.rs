//! `cairn verify`: checks that an image layout proves what it claims. Each check has
//! a name and a verdict; the image verifies only if every check passes.
//!
//! 1. `layout`: every manifest, config, layer and artifact blob matches its digest
//!    and size.
//! 2. `signatures`: every DSSE envelope attached to the image verifies with a trusted
//!    key (`--key`, and the policy's `signers`), and at least one does.
//! 3. `subject`: every statement names this image's manifest digest.
//! 4. `provenance`: a SLSA v1 provenance statement is attached and signed.
//! 5. `sbom`: the attached SPDX SBOM lists exactly the regular files of the layers it
//!    describes, each with the SHA-256 recomputed from the layer, and the signed SBOM
//!    statement carries that same SBOM.
//! 6. `policy`: the policy's rules on source digests and signers hold.
//! 7. `rebuild` (with `--rebuild`): building the recipe again gives the same manifest
//!    digest.

pub mod disk;

use crate::attest::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::attest::intoto::{Provenance, Statement, SLSA_PROVENANCE_V1, SPDX_PREDICATE};
use crate::attest::sbom;
use crate::inspect::{self, ImageReport};
use crate::keys::VerifyingKey;
use crate::oci::media_type::DSSE_ENVELOPE;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// `policy.yaml` for `cairn verify --policy`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Schema version; must be 1.
    pub cairn_policy: u32,
    /// If set, attestations must be signed by one of these key ids (hex SHA-256 of
    /// the public key); a `--key` key that is not listed is not enough.
    #[serde(default)]
    pub signers: Vec<String>,
    /// Require the SPDX SBOM and its signed statement (default true).
    #[serde(default = "yes")]
    pub require_sbom: bool,
    /// Every source must carry a verified signature by one of these key ids (empty:
    /// no requirement).
    #[serde(default)]
    pub source_signers: Vec<String>,
    /// Sources that must have exactly these digests (`name: sha256:<hex>`).
    #[serde(default)]
    pub source_digests: BTreeMap<String, String>,
    /// Admission (`cairn serve`): every image must be named by digest, not by a tag
    /// alone (default true).
    #[serde(default = "yes")]
    pub require_digest: bool,
    /// Refuse an image whose provenance lists a Debian maintainer script that runs at
    /// installation (`preinst`, `config`, `postinst`, `triggers`) with nothing done
    /// natively in its place (default false).
    #[serde(default)]
    pub refuse_unhandled_maintainer_scripts: bool,
}

/// The maintainer scripts dpkg runs (or, `triggers`, acts on) when it installs a
/// package; `prerm` and `postrm` run only when it is removed.
const INSTALL_SCRIPTS: [&str; 4] = ["preinst", "config", "postinst", "triggers"];

fn yes() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("policy {path} is not valid: {message}")]
    Invalid {
        path: std::path::PathBuf,
        message: String,
    },
}

impl Policy {
    pub fn read(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.into(),
            source,
        })?;
        let policy: Policy = serde_saphyr::from_str(&text).map_err(|e| PolicyError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
        if policy.cairn_policy != 1 {
            return Err(PolicyError::Invalid {
                path: path.into(),
                message: format!(
                    "`cairn_policy: {}`; this cairn reads policy version 1",
                    policy.cairn_policy
                ),
            });
        }
        Ok(policy)
    }
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Verdict {
    pub verified: bool,
    pub manifest_digest: Option<String>,
    pub checks: Vec<Check>,
}

pub(crate) struct Checks(pub(crate) Vec<Check>);

impl Checks {
    pub(crate) fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.0.push(Check {
            name,
            ok: true,
            detail: detail.into(),
        });
    }
    pub(crate) fn fail(&mut self, name: &'static str, detail: impl Into<String>) {
        self.0.push(Check {
            name,
            ok: false,
            detail: detail.into(),
        });
    }
    pub(crate) fn verdict(self, manifest_digest: Option<String>) -> Verdict {
        Verdict {
            verified: !self.0.is_empty() && self.0.iter().all(|c| c.ok),
            manifest_digest,
            checks: self.0,
        }
    }
}

/// A statement that verified, with the key ids that signed it.
struct SignedStatement {
    statement: Statement,
    signers: Vec<String>,
}

/// Verifies the image in `layout` against `keys` and `policy`. `rebuilt` is the
/// manifest digest of a fresh build of the recipe, when the caller rebuilt it.
pub fn verify(
    layout: &Path,
    trusted: &[VerifyingKey],
    policy: &Policy,
    rebuilt: Option<&str>,
) -> Verdict {
    let mut checks = Checks(Vec::new());
    let report = match inspect::inspect(layout) {
        Ok(r) => r,
        Err(e) => {
            checks.fail("layout", e.to_string());
            return checks.verdict(None);
        }
    };
    if report.images.is_empty() {
        checks.fail("layout", "the layout holds no image");
        return checks.verdict(None);
    }
    let blobs: usize = report
        .images
        .iter()
        .map(|i| 2 + i.layers.len() + i.referrers.len())
        .sum();
    checks.pass(
        "layout",
        format!("{blobs} manifests, configs, layers and artifacts match their digests"),
    );

    // A multi-platform image is verified platform by platform: each has its own
    // attestations, provenance and SBOMs.
    for image in &report.images {
        let mut own = Checks(Vec::new());
        let statements = check_signatures(layout, image, trusted, policy, &mut own);
        check_subjects(image, &statements, &mut own);
        let provenance = check_provenance(&statements, &mut own);
        check_sbom(layout, image, &statements, policy, &mut own);
        check_policy(provenance.as_ref(), policy, &mut own);
        for mut check in own.0 {
            if let Some(platform) = &image.platform {
                check.detail = format!("{platform}: {}", check.detail);
            }
            checks.0.push(check);
        }
    }
    let top = report
        .index_digest
        .clone()
        .unwrap_or_else(|| report.images[0].manifest_digest.clone());
    if let Some(rebuilt) = rebuilt {
        if rebuilt == top {
            checks.pass(
                "rebuild",
                format!("a fresh build gives the same manifest {rebuilt}"),
            );
        } else {
            checks.fail(
                "rebuild",
                format!("a fresh build gives manifest {rebuilt}, the image has {top}: the image is not what the recipe builds (try `cairn diff`)"),
            );
        }
    }
    checks.verdict(Some(top))
}

/// An image verified from a registry: the verdict, the manifest digest the reference
/// named when it was pulled, and how many referrers came with it.
pub struct RemoteVerdict {
    pub verdict: Verdict,
    pub digest: crate::digest::Sha256Digest,
    pub referrers: usize,
}

/// Pulls `reference` with its referrers into a temporary layout (removed afterwards)
/// and verifies it as [`verify`] does a layout: what `cairn verify REF` does.
pub fn verify_reference(
    client: &crate::registry::Client,
    reference: &crate::registry::Reference,
    trusted: &[VerifyingKey],
    policy: &Policy,
    rebuilt: Option<&str>,
) -> Result<RemoteVerdict, crate::registry::RegistryError> {
    let pulled = crate::registry::pull::pull_to_temp(client, reference)?;
    Ok(RemoteVerdict {
        verdict: verify(&pulled.report.layout, trusted, policy, rebuilt),
        digest: pulled.report.digest,
        referrers: pulled.report.referrers,
    })
}

fn check_signatures(
    layout: &Path,
    image: &ImageReport,
    trusted: &[VerifyingKey],
    policy: &Policy,
    checks: &mut Checks,
) -> Vec<SignedStatement> {
    let envelopes: Vec<_> = image
        .referrers
        .iter()
        .filter(|r| r.artifact_type == DSSE_ENVELOPE)
        .collect();
    if envelopes.is_empty() {
        checks.fail(
            "signatures",
            "no signed attestations are attached (was the image built with --sign-key?)",
        );
        return Vec::new();
    }
    let mut signed = Vec::new();
    let mut failures = Vec::new();
    for r in envelopes {
        let outcome = inspect::read_blob(layout, &r.blob_digest, r.blob_size)
            .map_err(|e| e.to_string())
            .and_then(|bytes| Envelope::from_json(&bytes).map_err(|e| e.to_string()))
            .and_then(|env| {
                if env.payload_type != INTOTO_PAYLOAD_TYPE {
                    return Err(format!(
                        "payloadType is {:?}, expected {INTOTO_PAYLOAD_TYPE}",
                        env.payload_type
                    ));
                }
                let signers = env.verify(trusted).map_err(|e| e.to_string())?;
                let statement: Statement = serde_json::from_slice(&env.payload)
                    .map_err(|e| format!("payload is not an in-toto statement: {e}"))?;
                Ok(SignedStatement { statement, signers })
            });
        match outcome {
            Ok(s) => {
                let untrusted_by_policy = !policy.signers.is_empty()
                    && !s.signers.iter().any(|k| policy.signers.contains(k));
                if untrusted_by_policy {
                    failures.push(format!(
                        "{}: signed by {:?}, not a policy signer",
                        r.manifest_digest, s.signers
                    ));
                } else {
                    signed.push(s);
                }
            }
            Err(e) => failures.push(format!("{}: {e}", r.manifest_digest)),
        }
    }
    if failures.is_empty() {
        let mut ids: Vec<&String> = signed.iter().flat_map(|s| &s.signers).collect();
        ids.sort();
        ids.dedup();
        checks.pass(
            "signatures",
            format!(
                "{} envelopes verify, signed by {}",
                signed.len(),
                ids.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    } else {
        checks.fail("signatures", failures.join("; "));
    }
    signed
}

fn check_subjects(image: &ImageReport, statements: &[SignedStatement], checks: &mut Checks) {
    let want = image.manifest_digest.trim_start_matches("sha256:");
    let wrong: Vec<String> = statements
        .iter()
        .filter(|s| {
            !s.statement
                .subject
                .iter()
                .any(|d| d.digest.get("sha256").map(String::as_str) == Some(want))
        })
        .map(|s| {
            let got: Vec<_> = s
                .statement
                .subject
                .iter()
                .filter_map(|d| d.digest.get("sha256"))
                .collect();
            format!(
                "a {} statement is about {got:?}, not this image",
                s.statement.predicate_type
            )
        })
        .collect();
    if statements.is_empty() {
        checks.fail("subject", "no verified statement to check");
    } else if wrong.is_empty() {
        checks.pass(
            "subject",
            format!("every statement names manifest {}", image.manifest_digest),
        );
    } else {
        checks.fail(
            "subject",
            format!(
                "{} (an attestation taken from another image?)",
                wrong.join("; ")
            ),
        );
    }
}

fn check_provenance(statements: &[SignedStatement], checks: &mut Checks) -> Option<Provenance> {
    let Some(s) = statements
        .iter()
        .find(|s| s.statement.predicate_type == SLSA_PROVENANCE_V1)
    else {
        checks.fail("provenance", "no signed SLSA v1 provenance statement");
        return None;
    };
    match serde_json::from_value::<Provenance>(s.statement.predicate.clone()) {
        Ok(p) => {
            checks.pass(
                "provenance",
                format!(
                    "SLSA v1, build type {}, {} resolved dependencies",
                    p.build_definition.build_type,
                    p.build_definition.resolved_dependencies.len()
                ),
            );
            Some(p)
        }
        Err(e) => {
            checks.fail(
                "provenance",
                format!("the provenance predicate is malformed: {e}"),
            );
            None
        }
    }
}

fn check_sbom(
    layout: &Path,
    image: &ImageReport,
    statements: &[SignedStatement],
    policy: &Policy,
    checks: &mut Checks,
) {
    let Some(bytes) = inspect::referrer_blob(layout, image, sbom::SPDX_MEDIA_TYPE) else {
        if policy.require_sbom {
            checks.fail("sbom", "no SPDX SBOM is attached to the image");
        }
        return;
    };
    let doc: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(d) => d,
        Err(e) => return checks.fail("sbom", format!("the SPDX SBOM is not JSON: {e}")),
    };
    let signed_sbom = statements
        .iter()
        .find(|s| s.statement.predicate_type == SPDX_PREDICATE);
    match signed_sbom {
        Some(s) if s.statement.predicate != doc => {
            return checks.fail(
                "sbom",
                "the signed SBOM statement does not carry the attached SBOM",
            );
        }
        None if policy.require_sbom => {
            return checks.fail("sbom", "no signed SBOM statement");
        }
        _ => {}
    }
    let claimed = spdx_file_sha256s(&doc);
    // The SBOM describes every layer except the one that embeds the SBOM itself.
    let mut described = ImageReport {
        layers: Vec::new(),
        referrers: Vec::new(),
        ..image_shallow(image)
    };
    // History entries of layers, in layer order (a base image may have entries for
    // config-only steps, marked `empty_layer`).
    let history: Vec<serde_json::Value> = image.config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["empty_layer"] != true)
        .cloned()
        .collect();
    // Only the image's own (last) SBOM layer: a base image built by cairn has one too,
    // and its files are part of what the SBOM describes.
    let last = image.layers.len().saturating_sub(1);
    for (i, layer) in image.layers.iter().enumerate() {
        let is_sbom_layer = i == last
            && history.get(i).and_then(|h| h["created_by"].as_str())
                == Some(&format!("cairn: layer {}", crate::build::names::SBOM_LAYER));
        if !is_sbom_layer {
            described.layers.push(layer.clone());
        }
    }
    let actual: BTreeMap<String, String> = inspect::final_files(&described)
        .into_iter()
        .filter_map(|(path, f)| Some((path, f.sha256?.hex())))
        .collect();
    let mut problems = Vec::new();
    compare_files("SPDX SBOM", &claimed, &actual, &mut problems);
    // The CycloneDX SBOM is not signed, but it is published beside the SPDX one: it
    // must describe the same files.
    let cyclonedx = inspect::referrer_blob(layout, image, sbom::CYCLONEDX_MEDIA_TYPE)
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    match cyclonedx {
        Some(doc) => {
            let claimed: BTreeMap<String, String> = doc["components"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| {
                    c["bom-ref"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("file:"))
                })
                .filter_map(|c| {
                    let name = c["name"].as_str()?.trim_start_matches('/').to_string();
                    let sha = c["hashes"]
                        .as_array()?
                        .iter()
                        .find(|h| h["alg"] == "SHA-256")?["content"]
                        .as_str()?
                        .to_string();
                    Some((name, sha))
                })
                .collect();
            compare_files("CycloneDX SBOM", &claimed, &actual, &mut problems);
        }
        None if policy.require_sbom => {
            problems.push("no readable CycloneDX SBOM is attached to the image".into())
        }
        None => {}
    }
    if problems.is_empty() {
        checks.pass(
            "sbom",
            format!(
                "{} files in the SPDX and CycloneDX SBOMs match the layers",
                actual.len()
            ),
        );
    } else {
        let shown: Vec<_> = problems.iter().take(5).cloned().collect();
        let more = problems.len().saturating_sub(5);
        checks.fail(
            "sbom",
            format!(
                "{}{}",
                shown.join("; "),
                if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                }
            ),
        );
    }
}

/// The files an SPDX document lists (path without `./`) with their SHA-256 (hex).
pub(crate) fn spdx_file_sha256s(spdx: &serde_json::Value) -> BTreeMap<String, String> {
    spdx["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| {
            let name = f["fileName"].as_str()?.trim_start_matches("./").to_string();
            let sha = f["checksums"]
                .as_array()?
                .iter()
                .find(|c| c["algorithm"] == "SHA256")?["checksumValue"]
                .as_str()?
                .to_string();
            Some((name, sha))
        })
        .collect()
}

/// Adds a problem for every file the SBOM gets wrong or misses, or lists in excess.
pub(crate) fn compare_files(
    which: &str,
    claimed: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) {
    for (path, sha) in actual {
        match claimed.get(path) {
            None => problems.push(format!("/{path} is in the image but not in the {which}")),
            Some(c) if c != sha => problems.push(format!(
                "/{path}: the {which} says sha256:{c}, the layer holds sha256:{sha}"
            )),
            _ => {}
        }
    }
    for path in claimed.keys().filter(|p| !actual.contains_key(*p)) {
        problems.push(format!("/{path} is in the {which} but not in the image"));
    }
}

fn image_shallow(image: &ImageReport) -> ImageReport {
    ImageReport {
        ref_name: image.ref_name.clone(),
        platform: image.platform.clone(),
        manifest_digest: image.manifest_digest.clone(),
        manifest: serde_json::Value::Null,
        config: serde_json::Value::Null,
        layers: Vec::new(),
        referrers: Vec::new(),
    }
}

pub(crate) fn check_policy(provenance: Option<&Provenance>, policy: &Policy, checks: &mut Checks) {
    if policy.source_signers.is_empty()
        && policy.source_digests.is_empty()
        && !policy.refuse_unhandled_maintainer_scripts
    {
        return;
    }
    let Some(p) = provenance else {
        return checks.fail(
            "policy",
            "the policy constrains sources, but there is no verified provenance to read them from",
        );
    };
    let deps = &p.build_definition.resolved_dependencies;
    let mut problems = Vec::new();
    for (name, want) in &policy.source_digests {
        let want = want.trim_start_matches("sha256:");
        match deps
            .iter()
            .find(|d| d.name.as_deref() == Some(name.as_str()))
        {
            None => problems.push(format!("source `{name}` is not in the provenance")),
            Some(d) if d.digest.get("sha256").map(String::as_str) != Some(want) => {
                problems.push(format!(
                    "source `{name}` has sha256:{}, the policy allows sha256:{want}",
                    d.digest.get("sha256").map_or("?", String::as_str)
                ))
            }
            _ => {}
        }
    }
    if !policy.source_signers.is_empty() {
        // The base image is pinned by digest, not signed like a source.
        let is_base = |d: &&crate::attest::intoto::ResourceDescriptor| {
            d.annotations.get("kind").and_then(|v| v.as_str())
                == Some(crate::attest::intoto::BASE_IMAGE_KIND)
        };
        for d in deps.iter().filter(|d| !is_base(d)) {
            let signer = d.annotations.get("signer").and_then(|v| v.as_str());
            if !signer.is_some_and(|s| policy.source_signers.iter().any(|k| k == s)) {
                problems.push(format!(
                    "source `{}` is {}, not by a policy source signer",
                    d.name.as_deref().unwrap_or("?"),
                    signer.map_or("unsigned".to_string(), |s| format!("signed by {s}"))
                ));
            }
        }
    }
    if policy.refuse_unhandled_maintainer_scripts {
        problems.extend(unhandled_maintainer_scripts(deps));
    }
    if problems.is_empty() {
        checks.pass(
            "policy",
            "sources and maintainer scripts are as the policy requires",
        );
    } else {
        checks.fail("policy", problems.join("; "));
    }
}

/// Each installation script the provenance lists with nothing done natively in its
/// place, each naming the package and the script.
fn unhandled_maintainer_scripts(deps: &[crate::attest::intoto::ResourceDescriptor]) -> Vec<String> {
    let mut out = Vec::new();
    for d in deps {
        let Some(scripts) = d
            .annotations
            .get("maintainerScripts")
            .and_then(|v| v.as_array())
        else {
            continue;
        };
        for script in scripts {
            let name = script["name"].as_str().unwrap_or("?");
            let done = script["doneNatively"]
                .as_array()
                .is_some_and(|d| !d.is_empty());
            if INSTALL_SCRIPTS.contains(&name) && !done {
                out.push(format!(
                    "package `{}`: its {name} was not run and nothing was done in its place",
                    d.name
                        .as_deref()
                        .map_or("?", |n| n.strip_prefix("deb:").unwrap_or(n))
                ));
            }
        }
    }
    out
}
