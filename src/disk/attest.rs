//! Signed statements about a VM disk: the image's SLSA provenance, with the disk files
//! as subjects (one per format), the OCI image and the kernel as dependencies, and the
//! `vm:` parameters and host tool versions recorded; and the image's SPDX SBOM (the
//! same document embedded in the disk) about the same subjects. DSSE, Ed25519, one
//! envelope per line, exactly as for images.

use super::{DiskFile, DiskInput, DiskPlan};
use crate::attest::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::attest::intoto::{self, ResourceDescriptor};
use crate::keys::SigningKey;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The subjects of every disk statement: `{name: <file name>, digest: {sha256}}`.
pub fn subjects(files: &[DiskFile]) -> Vec<ResourceDescriptor> {
    files
        .iter()
        .map(|f| ResourceDescriptor {
            name: f.path.file_name().map(|n| n.to_string_lossy().into_owned()),
            digest: BTreeMap::from([("sha256".to_string(), f.sha256.hex())]),
            ..Default::default()
        })
        .collect()
}

/// Both statements, each signed in a DSSE envelope, as JSON Lines written to `out`;
/// the SPDX document is streamed from its blob, never held in memory.
pub fn write_signed_statements(
    plan: &DiskPlan,
    input: &DiskInput,
    files: &[DiskFile],
    key: &SigningKey,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let subjects = subjects(files);
    let facts = intoto::ProvenanceFacts {
        image_name: &input.recipe.name,
        manifest_digest: input.image_manifest,
        recipe_file_name: input.recipe_file_name,
        recipe_sha256: crate::digest::Sha256Digest::of(input.recipe.file.text.as_bytes()),
        lock_sha256: input.lock_sha256,
        epoch: input.epoch,
        platform: &input.recipe.platform.to_string(),
        base: None,
        sources: input.sources,
        cairn_version: input.cairn_version,
        times: None,
    };
    let mut provenance = intoto::provenance_statement(&facts);
    provenance.subject = subjects.clone();
    let vm = &plan.vm;
    let predicate = &mut provenance.predicate;
    let boot = match vm.boot {
        crate::recipe::BootMode::Direct => "direct",
        crate::recipe::BootMode::Uefi => "uefi",
    };
    predicate["buildDefinition"]["internalParameters"]["vm"] = json!({
        "boot": boot,
        "stub": plan.stub.as_ref().map(|s| json!({"source": vm.stub.as_ref().map(|f| &f.source), "sha256": s.sha256.hex()})),
        "cmdline": vm.cmdline,
        "formats": vm.formats.iter().map(|f| f.extension()).collect::<Vec<_>>(),
        "kernel": {"source": vm.kernel.source, "path": vm.kernel.path, "sha256": plan.kernel.sha256.hex()},
        "initrd": plan.initrd.as_ref().map(|i| json!({"source": vm.initrd.as_ref().map(|f| &f.source), "sha256": i.sha256.hex()})),
        "root": {"fs": vm.root.fs.name(), "size": vm.root.size, "partition": super::ROOT_PARTITION_NAME},
    });
    if let Value::Array(deps) = &mut predicate["buildDefinition"]["resolvedDependencies"] {
        deps.push(json!({
            "name": "oci-image",
            "digest": {"sha256": input.image_manifest.hex()},
            "annotations": {"kind": "image", "note": "the disk's root file system is this image's"},
        }));
    }
    let versions = &mut predicate["runDetails"]["builder"]["version"];
    for (tool, version) in plan.tools.versions() {
        versions[tool] = version.into();
    }
    let mut line = Envelope::sign(INTOTO_PAYLOAD_TYPE, provenance.to_json(), key).to_json();
    line.push(b'\n');
    out.write_all(&line)?;
    intoto::write_signed_sbom_statement(
        &intoto::statement_around_predicate(&subjects),
        input.spdx,
        input.spdx_size,
        key,
        out,
    )?;
    out.write_all(b"\n")
}
