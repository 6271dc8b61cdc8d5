//! `cairn trace`: for a path in an image, or the SHA-256 of a binary found on a running
//! system, where it came from — the layer that wrote it, its digest, the source that
//! supplied it (with that source's digest and signer) and the recipe line that put it
//! there. Everything is read from the layout itself: the layers, the attached SPDX SBOM
//! and, when present, the provenance. [`roothash`] goes the other way for a VM disk:
//! from the root hash a machine booted with to its build, through the ledger.

pub mod disk;
pub mod roothash;

use crate::attest::dsse::Envelope;
use crate::attest::intoto::{Provenance, Statement, SLSA_PROVENANCE_V1};
use crate::attest::sbom;
use crate::digest::Sha256Digest;
use crate::inspect::{self, InspectError};
use crate::oci::annotation;
use crate::oci::media_type::DSSE_ENVELOPE;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Trace {
    pub query: String,
    pub matches: Vec<TracedFile>,
}

#[derive(Debug, Serialize)]
pub struct TracedFile {
    /// The platform of the image the file is in, for a multi-platform image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub path: String,
    pub sha256: Sha256Digest,
    pub size: u64,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub layer: TracedLayer,
    /// `source`, `recipe` (inline content) or `accounts` (generated), from the SBOM.
    pub origin: Option<String>,
    pub source: Option<TracedSource>,
    /// The source member the file was unpacked or copied from.
    pub member: Option<String>,
    pub recipe: Option<String>,
    pub recipe_line: Option<u32>,
    /// For a file cairn generated (`origin` `generated`, e.g. the CA bundle): the files
    /// it was made from, in the order read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub generated_from: Vec<TracedInput>,
}

/// An input of a generated file: its path in the image and digest when it was read.
#[derive(Debug, Clone, Serialize)]
pub struct TracedInput {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Serialize)]
pub struct TracedLayer {
    /// Index and digest of the layer in the image; unknown for a file traced in a VM
    /// disk, where only the layer's name (from the SBOM) is known.
    pub index: Option<usize>,
    pub name: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Serialize, Default)]
pub struct TracedSource {
    pub name: String,
    pub kind: Option<String>,
    pub path: Option<String>,
    pub digest: Option<String>,
    /// Key id of the signature the build verified on this source (for a Debian
    /// package: the fingerprint of the key that signed the repository's InRelease).
    pub signer: Option<String>,
    /// For a Debian package: the rest of its chain of trust.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<TracedPackage>,
}

/// A Debian package and the signed metadata that pinned it:
/// .deb -> Packages index -> InRelease (signed by [`TracedSource::signer`]).
#[derive(Debug, Serialize, Default)]
pub struct TracedPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub repository: String,
    pub suite: String,
    pub index: String,
    pub index_digest: String,
    pub inrelease_digest: String,
}

/// `key=value` pairs of the first line of a `cairn: ...` SBOM comment; `member=` runs
/// to the end of the line.
fn comment_fields(comment: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let first = comment.lines().next().unwrap_or_default();
    let Some(rest) = first.strip_prefix("cairn: ") else {
        return out;
    };
    let (head, member) = match rest
        .find(" member=")
        .or(rest.strip_prefix("member=").map(|_| 0))
    {
        Some(i) => {
            let tail = &rest[i..];
            (
                &rest[..i],
                Some(tail.trim_start().trim_start_matches("member=")),
            )
        }
        None => (rest, None),
    };
    for pair in head.split(' ') {
        if let Some((k, v)) = pair.split_once('=') {
            out.insert(k.to_string(), v.to_string());
        }
    }
    if let Some(m) = member {
        out.insert("member".into(), m.to_string());
    }
    out
}

/// Traces `query` (an image path, or a SHA-256 as `sha256:<hex>` or 64 hex digits)
/// in every image of the layout (each platform of a multi-platform image).
pub fn trace(layout: &Path, query: &str) -> Result<Trace, InspectError> {
    let report = inspect::inspect(layout)?;
    if report.images.is_empty() {
        return Err(InspectError::Invalid {
            path: layout.into(),
            message: "the layout holds no image".into(),
        });
    }
    let mut matches = Vec::new();
    for image in &report.images {
        matches.extend(trace_image(layout, image, query)?);
    }
    Ok(Trace {
        query: query.to_string(),
        matches,
    })
}

fn trace_image(
    layout: &Path,
    image: &inspect::ImageReport,
    query: &str,
) -> Result<Vec<TracedFile>, InspectError> {
    let files = inspect::final_files(image);
    let by_digest: Option<Sha256Digest> = query.parse().ok();
    let wanted: Vec<_> = match by_digest {
        Some(d) => files.values().filter(|f| f.sha256 == Some(d)).collect(),
        None => {
            let key = query.trim_start_matches('/').trim_end_matches('/');
            files
                .get(key)
                .filter(|f| f.sha256.is_some())
                .into_iter()
                .collect()
        }
    };

    let spdx: serde_json::Value = inspect::referrer_blob(layout, image, sbom::SPDX_MEDIA_TYPE)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let (recipe, signers) = provenance_facts(layout, image);
    let sbom = SbomIndex::new(&spdx, recipe);
    // One history entry per layer: a base image may have config-only entries.
    let history: Vec<serde_json::Value> = image.config["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["empty_layer"] != true)
        .cloned()
        .collect();

    let mut matches = Vec::new();
    for f in wanted {
        let index = image
            .layers
            .iter()
            .rposition(|l| {
                l.files
                    .iter()
                    .any(|g| g.path.trim_end_matches('/') == f.path)
            })
            .unwrap_or(0);
        let layer = TracedLayer {
            index: Some(index),
            name: history
                .get(index)
                .and_then(|h| h["created_by"].as_str())
                .map(|c| c.trim_start_matches("cairn: layer ").to_string()),
            digest: image.layers.get(index).map(|l| l.digest.clone()),
        };
        matches.push(sbom.describe(
            TracedFile {
                platform: image.platform.clone(),
                path: format!("/{}", f.path),
                sha256: f.sha256.expect("only regular files are traced"),
                size: f.size,
                mode: f.mode,
                uid: f.uid,
                gid: f.gid,
                layer,
                origin: None,
                source: None,
                member: None,
                recipe: None,
                recipe_line: None,
                generated_from: Vec::new(),
            },
            &signers,
        ));
    }
    Ok(matches)
}

/// What the SPDX SBOM says about files and sources, for filling in a [`TracedFile`].
pub(crate) struct SbomIndex<'a> {
    files: BTreeMap<&'a str, BTreeMap<String, String>>,
    sources: BTreeMap<String, (BTreeMap<String, String>, Option<String>)>,
    recipe: Option<String>,
}

impl<'a> SbomIndex<'a> {
    /// `recipe`: the recipe file name from the provenance, if there is one.
    pub(crate) fn new(spdx: &'a serde_json::Value, recipe: Option<String>) -> Self {
        let sbom_files: BTreeMap<&str, BTreeMap<String, String>> = spdx["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| {
                let comment = f["comment"].as_str().unwrap_or_default();
                let mut fields = comment_fields(comment);
                // A generated file's inputs, one `generated-from=` line each, kept as
                // the lines (`sha256:<hex> <path>`) under one key.
                let inputs: Vec<&str> = comment
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.strip_prefix("generated-from="))
                    .collect();
                if !inputs.is_empty() {
                    fields.insert("generated-from".into(), inputs.join("\n"));
                }
                Some((f["fileName"].as_str()?.trim_start_matches("./"), fields))
            })
            .collect();
        let sbom_sources: BTreeMap<String, (BTreeMap<String, String>, Option<String>)> = spdx
            ["packages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| {
                p["SPDXID"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("SPDXRef-Source-"))
            })
            .filter_map(|p| {
                let sha = p["checksums"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["algorithm"] == "SHA256")
                    .and_then(|c| c["checksumValue"].as_str())
                    .map(|v| format!("sha256:{v}"));
                let fields = comment_fields(p["comment"].as_str().unwrap_or_default());
                // A Debian package is listed under its own name; its source name
                // (`deb:<name>`) is in its comment.
                let name = fields
                    .get("source")
                    .cloned()
                    .or_else(|| p["name"].as_str().map(str::to_string))?;
                Some((name, (fields, sha)))
            })
            .collect();
        // Unsigned images have no provenance; the SBOM's image package names the recipe too.
        let recipe = recipe.or_else(|| {
            spdx["packages"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["SPDXID"] == "SPDXRef-Image")
                .and_then(|p| comment_fields(p["comment"].as_str()?).remove("recipe"))
        });
        SbomIndex {
            files: sbom_files,
            sources: sbom_sources,
            recipe,
        }
    }

    /// `file` (path, digest, mode, owner, layer filled in) with its origin, source,
    /// member and recipe line from the SBOM; `signers` by source name, from the
    /// provenance.
    pub(crate) fn describe(
        &self,
        mut file: TracedFile,
        signers: &BTreeMap<String, String>,
    ) -> TracedFile {
        let fields = self.files.get(file.path.trim_start_matches('/'));
        file.source = fields.and_then(|x| x.get("source")).map(|name| {
            let (info, sha) = self.sources.get(name.as_str()).cloned().unwrap_or_default();
            let package = (info.get("kind").map(String::as_str) == Some("deb")).then(|| {
                let get = |k: &str| info.get(k).cloned().unwrap_or_default();
                TracedPackage {
                    name: name.strip_prefix("deb:").unwrap_or(name).to_string(),
                    version: get("version"),
                    architecture: get("arch"),
                    repository: get("repository"),
                    suite: get("suite"),
                    index: get("index"),
                    index_digest: get("index-digest"),
                    inrelease_digest: get("inrelease-digest"),
                }
            });
            TracedSource {
                package,
                name: name.clone(),
                kind: info.get("kind").cloned(),
                path: info.get("path").cloned(),
                digest: sha.or_else(|| info.get("digest").cloned()),
                signer: info
                    .get("signer")
                    .cloned()
                    .or_else(|| signers.get(name).cloned()),
            }
        });
        file.origin = fields.and_then(|x| x.get("origin")).cloned();
        file.generated_from = fields
            .and_then(|x| x.get("generated-from"))
            .into_iter()
            .flat_map(|inputs| inputs.lines())
            .filter_map(|line| {
                let (sha256, path) = line.split_once(' ')?;
                Some(TracedInput {
                    path: path.to_string(),
                    sha256: sha256.to_string(),
                })
            })
            .collect();
        file.member = fields.and_then(|x| x.get("member")).cloned();
        file.recipe = self.recipe.clone();
        file.recipe_line = fields
            .and_then(|x| x.get("recipe-line"))
            .and_then(|l| l.parse().ok());
        // The SBOM names this image's layers as the build knew them (a base image's
        // layers `base:N`); the history of a base image names its own layers, which
        // are not this image's.
        if let Some(layer) = fields.and_then(|x| x.get("layer")) {
            file.layer.name = Some(layer.clone());
        }
        file
    }
}

/// The recipe file name and source signers from the attached provenance, if any.
/// Signatures are not checked here (`cairn verify` does that); trace only reads.
fn provenance_facts(
    layout: &Path,
    image: &inspect::ImageReport,
) -> (Option<String>, BTreeMap<String, String>) {
    let provenance = image
        .referrers
        .iter()
        .filter(|r| r.artifact_type == DSSE_ENVELOPE)
        .filter(|r| {
            r.annotations
                .get(annotation::PREDICATE_TYPE)
                .map(String::as_str)
                == Some(SLSA_PROVENANCE_V1)
        })
        .find_map(|r| {
            let bytes = inspect::read_blob(layout, &r.blob_digest, r.blob_size).ok()?;
            let statement: Statement =
                serde_json::from_slice(&Envelope::from_json(&bytes).ok()?.payload).ok()?;
            serde_json::from_value::<Provenance>(statement.predicate).ok()
        });
    recipe_and_signers(provenance)
}

/// The recipe file name and the signer of each source, from a provenance predicate.
pub(crate) fn recipe_and_signers(
    provenance: Option<Provenance>,
) -> (Option<String>, BTreeMap<String, String>) {
    let mut signers = BTreeMap::new();
    let Some(p) = provenance else {
        return (None, signers);
    };
    for d in &p.build_definition.resolved_dependencies {
        if let (Some(name), Some(signer)) = (
            &d.name,
            d.annotations.get("signer").and_then(|v| v.as_str()),
        ) {
            signers.insert(name.clone(), signer.to_string());
        }
    }
    let recipe = p
        .build_definition
        .external_parameters
        .get("recipe")
        .and_then(|r| r["path"].as_str())
        .map(str::to_string);
    (recipe, signers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbom_comments_parse_with_members_that_contain_spaces() {
        let f = comment_fields(
            "cairn: layer=base origin=source source=tools recipe-line=18 member=opt/my tools/x",
        );
        assert_eq!(f["layer"], "base");
        assert_eq!(f["source"], "tools");
        assert_eq!(f["recipe-line"], "18");
        assert_eq!(f["member"], "opt/my tools/x");
        let g = comment_fields("cairn: layer=app origin=recipe recipe-line=7");
        assert_eq!(g["origin"], "recipe");
        assert!(!g.contains_key("member"));
        let h = comment_fields(
            "cairn: layer=ca origin=generated source=deb:ca-certificates recipe-line=9 inputs=1\ngenerated-from=sha256:00 /usr/share/ca-certificates/a b.crt",
        );
        assert_eq!(h["inputs"], "1");
        assert!(!h.contains_key("generated-from"));
    }
}
