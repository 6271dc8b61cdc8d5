//! Signed statements about a VM disk: the image's SLSA provenance, with the disk files
//! as subjects (one per format), the OCI image and the kernel as dependencies, and the
//! `vm:` parameters (with the command line as written, and the dm-verity root hash and
//! salt of a verity root) and host tool versions recorded; and the image's SPDX SBOM (the
//! same document embedded in the disk) about the same subjects. DSSE, Ed25519, one
//! envelope per line, exactly as for images.

use super::boot::{BootId, BootIds};
use super::initrd::InitrdMember;
use super::verity::Verity;
use super::{DiskFile, DiskInput, DiskPlan};
use crate::attest::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::attest::intoto::{self, ResourceDescriptor};
use crate::keys::SigningKey;
use crate::oci::compression::Compression;
use crate::oci::time::rfc3339;
use crate::recipe::{VmFile, VmFileFrom, VmInitrd};
use serde_json::json;
use sha1::{Digest as _, Sha1};
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
/// request (its `compression` only when it has one, so that an uncompressed initrd's
/// record is as it was) and every member's path, digest (or link target), image path
/// and origin.
fn initrd(initrd: &VmInitrd, boot: &BootId) -> serde_json::Value {
    match initrd {
        VmInitrd::File(file) => named(file, boot, false),
        VmInitrd::Built(spec) => {
            let mut built = json!({
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
            });
            if spec.compression != Compression::None {
                built["compression"] = json!(spec.compression.name());
            }
            json!({"sha256": boot.sha256.hex(), "built": built})
        }
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
    out.write_all(b"\n")?;
    if let Some(initrd) = boot.initrd.as_ref().filter(|i| i.initrd_members.is_some()) {
        let document = initrd_spdx(input, initrd)?;
        let (before, after) = intoto::statement_around_predicate(&subjects);
        let statement = [before, document, after].concat();
        let mut line = Envelope::sign(INTOTO_PAYLOAD_TYPE, statement, key).to_json();
        line.push(b'\n');
        out.write_all(&line)?;
    }
    Ok(())
}

/// The SPDX id of the built initrd's package in its document.
pub const INITRD_SPDX_ID: &str = "SPDXRef-Initrd";

/// The initrd cairn built, as an SPDX 2.3 document of its own (the image's SBOM is in
/// the image, which the initrd is made from, so it cannot list it): one package
/// `SPDXRef-Initrd` (purpose ARCHIVE, its SHA-256, files analysed) that CONTAINS each
/// regular file (SHA-1 and SHA-256, and in its comment the image path it was copied
/// from and what put that there) and is GENERATED_FROM the image's package in the
/// image's document, referenced by namespace and SHA-1; `modules.dep` is
/// GENERATED_FROM the modules it lists.
fn initrd_spdx(input: &DiskInput, initrd: &BootId) -> std::io::Result<Vec<u8>> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "documentNamespace")]
        namespace: String,
    }
    let image_document: Head =
        serde_json::from_reader(std::io::BufReader::new(std::fs::File::open(input.spdx)?))?;
    let mut sha1 = Sha1::new();
    std::io::copy(&mut std::fs::File::open(input.spdx)?, &mut sha1)?;
    let name = &input.recipe.name;
    let files: Vec<&InitrdMember> = initrd
        .initrd_members
        .iter()
        .flatten()
        .filter(|m| m.sha1.is_some())
        .collect();
    let id = |i: usize| format!("SPDXRef-File-{i}");
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": INITRD_SPDX_ID,
    })];
    relationships.push(json!({
        "spdxElementId": INITRD_SPDX_ID,
        "relationshipType": "GENERATED_FROM",
        "relatedSpdxElement": "DocumentRef-image:SPDXRef-Image",
    }));
    let modules: Vec<usize> = (0..files.len())
        .filter(|i| files[*i].path.ends_with(".ko"))
        .collect();
    for (i, file) in files.iter().enumerate() {
        relationships.push(json!({
            "spdxElementId": INITRD_SPDX_ID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id(i),
        }));
        if file.image_path.is_none() {
            for m in &modules {
                relationships.push(json!({
                    "spdxElementId": id(i),
                    "relationshipType": "GENERATED_FROM",
                    "relatedSpdxElement": id(*m),
                }));
            }
        }
    }
    let mut sha1s: Vec<&str> = files.iter().filter_map(|f| f.sha1.as_deref()).collect();
    sha1s.sort_unstable();
    let verification_code = hex::encode(Sha1::digest(sha1s.concat().as_bytes()));
    let document = json!({
        "SPDXID": "SPDXRef-DOCUMENT",
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "name": format!("{name}.initrd"),
        "documentNamespace": format!("https://spdx.org/spdxdocs/cairn-{name}-initrd-{}", initrd.sha256.hex()),
        "creationInfo": {
            "created": rfc3339(input.epoch),
            "creators": [format!("Tool: cairn-{}", input.provenance.cairn_version)],
        },
        "externalDocumentRefs": [{
            "externalDocumentId": "DocumentRef-image",
            "spdxDocument": image_document.namespace,
            "checksum": {"algorithm": "SHA1", "checksumValue": hex::encode(sha1.finalize())},
        }],
        "packages": [{
            "SPDXID": INITRD_SPDX_ID,
            "name": format!("{name}.initrd"),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": true,
            "packageVerificationCode": {"packageVerificationCodeValue": verification_code},
            "checksums": [{"algorithm": "SHA256", "checksumValue": initrd.sha256.hex()}],
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "ARCHIVE",
            "comment": format!("cairn: the initrd built from files of the image {name} (vm.initrd), a newc cpio"),
        }],
        "files": files.iter().enumerate().map(|(i, f)| json!({
            "SPDXID": id(i),
            "fileName": format!(".{}", f.path),
            "checksums": [
                {"algorithm": "SHA1", "checksumValue": f.sha1},
                {"algorithm": "SHA256", "checksumValue": f.sha256.map(|d| d.hex())},
            ],
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "comment": match &f.image_path {
                Some(path) => format!("cairn: copied from {path} of the image, put there by {}", f.from),
                None => format!("cairn: {}", f.from),
            },
        })).collect::<Vec<_>>(),
        "relationships": relationships,
    });
    Ok(crate::oci::json::canonical_json(&document))
}
