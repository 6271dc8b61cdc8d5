//! Multi-platform images: `platforms:` with per-platform (`{arch}`) sources pins each
//! platform's source on its own; a multi-platform base gives each platform its own base
//! manifest; diff compares the images of one platform. The index itself, its
//! attestations, third-party readers and registries are tested in `tools::multiarch`.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of the example recipe `recipes/multiarch.yaml` (with its sources and lock)
/// in a directory of the test's own.
pub(crate) fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let recipes = repo_root().join("recipes");
    for tree in ["multiarch", "bin"] {
        copy_tree(&recipes.join(tree), &dir.path().join(tree));
    }
    for f in ["multiarch.yaml", "multiarch.lock"] {
        std::fs::copy(recipes.join(f), dir.path().join(f)).unwrap();
    }
    let recipe = dir.path().join("multiarch.yaml");
    (dir, recipe)
}

pub(crate) fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub(crate) fn blob(layout: &Path, digest: &str) -> serde_json::Value {
    read_json(
        &layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
}

/// `cairn build RECIPE -o OUT`, for the builds a test expects to fail.
fn build(recipe: &Path, out: &Path) -> Command {
    let mut cmd = cairn();
    cmd.arg("build").arg(recipe).arg("-o").arg(out);
    cmd
}

/// The image index a multi-platform layout's `index.json` names.
fn image_index(layout: &Path) -> serde_json::Value {
    let index_json = read_json(&layout.join("index.json"));
    blob(
        layout,
        index_json["manifests"][0]["digest"].as_str().unwrap(),
    )
}

#[test]
fn each_platform_source_is_pinned_on_its_own() {
    let (dir, recipe) = workspace();
    let lock_path = dir.path().join("multiarch.lock");
    let lock = read_json(&lock_path);
    let keys: Vec<&String> = lock["sources"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["hello@linux/amd64", "hello@linux/arm64", "motd"]);

    // One platform's file changes: only that platform's pin disagrees.
    std::fs::write(
        dir.path().join("bin/hello-arm64"),
        "#!/bin/sh\necho changed\n",
    )
    .unwrap();
    let (code, stderr) = run_err(build(&recipe, &dir.path().join("out")).arg("--locked"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("source `hello` (bin/hello-arm64) does not match"),
        "{stderr}"
    );

    // `cairn lock` re-pins just that entry.
    run_ok(cairn().arg("lock").arg(&recipe));
    let relocked = read_json(&lock_path);
    assert_eq!(
        relocked["sources"]["hello@linux/amd64"],
        lock["sources"]["hello@linux/amd64"]
    );
    assert_ne!(
        relocked["sources"]["hello@linux/arm64"],
        lock["sources"]["hello@linux/arm64"]
    );

    // A lock entry for a platform the recipe does not build is stale under --locked.
    let mut stale = relocked.clone();
    stale["sources"]["hello@linux/s390x"] = relocked["sources"]["motd"].clone();
    std::fs::write(&lock_path, stale.to_string()).unwrap();
    let (_, stderr) = run_err(build(&recipe, &dir.path().join("out")).arg("--locked"));
    assert!(
        stderr.contains("pins source `hello@linux/s390x`"),
        "{stderr}"
    );

    // A docker-archive cannot hold several platforms.
    std::fs::write(&lock_path, relocked.to_string()).unwrap();
    let (_, stderr) =
        run_err(build(&recipe, &dir.path().join("out")).args(["--format", "docker-archive"]));
    assert!(
        stderr.contains("a docker-archive holds one image"),
        "{stderr}"
    );
}

#[test]
fn a_multi_platform_base_gives_each_platform_its_own_base_manifest() {
    let (dir, recipe) = workspace();
    build_json(&recipe, &dir.path().join("images"), &["--locked"]);
    let base_layout = dir.path().join("images/multiarch");
    let base_index = image_index(&base_layout);
    let base_manifest = |i: usize| {
        let digest = base_index["manifests"][i]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        (digest.clone(), blob(&base_layout, &digest))
    };

    let app = |platform_line: &str| {
        write_recipe(
            dir.path(),
            "app.yaml",
            &format!(
                "cairn: 1
name: app
epoch: 1700000000
{platform_line}
base: {{ layout: images/multiarch }}
layers:
  - name: extra
    contents:
      - file: /etc/app.conf
        content: \"x\\n\"
"
            ),
        )
    };
    let out = dir.path().join("out");
    let report = build_json(&app("platforms: [linux/amd64, linux/arm64]"), &out, &[]);
    let layout = out.join("app");
    let index = image_index(&layout);
    for i in 0..2 {
        let (_, base) = base_manifest(i);
        let manifest = blob(&layout, index["manifests"][i]["digest"].as_str().unwrap());
        let base_layers = base["layers"].as_array().unwrap();
        assert_eq!(
            manifest["layers"].as_array().unwrap()[..base_layers.len()],
            base_layers[..]
        );
    }
    assert_eq!(report["images"].as_array().unwrap().len(), 2);

    // A single-platform recipe picks its platform's manifest from the base index.
    let report = build_json(&app("platform: linux/arm64"), &dir.path().join("one"), &[]);
    assert_eq!(
        report["base"]["manifest_digest"],
        base_manifest(1).0.as_str()
    );
    assert_eq!(
        report["base"]["pinned"],
        read_json(&base_layout.join("index.json"))["manifests"][0]["digest"]
    );

    // A platform the base does not have is a clear error.
    let (_, stderr) = run_err(&mut build(
        &app("platform: linux/s390x"),
        &dir.path().join("bad"),
    ));
    assert!(
        stderr.contains("no manifest for linux/s390x; it has linux/amd64, linux/arm64"),
        "{stderr}"
    );
}

#[test]
fn diff_compares_the_images_of_one_platform() {
    let (dir, recipe) = workspace();
    build_json(&recipe, &dir.path().join("a"), &["--locked"]);
    std::fs::write(
        dir.path().join("bin/hello-arm64"),
        "#!/bin/sh\necho changed\n",
    )
    .unwrap();
    run_ok(cairn().arg("lock").arg(&recipe));
    build_json(&recipe, &dir.path().join("b"), &["--locked"]);
    let diff = |platform: &str| {
        cairn()
            .arg("diff")
            .arg(dir.path().join("a/multiarch"))
            .arg(dir.path().join("b/multiarch"))
            .args(["--platform", platform])
            .output()
            .unwrap()
    };
    let amd64 = diff("linux/amd64");
    assert_eq!(
        amd64.status.code(),
        Some(0),
        "the amd64 images are the same"
    );
    let arm64 = diff("linux/arm64");
    assert_eq!(arm64.status.code(), Some(1));
    let text = String::from_utf8(arm64.stdout).unwrap();
    assert!(text.contains("changed /usr/bin/hello:"), "{text}");
    let other = diff("linux/s390x");
    assert_eq!(other.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&other.stderr)
            .contains("no image for linux/s390x; it has linux/amd64, linux/arm64"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
}
