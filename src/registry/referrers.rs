//! Attaching referrers for registries without the Referrers API, and for cosign.
//!
//! - The distribution spec's referrers tag schema: the tag `sha256-<hex>` of the
//!   subject holds an image index listing the subject's referrers. It is updated by
//!   merging with what the tag already lists, so other tools' referrers stay.
//! - cosign's legacy attestation image: the tag `sha256-<hex>.att` holds an image
//!   manifest whose layers are the DSSE envelopes (media type
//!   `application/vnd.dsse.envelope.v1+json`, annotations
//!   `dev.cosignproject.cosign/signature: ""` and `predicateType`), over a config that
//!   lists them as `rootfs.diff_ids`. Existing layers are kept, so attestations other
//!   tools attached stay.

use super::api::Descriptor;
use super::{cosign_attestation_tag, referrers_tag, Client, Reference, RegistryError};
use crate::digest::Sha256Digest;
use crate::oci::annotation::{COSIGN_PREDICATE_TYPE, COSIGN_SIGNATURE};
use crate::oci::json::canonical_json;
use crate::oci::media_type::{DSSE_ENVELOPE, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};
use std::collections::BTreeMap;

/// Merges `referrers` into the index at `subject`'s referrers tag (creating it);
/// returns the tag. Writes nothing when the tag already lists them all.
pub fn update_referrers_tag(
    client: &Client,
    repository: &Reference,
    subject: &Sha256Digest,
    referrers: &[Descriptor],
) -> Result<String, RegistryError> {
    let tag = referrers_tag(subject);
    let target = repository.with_tag(&tag);
    // What is listed stays as it is, fields cairn does not know included.
    let mut listed: Vec<serde_json::Value> = match client.find_manifest(&target)? {
        Some(existing) => {
            #[derive(serde::Deserialize)]
            struct Listed {
                #[serde(default)]
                manifests: Vec<serde_json::Value>,
            }
            let index: Listed =
                serde_json::from_slice(&existing.bytes).map_err(|e| RegistryError::Protocol {
                    url: target.to_string(),
                    detail: format!("the referrers tag does not hold an OCI index: {e}"),
                })?;
            index.manifests
        }
        None => Vec::new(),
    };
    let before = listed.len();
    for r in referrers {
        if !listed.iter().any(|l| l["digest"] == r.digest.as_str()) {
            listed.push(serde_json::to_value(r).expect("descriptors serialise"));
        }
    }
    if listed.len() == before && before > 0 {
        return Ok(tag);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": listed,
    });
    client.put_manifest(&target, &canonical_json(&index), OCI_INDEX)?;
    Ok(tag)
}

/// One DSSE envelope blob (already in the repository) and its predicate type.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub digest: Sha256Digest,
    pub size: u64,
    pub predicate_type: String,
}

/// Adds `envelopes` as layers of cosign's `sha256-<hex>.att` image for `subject`
/// (keeping the layers it has); returns the tag.
pub fn update_cosign_attestations(
    client: &Client,
    repository: &Reference,
    subject: &Sha256Digest,
    envelopes: &[Envelope],
) -> Result<String, RegistryError> {
    let tag = cosign_attestation_tag(subject);
    let target = repository.with_tag(&tag);
    // The layers are written back as they were read: read into [`Descriptor`], the
    // shape this module writes, not the oci-spec type, whose fields differ.
    let mut layers: Vec<Descriptor> = match client.find_manifest(&target)? {
        Some(existing) => {
            #[derive(serde::Deserialize)]
            struct Attestations {
                #[serde(default)]
                layers: Vec<Descriptor>,
            }
            let manifest: Attestations = serde_json::from_slice(&existing.bytes).map_err(|e| {
                RegistryError::Layout(format!("{target} is not an OCI manifest or index: {e}"))
            })?;
            manifest.layers
        }
        None => Vec::new(),
    };
    let before = layers.len();
    for e in envelopes {
        let digest = e.digest.to_string();
        if layers.iter().any(|l| l.digest == digest) {
            continue;
        }
        layers.push(Descriptor {
            media_type: DSSE_ENVELOPE.to_string(),
            digest,
            size: e.size,
            artifact_type: None,
            annotations: BTreeMap::from([
                (COSIGN_SIGNATURE.to_string(), String::new()),
                (COSIGN_PREDICATE_TYPE.to_string(), e.predicate_type.clone()),
            ]),
            platform: None,
        });
    }
    if layers.len() == before && before > 0 {
        return Ok(tag);
    }
    // The config go-containerregistry gives an image appended to an empty one, as
    // cosign writes it: layers are stored uncompressed, so diff_ids are the digests.
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = canonical_json(&serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }));
    let (config_digest, _) = client.push_blob_bytes(repository, &config)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": layers,
    });
    client.put_manifest(&target, &canonical_json(&manifest), OCI_MANIFEST)?;
    Ok(tag)
}

#[cfg(test)]
#[path = "referrers_tests.rs"]
mod tests;
