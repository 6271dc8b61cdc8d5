//! The SBOMs of the example image pass the third-party validators: SPDX 2.3 through
//! `pyspdxtools`, CycloneDX 1.6 through the official JSON schema (cyclonedx-python-lib's
//! strict validator). Broken documents are rejected, proving the validators check.
//! The image contents come from the library stages (recipe, resolve, layers), exactly
//! what `cairn build` feeds the SBOM writers.

use crate::common::{cyclonedx_validate, pyspdxtools, repo_root};
use cairn::attest::contents::image_contents;
use cairn::attest::sbom::{cyclonedx_json, image_verification_code, spdx_json, SbomInput};
use cairn::digest::Sha1Index;
use cairn::layers::{FileData, TreeEntryKind};
use cairn::resolve::{self, LockMode, Lockfile};
use serde_json::Value;
use sha1::{Digest as _, Sha1};
use std::path::Path;

struct Sboms {
    /// Every regular file of the image: its path and SHA-256.
    files: Vec<(String, cairn::digest::Sha256Digest)>,
    spdx: Vec<u8>,
    cyclonedx: Vec<u8>,
}

/// Resolves and assembles recipes/hello.yaml, with licenses added to two of its sources
/// (an SPDX expression and a `LicenseRef-`), and writes both SBOMs.
fn hello_sboms(staging: &Path) -> Sboms {
    let recipe_path = repo_root().join("recipes/hello.yaml");
    let mut recipe = cairn::recipe::load(&recipe_path).unwrap_or_else(|d| panic!("{d}"));
    recipe.sources.get_mut("app").unwrap().license = Some("Apache-2.0 OR MIT".to_string());
    recipe.sources.get_mut("site").unwrap().license =
        Some("LicenseRef-cairn-example AND CC-BY-4.0".to_string());
    let lock_path = resolve::lock_path_for(&recipe.file.path);
    let lock = Lockfile::read(&lock_path).unwrap();
    let mut resolved = resolve::resolve(
        &recipe,
        &lock,
        &lock_path,
        LockMode::Locked,
        staging,
        None,
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let trees =
        cairn::layers::assemble(&recipe, &mut resolved, None).unwrap_or_else(|e| panic!("{e}"));
    let contents = image_contents(&recipe, &resolved, None, &trees);

    // What the layer writer computes while it writes: SHA-1 next to SHA-256.
    let sha1: Sha1Index = trees
        .iter()
        .flat_map(|tree| tree.entries.values())
        .filter_map(|entry| match &entry.kind {
            TreeEntryKind::File(FileData::Source(c)) => {
                Some(std::fs::read(c.path_in(entry.origin.rel_path())).unwrap())
            }
            TreeEntryKind::File(FileData::Inline(b)) => Some(b.to_vec()),
            _ => None,
        })
        .map(|bytes| {
            (
                cairn::digest::Sha256Digest::of(&bytes),
                Sha1::digest(&bytes).into(),
            )
        })
        .collect();

    let platform = recipe.platform.to_string();
    let input = SbomInput {
        image_name: &recipe.name,
        epoch: cairn::build::effective_epoch(&recipe, None),
        platform: &platform,
        recipe_file_name: "hello.yaml",
        contents: &contents,
        cairn_version: env!("CARGO_PKG_VERSION"),
        sha1: &sha1,
        image_verification_code: image_verification_code(contents.files.clone(), &sha1).unwrap(),
    };
    let spdx = spdx_json(&input).unwrap();
    let cyclonedx = cyclonedx_json(&input);
    Sboms {
        files: contents
            .files
            .iter()
            .map(|f| (f.path(), f.sha256()))
            .collect(),
        spdx,
        cyclonedx,
    }
}

fn write_json(dir: &Path, name: &str, value: &Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}

#[test]
fn hello_sboms_pass_pyspdxtools_and_the_cyclonedx_1_6_schema() {
    let staging = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let sboms = hello_sboms(staging.path());
    assert!(sboms.files.len() >= 5, "{:?}", sboms.files);

    let spdx_path = out.path().join("hello.spdx.json");
    std::fs::write(&spdx_path, &sboms.spdx).unwrap();
    pyspdxtools(&spdx_path).unwrap_or_else(|e| panic!("pyspdxtools rejected the SPDX: {e}"));
    let cdx_path = out.path().join("hello.cdx.json");
    std::fs::write(&cdx_path, &sboms.cyclonedx).unwrap();
    cyclonedx_validate(&cdx_path)
        .unwrap_or_else(|e| panic!("the CycloneDX 1.6 schema rejected the BOM: {e}"));

    // Every file of the image is in both, with its SHA-256.
    let spdx: Value = serde_json::from_slice(&sboms.spdx).unwrap();
    let cdx: Value = serde_json::from_slice(&sboms.cyclonedx).unwrap();
    for (path, sha256) in &sboms.files {
        let name = format!(".{path}");
        let entry = spdx["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["fileName"] == name.as_str())
            .unwrap_or_else(|| panic!("{path} missing from the SPDX"));
        assert_eq!(entry["checksums"][1]["checksumValue"], sha256.hex());
        let component = cdx["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["bom-ref"] == format!("file:{path}").as_str())
            .unwrap_or_else(|| panic!("{path} missing from the CycloneDX"));
        assert_eq!(component["hashes"][0]["content"], sha256.hex());
    }
    // The script copied from the `app` source traces back to it.
    let hello = spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileName"] == "./usr/bin/hello")
        .unwrap();
    assert!(spdx["relationships"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!({
            "spdxElementId": hello["SPDXID"],
            "relationshipType": "GENERATED_FROM",
            "relatedSpdxElement": "SPDXRef-Source-app",
        })));

    // No host path leaks: neither the checkout nor the staging directory.
    for sbom in [&sboms.spdx, &sboms.cyclonedx] {
        let text = String::from_utf8_lossy(sbom);
        for host in [repo_root(), staging.path().to_path_buf()] {
            let host = host.display().to_string();
            assert!(!text.contains(&host), "{host} appears in an SBOM");
        }
    }
}

#[test]
fn sboms_of_the_same_recipe_are_identical_bytes() {
    let a = hello_sboms(tempfile::tempdir().unwrap().path());
    let b = hello_sboms(tempfile::tempdir().unwrap().path());
    assert_eq!(a.spdx, b.spdx);
    assert_eq!(a.cyclonedx, b.cyclonedx);
}

#[test]
fn the_validators_reject_broken_sboms() {
    let staging = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let sboms = hello_sboms(staging.path());
    let spdx: Value = serde_json::from_slice(&sboms.spdx).unwrap();
    let cdx: Value = serde_json::from_slice(&sboms.cyclonedx).unwrap();

    // A file with only a SHA-256: SPDX 2.3 clause 8.4 requires SHA1.
    let mut no_sha1 = spdx.clone();
    no_sha1["files"][0]["checksums"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["algorithm"] != "SHA1");
    let err = pyspdxtools(&write_json(out.path(), "no-sha1.spdx.json", &no_sha1)).unwrap_err();
    assert!(err.contains("SHA1"), "{err}");

    // A relationship to an element the document does not have.
    let mut dangling = spdx.clone();
    dangling["relationships"][1]["relatedSpdxElement"] = "SPDXRef-Nowhere".into();
    let err = pyspdxtools(&write_json(out.path(), "dangling.spdx.json", &dangling)).unwrap_err();
    assert!(err.contains("SPDXRef-Nowhere"), "{err}");

    // A file whose hash is not a SHA-256 value.
    let mut bad_hash = cdx.clone();
    let last = bad_hash["components"].as_array().unwrap().len() - 1;
    bad_hash["components"][last]["hashes"][0]["content"] = "not-a-digest".into();
    let err =
        cyclonedx_validate(&write_json(out.path(), "bad-hash.cdx.json", &bad_hash)).unwrap_err();
    assert!(err.contains("not-a-digest"), "{err}");

    // A component without its required `type`.
    let mut no_type = cdx.clone();
    no_type["components"][0]
        .as_object_mut()
        .unwrap()
        .remove("type");
    let err =
        cyclonedx_validate(&write_json(out.path(), "no-type.cdx.json", &no_type)).unwrap_err();
    assert!(err.contains("'type' is a required property"), "{err}");
}
