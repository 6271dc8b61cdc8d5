//! The `initrd` check of `cairn verify DISK`, for a disk whose initrd cairn built from
//! the image's files (`vm.initrd: { init, files, modules }`): the initrd that boots
//! (the unified kernel image's `.initrd`, or `<name>.initrd` beside the disk),
//! unpacked if it is compressed, holds
//! exactly the members the signed provenance records, with their digests and link
//! targets, and each member copied from the image is, byte for byte, the file at its
//! recorded image path in this disk's root file system; and the initrd's own signed
//! SPDX document lists exactly its regular files with their SHA-256s. So what the
//! initrd runs traces, through the root file system, to the signed SBOM and the
//! packages in it. A disk whose provenance records no built initrd gets no `initrd`
//! check.

use super::disk_name;
use crate::attest::intoto::{Provenance, Statement, SPDX_PREDICATE};
use crate::digest::Sha256Digest;
use crate::disk::attest::INITRD_SPDX_ID;
use crate::disk::{cpio, initrd, read, uki};
use crate::verify::spdx_file_sha256s;
use crate::verify::Checks;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The most a compressed initrd may unpack to here: a bound on what a hostile disk
/// can make `verify` hold in memory.
const MAX_ARCHIVE: u64 = 1 << 30;

/// What a member is, as recorded and as found: a file's SHA-256 or a link's target.
#[derive(Debug, PartialEq, Eq)]
enum Is {
    File(String),
    Link(String),
}

pub(super) fn check_initrd(
    disk: &Path,
    root: &read::RootFiles,
    provenance: &Provenance,
    statements: &[Statement],
    checks: &mut Checks,
) {
    let vm = provenance.build_definition.internal_parameters.get("vm");
    let Some(built) = vm.map(|vm| &vm["initrd"]["built"]).filter(|b| !b.is_null()) else {
        return;
    };
    let bytes = match (&root.uki, vm.and_then(|vm| vm["boot"].as_str())) {
        (Some(image), Some("uefi")) => uki::sections(image).ok().and_then(|s| {
            s.iter()
                .find(|s| s.name == ".initrd")
                .map(|s| s.bytes.to_vec())
        }),
        _ => std::fs::read(disk.with_file_name(format!("{}.initrd", disk_name(disk)))).ok(),
    };
    let Some(bytes) = bytes else {
        return checks.fail(
            "initrd",
            "the provenance records a built initrd, and the disk boots none",
        );
    };
    let sbom = statements
        .iter()
        .find(|s| {
            s.predicate_type == SPDX_PREDICATE
                && s.predicate["packages"][0]["SPDXID"] == INITRD_SPDX_ID
        })
        .map(|s| &s.predicate);
    let problems = compare(&bytes, built, root, sbom);
    if problems.is_empty() {
        let count = built["members"].as_array().map_or(0, Vec::len);
        checks.pass(
            "initrd",
            format!("the initrd holds exactly its {count} recorded members, each file the one at its image path in the root file system, and its signed SPDX document lists them"),
        );
    } else {
        checks.fail("initrd", problems.join("; "));
    }
}

fn compare(
    bytes: &[u8],
    built: &Value,
    root: &read::RootFiles,
    sbom: Option<&Value>,
) -> Vec<String> {
    let archive = match initrd::decompress(bytes, MAX_ARCHIVE) {
        Ok(archive) => archive,
        Err(e) => return vec![format!("the initrd cannot be unpacked: {e}")],
    };
    let entries = match cpio::read(&archive) {
        Ok(entries) => entries,
        Err(e) => return vec![format!("the initrd is not a newc archive: {e}")],
    };
    let found: BTreeMap<String, Is> = entries
        .iter()
        .filter_map(|e| {
            let is = if e.is_file() {
                Is::File(Sha256Digest::of(e.data).hex())
            } else if e.is_symlink() {
                Is::Link(String::from_utf8_lossy(e.data).into_owned())
            } else {
                return None;
            };
            Some((format!("/{}", e.path), is))
        })
        .collect();
    let members = built["members"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let recorded: BTreeMap<String, Is> = members
        .iter()
        .filter_map(|m| {
            let path = m["path"].as_str()?.to_string();
            match (m["sha256"].as_str(), m["target"].as_str()) {
                (Some(sha), _) => Some((path, Is::File(sha.to_string()))),
                (None, Some(target)) => Some((path, Is::Link(target.to_string()))),
                (None, None) => None,
            }
        })
        .collect();
    let mut problems = Vec::new();
    for (path, is) in &found {
        match recorded.get(path) {
            None => problems.push(format!("{path} is in the initrd but not in the provenance")),
            Some(want) if want != is => {
                problems.push(format!("{path} in the initrd is not the recorded one"))
            }
            Some(_) => {}
        }
    }
    for path in recorded.keys().filter(|p| !found.contains_key(*p)) {
        problems.push(format!("{path} is recorded but not in the initrd"));
    }
    match sbom {
        None => problems.push("no signed SPDX document describes the initrd".into()),
        Some(sbom) => {
            let listed: BTreeMap<String, String> = spdx_file_sha256s(sbom)
                .into_iter()
                .map(|(path, sha)| (format!("/{path}"), sha))
                .collect();
            let files: BTreeMap<&String, &String> = found
                .iter()
                .filter_map(|(path, is)| match is {
                    Is::File(sha) => Some((path, sha)),
                    Is::Link(_) => None,
                })
                .collect();
            for (path, sha) in &files {
                if listed.get(*path) != Some(*sha) {
                    problems.push(format!(
                        "the initrd's SPDX document does not list {path} with its SHA-256"
                    ));
                }
            }
            for path in listed.keys().filter(|p| !files.contains_key(p)) {
                problems.push(format!(
                    "the initrd's SPDX document lists {path}, which the initrd does not hold"
                ));
            }
        }
    }
    // Each file copied from the image is the image's file.
    for member in members {
        let (Some(path), Some(sha), Some(image_path)) = (
            member["path"].as_str(),
            member["sha256"].as_str(),
            member["image_path"].as_str(),
        ) else {
            continue;
        };
        match root.files.get(image_path) {
            Some(file) if file.sha256.hex() == sha => {}
            Some(_) => problems.push(format!(
                "{path} of the initrd is not {image_path} of the root file system"
            )),
            None => problems.push(format!(
                "{path} of the initrd comes from {image_path}, which the root file system does not hold"
            )),
        }
    }
    problems
}
