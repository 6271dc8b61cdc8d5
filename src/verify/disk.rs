//! `cairn verify DISK`: checks that a VM disk proves what it claims, with the same
//! checks as for images where they apply. The statements are read from
//! `<name>.disk.intoto.jsonl` beside the disk (`<name>.raw` or `<name>.qcow2`).
//!
//! 1. `disk`: the disk has a valid GPT with a `root` partition whose ext4 file system
//!    e2fsprogs can read ([`crate::disk::read`]).
//! 2. `signatures`: every envelope verifies with a trusted key, and at least one does.
//! 3. `subject`: every statement names this disk file's SHA-256.
//! 4. `provenance`: a signed SLSA v1 provenance statement is present.
//! 5. `sbom`: the signed SPDX SBOM lists exactly the regular files of the disk's root
//!    file system (as read back, apart from the embedded SBOM files themselves) with
//!    their SHA-256s, and the SBOM embedded in the disk is that same document.
//! 6. `boot`: what boots is what the provenance names: for `boot: uefi` the unified
//!    kernel image in the EFI system partition carries the recorded kernel (`.linux`),
//!    initrd and command line; for `boot: direct`, `<name>.vmlinuz` beside the disk is
//!    the recorded kernel and `<name>.cmdline` the recorded command line.
//! 7. `secure_boot` (a signed unified kernel image): the image in the EFI system
//!    partition carries a valid Authenticode signature by the certificate the
//!    provenance records, over its own bytes ([`secure_boot`]).
//! 8. `initrd` (an initrd cairn built): it holds exactly the recorded members, each file
//!    the image's own, and its signed SPDX document lists them ([`initrd`]).
//! 9. `verity` (a dm-verity root): the provenance's root hash is the root of the hash
//!    partition's tree, which covers every block of the root partition ([`verity`]).
//! 10. `policy`: the policy's rules on source digests and signers hold.
//! 11. `rebuild` (with a rebuilt digest): a fresh build gives the same disk bytes.

mod initrd;
mod secure_boot;
mod verity;

use super::{check_policy, compare_files, spdx_file_sha256s, Checks, Policy, Verdict};
use crate::attest::dsse::{Envelope, INTOTO_PAYLOAD_TYPE};
use crate::attest::intoto::{Provenance, Statement, SLSA_PROVENANCE_V1, SPDX_PREDICATE};
use crate::build::names::SBOM_DIR;
use crate::disk::{read, uki};
use crate::keys::VerifyingKey;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The image name a disk file is named for (`out/hello.qcow2` -> `hello`).
pub fn disk_name(disk: &Path) -> String {
    disk.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where the statements about `disk` are.
pub fn attestations_path(disk: &Path) -> PathBuf {
    disk.with_file_name(format!("{}.disk.intoto.jsonl", disk_name(disk)))
}

pub fn verify(
    disk: &Path,
    trusted: &[VerifyingKey],
    policy: &Policy,
    rebuilt: Option<&str>,
) -> Verdict {
    let mut checks = Checks(Vec::new());
    let digest = match std::fs::File::open(disk).and_then(crate::digest::sha256_reader) {
        Ok((d, _)) => d,
        Err(e) => {
            checks.fail("disk", format!("{}: {e}", disk.display()));
            return checks.verdict(None);
        }
    };
    let root = match read::root_files(disk) {
        Ok(r) => {
            checks.pass(
                "disk",
                format!(
                    "GPT and root file system read back: {} regular files",
                    r.files.len()
                ),
            );
            Some(r)
        }
        Err(e) => {
            checks.fail("disk", e.to_string());
            None
        }
    };
    let statements = signed_statements(disk, trusted, policy, &mut checks);
    let want = digest.hex();
    let wrong: Vec<String> = statements
        .iter()
        .filter(|s| {
            !s.subject
                .iter()
                .any(|d| d.digest.get("sha256") == Some(&want))
        })
        .map(|s| format!("a {} statement is not about this disk", s.predicate_type))
        .collect();
    if statements.is_empty() {
        checks.fail("subject", "no verified statement to check");
    } else if wrong.is_empty() {
        checks.pass("subject", format!("every statement names {digest}"));
    } else {
        checks.fail("subject", wrong.join("; "));
    }
    let provenance = statements
        .iter()
        .find(|s| s.predicate_type == SLSA_PROVENANCE_V1)
        .map(|s| serde_json::from_value::<Provenance>(s.predicate.clone()));
    let provenance = match provenance {
        Some(Ok(p)) => {
            checks.pass(
                "provenance",
                format!(
                    "SLSA v1, {} resolved dependencies",
                    p.build_definition.resolved_dependencies.len()
                ),
            );
            Some(p)
        }
        Some(Err(e)) => {
            checks.fail("provenance", format!("malformed provenance: {e}"));
            None
        }
        None => {
            checks.fail("provenance", "no signed SLSA v1 provenance statement");
            None
        }
    };
    match (
        &root,
        statements
            .iter()
            .find(|s| s.predicate_type == SPDX_PREDICATE),
    ) {
        (Some(root), Some(sbom)) => check_sbom(disk, root, &sbom.predicate, &mut checks),
        (_, None) if policy.require_sbom => checks.fail("sbom", "no signed SBOM statement"),
        _ => {}
    }
    if let (Some(root), Some(p)) = (&root, &provenance) {
        check_boot(disk, root, p, &mut checks);
        secure_boot::check_secure_boot(root.uki.as_deref(), p, &mut checks);
        initrd::check_initrd(disk, root, p, &statements, &mut checks);
    }
    verity::check_verity(disk, provenance.as_ref(), &mut checks);
    check_policy(provenance.as_ref(), policy, &mut checks);
    if let Some(rebuilt) = rebuilt {
        if rebuilt == digest.to_string() {
            checks.pass(
                "rebuild",
                format!("a fresh build gives the same disk {rebuilt}"),
            );
        } else {
            checks.fail(
                "rebuild",
                format!("a fresh build gives disk {rebuilt}, this disk is {digest}"),
            );
        }
    }
    checks.verdict(Some(digest.to_string()))
}

fn signed_statements(
    disk: &Path,
    trusted: &[VerifyingKey],
    policy: &Policy,
    checks: &mut Checks,
) -> Vec<Statement> {
    let path = attestations_path(disk);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) => {
            checks.fail(
                "signatures",
                format!(
                    "{}: {e} (was the disk built with --sign-key?)",
                    path.display()
                ),
            );
            return Vec::new();
        }
    };
    let (mut statements, mut failures, mut signers) = (Vec::new(), Vec::new(), Vec::new());
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let outcome = Envelope::from_json(line)
            .map_err(|e| e.to_string())
            .and_then(|env| {
                if env.payload_type != INTOTO_PAYLOAD_TYPE {
                    return Err(format!("payloadType is {:?}", env.payload_type));
                }
                let keys = env.verify(trusted).map_err(|e| e.to_string())?;
                if !policy.signers.is_empty() && !keys.iter().any(|k| policy.signers.contains(k)) {
                    return Err(format!("signed by {keys:?}, not a policy signer"));
                }
                let statement: Statement = serde_json::from_slice(&env.payload)
                    .map_err(|e| format!("payload is not an in-toto statement: {e}"))?;
                Ok((statement, keys))
            });
        match outcome {
            Ok((s, keys)) => {
                statements.push(s);
                signers.extend(keys);
            }
            Err(e) => failures.push(format!("line {}: {e}", i + 1)),
        }
    }
    signers.sort();
    signers.dedup();
    if !failures.is_empty() {
        checks.fail("signatures", failures.join("; "));
    } else if statements.is_empty() {
        checks.fail(
            "signatures",
            format!("{} holds no envelope", path.display()),
        );
    } else {
        checks.pass(
            "signatures",
            format!(
                "{} envelopes verify, signed by {}",
                statements.len(),
                signers.join(", ")
            ),
        );
    }
    statements
}

fn check_sbom(disk: &Path, root: &read::RootFiles, spdx: &serde_json::Value, checks: &mut Checks) {
    let name = disk_name(disk);
    let embedded_at = format!("{SBOM_DIR}/{name}.spdx.json");
    let embedded = root
        .read(&embedded_at)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    if embedded.as_ref() != Some(spdx) {
        return checks.fail(
            "sbom",
            format!("{embedded_at} in the disk is missing or is not the signed SBOM"),
        );
    }
    let claimed = spdx_file_sha256s(spdx);
    // The SBOM cannot list itself: the embedded SBOM files are left out.
    let sbom_files = [embedded_at.clone(), format!("{SBOM_DIR}/{name}.cdx.json")];
    let actual: BTreeMap<String, String> = root
        .files
        .iter()
        .filter(|(path, _)| !sbom_files.contains(path))
        .map(|(path, e)| (path.trim_start_matches('/').to_string(), e.sha256.hex()))
        .collect();
    let mut problems = Vec::new();
    compare_files("SPDX SBOM", &claimed, &actual, &mut problems);
    if problems.is_empty() {
        checks.pass(
            "sbom",
            format!(
                "the signed SPDX SBOM lists exactly the {} files of the root file system, and the disk embeds it",
                actual.len()
            ),
        );
    } else {
        checks.fail("sbom", problems.join("; "));
    }
}

fn check_boot(disk: &Path, root: &read::RootFiles, provenance: &Provenance, checks: &mut Checks) {
    let vm = &provenance.build_definition.internal_parameters.get("vm");
    let Some(vm) = vm else {
        return checks.fail("boot", "the provenance records no `vm` parameters");
    };
    let kernel_sha = vm["kernel"]["sha256"].as_str().unwrap_or_default();
    let initrd_sha = vm["initrd"]["sha256"].as_str();
    let cmdline = vm["cmdline"].as_str().unwrap_or_default();
    let sha = |b: &[u8]| crate::digest::Sha256Digest::of(b).hex();
    let mut problems = Vec::new();
    let what = match (vm["boot"].as_str(), &root.uki) {
        (Some("uefi"), Some(uki)) => match uki::sections(uki) {
            Ok(sections) => {
                let get = |n: &str| sections.iter().find(|s| s.name == n).map(|s| s.bytes);
                if get(".linux").map(sha).as_deref() != Some(kernel_sha) {
                    problems.push("its .linux is not the recorded kernel".to_string());
                }
                if get(".initrd").map(sha).as_deref() != initrd_sha {
                    problems.push("its .initrd is not the recorded initrd".to_string());
                }
                if get(".cmdline") != Some(cmdline.as_bytes()) {
                    problems.push("its .cmdline is not the recorded command line".to_string());
                }
                "the unified kernel image in the EFI system partition carries"
            }
            Err(e) => {
                problems.push(e.to_string());
                "the unified kernel image"
            }
        },
        (Some("uefi"), None) => {
            problems
                .push("the disk has no EFI system partition with \\EFI\\BOOT\\BOOTX64.EFI".into());
            "the disk"
        }
        _ => {
            let beside = |ext: &str| disk.with_file_name(format!("{}.{ext}", disk_name(disk)));
            match std::fs::read(beside("vmlinuz")) {
                Ok(k) if sha(&k) == kernel_sha => {}
                Ok(_) => problems.push(format!(
                    "{} is not the recorded kernel",
                    beside("vmlinuz").display()
                )),
                Err(e) => problems.push(format!("{}: {e}", beside("vmlinuz").display())),
            }
            if let Some(want) = initrd_sha {
                match std::fs::read(beside("initrd")) {
                    Ok(i) if sha(&i) == want => {}
                    Ok(_) => problems.push(format!(
                        "{} is not the recorded initrd",
                        beside("initrd").display()
                    )),
                    Err(e) => problems.push(format!("{}: {e}", beside("initrd").display())),
                }
            }
            match std::fs::read_to_string(beside("cmdline")) {
                Ok(c) if c.trim_end_matches('\n') == cmdline => {}
                Ok(_) => problems.push(format!(
                    "{} is not the recorded command line",
                    beside("cmdline").display()
                )),
                Err(e) => problems.push(format!("{}: {e}", beside("cmdline").display())),
            }
            "the kernel, initrd and command line beside the disk are"
        }
    };
    if problems.is_empty() {
        checks.pass(
            "boot",
            format!("{what} the recorded kernel sha256:{kernel_sha} and command line"),
        );
    } else {
        checks.fail("boot", problems.join("; "));
    }
}
