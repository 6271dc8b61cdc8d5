//! The attest stage of one platform's image: the provenance and the SPDX statement,
//! signed when the build has a key, and every artifact (the SBOMs, the signed
//! envelopes) attached to the image manifest as a referrer.

use super::context::BuildContext;
use super::error::BuildError;
use super::image::Image;
use super::layers::Layers;
use super::names::{self, CAIRN_VERSION};
use super::plan::Plan;
use crate::attest::{dsse, intoto, sbom};
use crate::digest::Sha256Digest;
use crate::image::{self, Artifact};
use crate::keys::SigningKey;
use crate::oci::json::canonical_json;
use crate::oci::layout::{LayoutWriter, StoredBlob};
use crate::output::OutputError;
use crate::resolve::platforms::PlatformSources;
use std::path::Path;

/// One platform's attestations, in the layout.
pub struct Attestations {
    /// SBOM and attestation manifests whose subject is the image, with their
    /// artifact types.
    pub referrers: Vec<(String, StoredBlob)>,
    /// The signed DSSE envelope blobs (none when unsigned).
    pub envelopes: Vec<Sha256Digest>,
}

/// Signs the statements about `image` (when there is a key) and attaches them and the
/// SBOMs in `layers` to it.
pub fn attest(
    cx: &BuildContext,
    plan: &Plan,
    platform: &PlatformSources,
    layers: &Layers,
    image: &Image,
) -> Result<Attestations, BuildError> {
    let recipe = &platform.recipe;
    let mut artifacts = vec![
        Artifact {
            artifact_type: sbom::SPDX_MEDIA_TYPE.into(),
            blob: layers.spdx,
            annotations: Default::default(),
        },
        Artifact {
            artifact_type: sbom::CYCLONEDX_MEDIA_TYPE.into(),
            blob: layers.cyclonedx,
            annotations: Default::default(),
        },
    ];
    let mut envelopes: Vec<Sha256Digest> = Vec::new();
    if let Some(key) = &cx.handles.sign_key {
        cx.observer.stage("sign");
        let names = ProvenanceNames::of(platform);
        let facts = intoto::ProvenanceFacts {
            times: cx
                .started_on
                .zip(cx.now())
                .map(|(s, f)| (crate::oci::time::rfc3339(s), crate::oci::time::rfc3339(f))),
            ..provenance_facts(cx, plan, platform, layers, image, &names)
        };
        let provenance = dsse::Envelope::sign(
            dsse::INTOTO_PAYLOAD_TYPE,
            intoto::provenance_statement(&facts).to_json(),
            key,
        );
        let provenance = cx.layout.put_blob(&provenance.to_json())?;
        let sbom_statement = sign_sbom_statement(
            &intoto::sbom_statement_around(&recipe.name, image.manifest.digest),
            &cx.layout.blob_path(&layers.spdx.digest),
            layers.spdx.size,
            key,
            &cx.layout,
        )?;
        for (predicate_type, blob) in [
            (intoto::SLSA_PROVENANCE_V1, provenance),
            (intoto::SPDX_PREDICATE, sbom_statement),
        ] {
            envelopes.push(blob.digest);
            artifacts.push(Artifact {
                artifact_type: crate::oci::media_type::DSSE_ENVELOPE.into(),
                blob,
                annotations: [(
                    crate::oci::annotation::PREDICATE_TYPE.to_string(),
                    predicate_type.to_string(),
                )]
                .into(),
            });
        }
    }

    let empty_config = cx.layout.put_blob(image::EMPTY_JSON)?;
    let mut referrers = Vec::with_capacity(artifacts.len());
    for artifact in &artifacts {
        let manifest = image::artifact_manifest(artifact, &image.manifest, &empty_config)?;
        referrers.push((
            artifact.artifact_type.clone(),
            cx.layout.put_blob(&canonical_json(&manifest))?,
        ));
    }
    Ok(Attestations {
        referrers,
        envelopes,
    })
}

/// Signs the SPDX in-toto statement (`before`, the SPDX document in the blob at
/// `spdx_path` without its final newline, `after`) and stores the DSSE envelope as a
/// blob. The document is read from the file, twice for the signature and once more
/// for the base64 payload, never held in memory.
fn sign_sbom_statement(
    around: &(Vec<u8>, Vec<u8>),
    spdx_path: &Path,
    spdx_size: u64,
    key: &SigningKey,
    layout: &LayoutWriter,
) -> Result<StoredBlob, BuildError> {
    let mut blob = layout.blob_writer()?;
    intoto::write_signed_sbom_statement(around, spdx_path, spdx_size, key, &mut blob).map_err(
        |source| OutputError::Io {
            path: spdx_path.to_path_buf(),
            source,
        },
    )?;
    Ok(layout.commit_blob(blob)?)
}

/// The names one platform's provenance records, owned here so that
/// [`provenance_facts`] can lend them.
pub struct ProvenanceNames {
    platform: String,
    recipe_file: String,
}

impl ProvenanceNames {
    pub fn of(platform: &PlatformSources) -> Self {
        ProvenanceNames {
            platform: platform.platform.to_string(),
            recipe_file: names::recipe_file_name(&platform.recipe),
        }
    }
}

/// What the provenance of one platform's image states, gathered in this one place,
/// without run times: the image's statement adds those; a VM disk's statement extends
/// the same facts with its own subjects, parameters and tools.
pub fn provenance_facts<'a>(
    cx: &BuildContext,
    plan: &Plan,
    platform: &'a PlatformSources,
    layers: &'a Layers,
    image: &Image,
    names: &'a ProvenanceNames,
) -> intoto::ProvenanceFacts<'a> {
    let recipe = &platform.recipe;
    intoto::ProvenanceFacts {
        image_name: &recipe.name,
        manifest_digest: image.manifest.digest,
        recipe_file_name: &names.recipe_file,
        recipe_sha256: Sha256Digest::of(recipe.file.text.as_bytes()),
        lock_sha256: plan.lock_sha256,
        epoch: cx.epoch,
        platform: &names.platform,
        sources: &layers.sources,
        base: layers.base_info.as_ref(),
        cairn_version: CAIRN_VERSION,
        times: None,
    }
}
