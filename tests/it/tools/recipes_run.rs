//! Every example in `recipes/` runs: each is built as the README says (`--locked`),
//! unpacked with umoci and run with runc, and its entrypoint prints what it should.
//! The arm64 image of `multiarch` runs through QEMU's user-mode emulation
//! (binfmt_misc, which `cargo xtask test` enables). `distroless`, `debian-vm` and
//! `immutable-vm` need the Debian mirror and are run by `tools::debian_mirror`
//! (`debian-vm` booted under QEMU and reached over SSH, `immutable-vm` booted under
//! OVMF with Secure Boot on).
//!
//! The entrypoints are static executables built from `recipes/src/*.S` by
//! `recipes/src/build.sh`; a test rebuilds them and compares the bytes.

use super::interop::run_in_runc;
use crate::common::*;
use std::path::Path;
use std::process::Command;

/// The output of `recipes/bin/hello-<arch>` in an image whose `/etc/motd` is `motd`.
fn greeting(platform: &str, motd: &str) -> String {
    format!("hello from cairn ({platform})\n{motd}")
}

/// Adds a tag `tag` to `layout`'s `index.json` for the image manifest of `platform`
/// in its image index: umoci unpacks a tagged image manifest, not an index.
fn tag_platform(layout: &Path, platform: &str, tag: &str) {
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let inner = &index["manifests"][0]["digest"];
    let inner: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(inner.as_str().unwrap().trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let (os, arch) = platform.split_once('/').unwrap();
    let mut manifest = inner["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["os"] == os && m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("no {platform} image in the index: {inner}"))
        .clone();
    manifest["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": tag });
    index["manifests"].as_array_mut().unwrap().push(manifest);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn hello_runs_under_runc() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    build_json(
        &repo_root().join("recipes/hello.yaml"),
        &out,
        &["--locked", "--quiet"],
    );
    let (stdout, stderr) = run_in_runc(&out.join("hello"), "hello", work.path(), "");
    assert_eq!(
        stdout,
        greeting("linux/amd64", "Built by cairn from a pinned recipe.\n"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn multiarch_runs_under_runc_on_both_platforms() {
    assert!(
        std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64")
            .is_ok_and(|s| s.starts_with("enabled")),
        "arm64 executables have no interpreter: install qemu-user-static and binfmt-support \
         and enable it (`cargo xtask test` does, as root)"
    );
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    build_json(
        &repo_root().join("recipes/multiarch.yaml"),
        &out,
        &["--locked", "--quiet"],
    );
    let motd = std::fs::read_to_string(repo_root().join("recipes/multiarch/motd")).unwrap();
    let layout = out.join("multiarch");
    for platform in ["linux/amd64", "linux/arm64"] {
        let tag = platform.replace('/', "-");
        tag_platform(&layout, platform, &tag);
        let (stdout, stderr) = run_in_runc(&layout, &tag, work.path(), "");
        assert_eq!(
            stdout,
            greeting(platform, &motd),
            "{platform}: stderr:\n{stderr}"
        );
    }
}

#[test]
fn the_example_entrypoints_rebuild_from_their_assembly_to_the_same_bytes() {
    let rebuilt = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("sh")
            .arg(repo_root().join("recipes/src/build.sh"))
            .arg(rebuilt.path()),
    );
    for arch in ["amd64", "arm64"] {
        let name = format!("hello-{arch}");
        assert!(
            std::fs::read(rebuilt.path().join(&name)).unwrap()
                == std::fs::read(repo_root().join("recipes/bin").join(&name)).unwrap(),
            "recipes/bin/{name} is not what recipes/src/build.sh builds from \
             recipes/src/{name}.S: run `sh recipes/src/build.sh` and update the pins \
             (recipes/hello.yaml, hello.lock, multiarch.lock)"
        );
    }
}
