//! `cairn build --format`: the `oci-archive` and `docker-archive` outputs, read back by
//! skopeo and podman, and reproducible to the byte.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn hello() -> PathBuf {
    repo_root().join("recipes/hello.yaml")
}

fn build_format(out: &Path, format: &str) -> serde_json::Value {
    build_json(&hello(), out, &["--locked", "--format", format])
}

/// Builds the example as a `format` archive in two directories and checks what every
/// archive must be: the same bytes both times, canonical members, and nothing else
/// left in the output directory. Gives the first directory and its build report.
fn build_archive_twice(format: &str) -> (tempfile::TempDir, serde_json::Value) {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let report = build_format(a.path(), format);
    build_format(b.path(), format);
    let tar_a = a.path().join("hello.tar");
    assert_eq!(
        std::fs::read(&tar_a).unwrap(),
        std::fs::read(b.path().join("hello.tar")).unwrap(),
        "two builds give the same archive bytes"
    );
    assert_canonical(&tar_a);
    assert_only_archive_left(a.path());
    (a, report)
}

fn skopeo(args: &[&str]) -> serde_json::Value {
    let out = run_ok(Command::new("skopeo").args(args));
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

/// Every tar member: (name, mode, uid, gid, mtime), in archive order.
fn members(tar_path: &Path) -> Vec<(String, u32, u64, u64, u64)> {
    let mut archive = tar::Archive::new(std::fs::File::open(tar_path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
            )
        })
        .collect()
}

fn assert_canonical(tar_path: &Path) {
    let members = members(tar_path);
    let names: Vec<&String> = members.iter().map(|m| &m.0).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "members are sorted byte-wise");
    for (name, mode, uid, gid, mtime) in &members {
        let want_mode = if name.ends_with('/') { 0o755 } else { 0o644 };
        assert_eq!(
            (*mode, *uid, *gid, *mtime),
            (want_mode, 0, 0, 1_700_000_000),
            "{name}"
        );
    }
}

/// Only the archive, its side files and the lock remain: no temporaries, no layout.
fn assert_only_archive_left(out: &Path) {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".hello.lock",
            "hello.cdx.json",
            "hello.spdx.json",
            "hello.tar"
        ]
    );
}

#[test]
fn oci_archive_is_reproducible_and_skopeo_reads_it_with_the_same_digests() {
    let (a, report) = build_archive_twice("oci-archive");
    let tar_a = a.path().join("hello.tar");
    assert_eq!(report["layout"].as_str().unwrap(), tar_a.to_str().unwrap());
    assert_eq!(report["format"], "oci-archive");

    // The archive holds exactly the layout a plain build writes.
    let plain = tempfile::tempdir().unwrap();
    build_format(plain.path(), "oci");
    let unpacked = tempfile::tempdir().unwrap();
    tar::Archive::new(std::fs::File::open(&tar_a).unwrap())
        .unpack(unpacked.path())
        .unwrap();
    assert_eq!(
        tree_bytes(unpacked.path()),
        tree_bytes(&plain.path().join("hello"))
    );

    let manifest = report["manifest_digest"].as_str().unwrap();
    let inspected = skopeo(&["inspect", &format!("oci-archive:{}:hello", tar_a.display())]);
    assert_eq!(inspected["Digest"], manifest);

    // A round trip through skopeo keeps every digest.
    let copy = tempfile::tempdir().unwrap();
    run_ok(Command::new("skopeo").args([
        "copy",
        &format!("oci-archive:{}:hello", tar_a.display()),
        &format!("oci:{}:hello", copy.path().display()),
    ]));
    let copied = skopeo(&["inspect", &format!("oci:{}:hello", copy.path().display())]);
    assert_eq!(copied["Digest"], manifest);
    assert_eq!(copied["Layers"], inspected["Layers"]);
}

#[test]
fn docker_archive_loads_into_podman_and_reads_in_skopeo() {
    let (a, report) = build_archive_twice("docker-archive");
    let tar_a = a.path().join("hello.tar");

    let config_digest = report["config_digest"].as_str().unwrap();
    let diff_ids: Vec<&str> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diff_id"].as_str().unwrap())
        .collect();

    // manifest.json and repositories as `docker save` writes them.
    let mut archive = tar::Archive::new(std::fs::File::open(&tar_a).unwrap());
    let mut manifest_json = None;
    let mut repositories = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        if name == "manifest.json" || name == "repositories" {
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            if name == "manifest.json" {
                manifest_json = Some(value);
            } else {
                repositories = Some(value);
            }
        }
    }
    let manifest_json = manifest_json.expect("manifest.json");
    assert_eq!(manifest_json[0]["RepoTags"][0], "hello:latest");
    assert_eq!(
        manifest_json[0]["Config"],
        format!("{}.json", config_digest.trim_start_matches("sha256:"))
    );
    let layer_files: Vec<String> = diff_ids
        .iter()
        .map(|d| format!("{}.tar", d.trim_start_matches("sha256:")))
        .collect();
    assert_eq!(manifest_json[0]["Layers"], serde_json::json!(layer_files));
    assert!(repositories.expect("repositories")["hello"]["latest"].is_string());

    let inspected = skopeo(&["inspect", &format!("docker-archive:{}", tar_a.display())]);
    assert_eq!(inspected["Layers"], serde_json::json!(diff_ids));

    // skopeo copies it back into an OCI layout (recompressing the layers and
    // re-serialising the config): the diff_ids and the config's values carry over.
    let copy = tempfile::tempdir().unwrap();
    run_ok(Command::new("skopeo").args([
        "copy",
        &format!("docker-archive:{}", tar_a.display()),
        &format!("oci:{}:hello", copy.path().display()),
    ]));
    let copied = skopeo(&[
        "inspect",
        "--config",
        &format!("oci:{}:hello", copy.path().display()),
    ]);
    assert_eq!(copied["rootfs"]["diff_ids"], serde_json::json!(diff_ids));
    assert_eq!(
        copied["config"]["Entrypoint"],
        serde_json::json!(["/usr/bin/hello"])
    );

    // podman load, into a storage of the test's own (vfs works without privileges).
    let storage = tempfile::tempdir().unwrap();
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(storage.path().join("root"))
            .arg("--runroot")
            .arg(storage.path().join("run"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(args);
        run_ok(&mut cmd)
    };
    podman(&["load", "-i", tar_a.to_str().unwrap()]);
    let id = podman(&[
        "image",
        "inspect",
        "localhost/hello:latest",
        "--format",
        "{{.Id}}",
    ]);
    assert_eq!(
        String::from_utf8(id.stdout).unwrap().trim(),
        config_digest.trim_start_matches("sha256:"),
        "podman's image id is the config digest cairn wrote"
    );
    podman(&["rmi", "-a"]);
}

/// `--tag` names the image in the archive, as `docker save` of several tags would;
/// skopeo reads each name, and a name that is no docker reference is refused.
#[test]
fn docker_archive_carries_the_tags_asked_for() {
    let out = tempfile::tempdir().unwrap();
    build_json(
        &hello(),
        out.path(),
        &[
            "--locked",
            "--format",
            "docker-archive",
            "--tag",
            "team/hello:v1",
            "--tag",
            "localhost:5000/hello",
        ],
    );
    let tar = out.path().join("hello.tar");
    for name in ["team/hello:v1", "localhost:5000/hello:latest"] {
        let inspected = skopeo(&[
            "inspect",
            &format!("docker-archive:{}:{name}", tar.display()),
        ]);
        assert!(
            inspected["Layers"]
                .as_array()
                .is_some_and(|l| !l.is_empty()),
            "{name}: {inspected}"
        );
    }
    // The default name is given only when no --tag is.
    let default_name = Command::new("skopeo")
        .args([
            "inspect",
            &format!("docker-archive:{}:hello:latest", tar.display()),
        ])
        .output()
        .unwrap();
    assert!(
        !default_name.status.success(),
        "hello:latest is in the archive too"
    );

    let (code, stderr) = build_fails(&["--format", "docker-archive", "--tag", "Team/Hello:v1"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("is not a docker image name NAME[:TAG]"),
        "{stderr}"
    );
    let (_, stderr) = build_fails(&["--tag", "team/hello:v1"]);
    assert!(stderr.contains("add --format docker-archive"), "{stderr}");
}

/// `cairn build` of the example with `args`, expected to fail: its exit code and stderr.
fn build_fails(args: &[&str]) -> (i32, String) {
    let out = tempfile::tempdir().unwrap();
    run_err(
        cairn()
            .arg("build")
            .arg(hello())
            .arg("-o")
            .arg(out.path())
            .args(args),
    )
}

#[test]
fn an_unknown_format_is_a_usage_error() {
    let (code, stderr) = build_fails(&["--format", "tar"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("oci-archive"), "{stderr}");
}
