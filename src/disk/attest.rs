//! Signed statements about a VM disk: the image's SLSA provenance, with the disk files
//! as subjects (one per format), the OCI image and the kernel as dependencies, and the
//! `vm:` parameters and host tool versions recorded; and the image's SPDX SBOM (the
//! same document embedded in the disk) about the same subjects. DSSE, Ed25519, one
//! envelope per line, exactly as for images.

use super::{DiskFile, DiskInput, DiskPlan};
use crate::attest::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::attest::intoto::{self, ResourceDescriptor};
use crate::keys::SigningKey;
use serde_json::json;
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
    // The image's facts, gathered once by the build; a disk records no run times.
    let mut provenance = intoto::provenance(&intoto::ProvenanceFacts {
        times: None,
        ..input.provenance.clone()
    });
    let vm = &plan.vm;
    let parameters = json!({
        "boot": vm.boot.name(),
        "stub": plan.stub.as_ref().map(|s| json!({"source": vm.stub.as_ref().map(|f| &f.source), "sha256": s.sha256.hex()})),
        "cmdline": vm.cmdline,
        "formats": vm.formats.iter().map(|f| f.extension()).collect::<Vec<_>>(),
        "kernel": {"source": vm.kernel.source, "path": vm.kernel.path, "sha256": plan.kernel.sha256.hex()},
        "initrd": plan.initrd.as_ref().map(|i| json!({"source": vm.initrd.as_ref().map(|f| &f.source), "sha256": i.sha256.hex()})),
        "root": {"fs": vm.root.fs.name(), "size": vm.root.size, "partition": super::ROOT_PARTITION_NAME},
    });
    let definition = &mut provenance.build_definition;
    definition
        .internal_parameters
        .insert("vm".into(), parameters);
    definition.resolved_dependencies.push(ResourceDescriptor {
        name: Some("oci-image".into()),
        digest: BTreeMap::from([("sha256".to_string(), input.provenance.manifest_digest.hex())]),
        annotations: BTreeMap::from([
            ("kind".to_string(), json!("image")),
            (
                "note".to_string(),
                json!("the disk's root file system is this image's"),
            ),
        ]),
        ..Default::default()
    });
    provenance
        .run_details
        .builder
        .version
        .extend(plan.tools.versions());
    let statement = intoto::provenance_statement_about(subjects.clone(), &provenance);
    let mut line = Envelope::sign(INTOTO_PAYLOAD_TYPE, statement.to_json(), key).to_json();
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
