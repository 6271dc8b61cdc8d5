//! Signed statements about a VM disk: the image's SLSA provenance, with the disk files
//! as subjects (one per format), the OCI image and the kernel as dependencies, and the
//! `vm:` parameters (with the command line as written, and the dm-verity root hash and
//! salt of a verity root) and host tool versions recorded; and the image's SPDX SBOM (the
//! same document embedded in the disk) about the same subjects. DSSE, Ed25519, one
//! envelope per line, exactly as for images.

use super::boot::{BootId, BootIds};
use super::verity::Verity;
use super::{DiskFile, DiskInput, DiskPlan};
use crate::attest::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::attest::intoto::{self, ResourceDescriptor};
use crate::keys::SigningKey;
use crate::recipe::{VmFile, VmFileFrom, VmInitrd};
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

/// How the provenance names a boot file: its source (and, for the kernel, the member
/// path) and SHA-256; for a file of the image, its path there and the source that put
/// it there (the package).
fn named(file: &VmFile, boot: &BootId, with_member: bool) -> serde_json::Value {
    match (&file.from, &boot.in_image) {
        (_, Some(image)) => json!({
            "image_path": image.path,
            "source": image.from,
            "sha256": boot.sha256.hex(),
        }),
        (VmFileFrom::Source { name, path }, None) if with_member => {
            json!({"source": name, "path": path, "sha256": boot.sha256.hex()})
        }
        (VmFileFrom::Source { name, .. }, None) => {
            json!({"source": name, "sha256": boot.sha256.hex()})
        }
        (VmFileFrom::Image { .. }, None) => unreachable!("a file of the image is found in it"),
    }
}

/// The initrd: a file as [`named`] records it, or one cairn built, with the recipe's
/// request and every member's path, digest (or link target), image path and origin.
fn initrd(initrd: &VmInitrd, boot: &BootId) -> serde_json::Value {
    match initrd {
        VmInitrd::File(file) => named(file, boot, false),
        VmInitrd::Built(spec) => json!({
            "sha256": boot.sha256.hex(),
            "built": {
                "init": spec.init.name,
                "files": spec.files.iter().map(|f| &f.name).collect::<Vec<_>>(),
                "modules": spec.modules.iter().map(|m| &m.name).collect::<Vec<_>>(),
                "members": boot.initrd_members.iter().flatten().map(|m| json!({
                    "path": m.path,
                    "sha256": m.sha256.map(|d| d.hex()),
                    "target": m.target,
                    "image_path": m.image_path,
                    "from": m.from,
                })).collect::<Vec<_>>(),
            },
        }),
    }
}

/// What the disk build wrote that the statements record: the disk files (the
/// subjects), the kernel command line as written (the recipe's, plus `roothash=` for
/// a verity root) and the verity tree.
pub struct Written<'a> {
    pub files: &'a [DiskFile],
    pub cmdline: &'a str,
    pub verity: Option<&'a Verity>,
}

/// Both statements, each signed in a DSSE envelope, as JSON Lines written to `out`;
/// the SPDX document is streamed from its blob, never held in memory.
pub fn write_signed_statements(
    plan: &DiskPlan,
    boot: &BootIds,
    input: &DiskInput,
    written: &Written,
    key: &SigningKey,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let subjects = subjects(written.files);
    // The image's facts, gathered once by the build; a disk records no run times.
    let mut provenance = intoto::provenance(&intoto::ProvenanceFacts {
        times: None,
        ..input.provenance.clone()
    });
    let vm = &plan.vm;
    let mut root = json!({"fs": vm.root.fs.name(), "size": vm.root.size, "partition": super::ROOT_PARTITION_NAME});
    if let Some(verity) = written.verity {
        root["verity"] = serde_json::to_value(verity).expect("verity parameters serialise");
    }
    let mut parameters = json!({
        "boot": vm.boot.name(),
        "stub": vm.stub.as_ref().zip(boot.stub.as_ref()).map(|(f, s)| named(f, s, false)),
        "cmdline": written.cmdline,
        "formats": vm.formats.iter().map(|f| f.extension()).collect::<Vec<_>>(),
        "kernel": named(&vm.kernel, &boot.kernel, true),
        "initrd": vm.initrd.as_ref().zip(boot.initrd.as_ref()).map(|(f, i)| initrd(f, i)),
        "root": root,
    });
    if let Some(key) = &plan.secure_boot {
        // The certificate names the signer; the key itself is never recorded.
        parameters["secure_boot"] = json!({
            "cert_sha256": key.cert_sha256.hex(),
            "cert_subject": key.subject,
        });
    }
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
