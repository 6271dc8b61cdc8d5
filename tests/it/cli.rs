//! `cairn build` behaviour a user relies on: output contract, pinning, atomic
//! publication (failure, Ctrl-C, concurrent builds), thread-count independence and
//! the layer rules, checked through the real binary.

use crate::common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn layer_files(layout: &Path) -> Vec<serde_json::Value> {
    let out = run_ok(cairn().arg("inspect").arg("--json").arg(layout));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["images"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["files"].clone())
        .collect()
}

fn file<'a>(files: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in layer: {files}"))
}

/// Deterministic pseudo-random bytes, half of them text-like, half incompressible.
fn generated_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if (out.len() / 65536) % 2 == 0 {
            out.extend_from_slice(
                ["lorem ", "ipsum ", "cairn ", "layer ", "\n"][(state % 5) as usize].as_bytes(),
            );
        } else {
            out.extend_from_slice(&state.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

fn temp_dirs(out: &Path) -> Vec<String> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

#[test]
fn build_prints_the_manifest_digest_and_json_describes_the_result() {
    let out = tempfile::tempdir().unwrap();
    let plain = run_ok(
        cairn()
            .current_dir(repo_root())
            .args(["build", "--quiet", "recipes/hello.yaml", "-o"])
            .arg(out.path()),
    );
    let digest = String::from_utf8(plain.stdout).unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 72,
        "{digest:?}"
    );
    let report = build_json(&repo_root().join("recipes/hello.yaml"), out.path(), &[]);
    assert_eq!(report["manifest_digest"], digest.trim());
    assert_eq!(report["layout"], out.path().join("hello").to_str().unwrap());
    assert_eq!(report["platform"], "linux/amd64");
    let layers = report["layers"].as_array().unwrap();
    assert_eq!(
        layers
            .iter()
            .map(|l| l["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["base", "app", "accounts", "sbom"]
    );
    for l in layers {
        let blob = out
            .path()
            .join("hello/blobs/sha256")
            .join(l["digest"].as_str().unwrap().trim_start_matches("sha256:"));
        assert_eq!(
            std::fs::metadata(blob).unwrap().len(),
            l["size"].as_u64().unwrap()
        );
    }
}

#[test]
fn unpinned_sources_are_pinned_with_a_warning_then_verified() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("motd"), "hello\n").unwrap();
    let recipe = write_recipe(
        dir.path(),
        "r.yaml",
        "cairn: 1\nname: t\nsources:\n  motd: { path: motd }\nlayers:\n  - name: l\n    contents:\n      - copy: motd\n        to: /etc/motd\n",
    );
    let out = tempfile::tempdir().unwrap();
    let first = run_ok(cairn().arg("build").arg(&recipe).arg("-o").arg(out.path()));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("warning: source `motd` was not pinned"),
        "{stderr}"
    );
    let lock = std::fs::read_to_string(dir.path().join("r.lock")).unwrap();
    assert!(
        lock.contains("sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"),
        "{lock}"
    );

    run_ok(
        cairn()
            .arg("build")
            .arg("--locked")
            .arg(&recipe)
            .arg("-o")
            .arg(out.path()),
    );
    std::fs::write(dir.path().join("motd"), "tampered\n").unwrap();
    let (_, err) = run_err(cairn().arg("build").arg(&recipe).arg("-o").arg(out.path()));
    assert!(
        err.contains("expected file sha256:5891b5b5") && err.contains("run `cairn lock`"),
        "{err}"
    );
    run_ok(cairn().arg("lock").arg(&recipe));
    run_ok(
        cairn()
            .arg("build")
            .arg("--locked")
            .arg(&recipe)
            .arg("-o")
            .arg(out.path()),
    );
}

#[test]
fn a_failed_build_leaves_the_previous_output_intact() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("motd"), "hello\n").unwrap();
    let recipe = write_recipe(
        dir.path(),
        "r.yaml",
        "cairn: 1\nname: t\nsources:\n  motd: { path: motd, sha256: 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03 }\nlayers:\n  - name: l\n    contents:\n      - copy: motd\n        to: /etc/motd\n",
    );
    let out = tempfile::tempdir().unwrap();
    run_ok(cairn().arg("build").arg(&recipe).arg("-o").arg(out.path()));
    let before = tree_bytes(&out.path().join("t"));
    std::fs::write(dir.path().join("motd"), "changed\n").unwrap();
    run_err(cairn().arg("build").arg(&recipe).arg("-o").arg(out.path()));
    assert_eq!(tree_bytes(&out.path().join("t")), before);
    assert!(temp_dirs(out.path()).is_empty());
}

#[test]
fn ctrl_c_mid_build_publishes_nothing_and_keeps_the_previous_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small"), "small\n").unwrap();
    std::fs::write(dir.path().join("big"), generated_bytes(48 << 20, 7)).unwrap();
    let recipe = |file: &str| {
        write_recipe(
            dir.path(),
            &format!("{file}.yaml"),
            &format!("cairn: 1\nname: t\nsources:\n  data: {{ path: {file} }}\nlayers:\n  - name: l\n    contents:\n      - copy: data\n        to: /data\n"),
        )
    };
    let out = tempfile::tempdir().unwrap();
    run_ok(
        cairn()
            .arg("build")
            .arg(recipe("small"))
            .arg("-o")
            .arg(out.path()),
    );
    let before = tree_bytes(&out.path().join("t"));

    let mut child = cairn()
        .args(["build", "--jobs", "1"])
        .arg(recipe("big"))
        .arg("-o")
        .arg(out.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the layer blob is being written, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let writing = temp_dirs(out.path()).iter().any(|t| {
            let blobs = out.path().join(t).join("blobs/sha256");
            std::fs::read_dir(blobs).is_ok_and(|mut d| {
                d.any(|e| {
                    e.unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(".partial")
                })
            })
        });
        if writing {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the build never started writing a layer"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "exit code after Ctrl-C");
    assert_eq!(
        tree_bytes(&out.path().join("t")),
        before,
        "previous output changed"
    );
    assert!(
        temp_dirs(out.path()).is_empty(),
        "partial output left behind"
    );
}

#[test]
fn concurrent_builds_of_the_same_output_take_turns_without_corruption() {
    let out = tempfile::tempdir().unwrap();
    let spawn = || {
        cairn()
            .current_dir(repo_root())
            .args(["build", "--quiet", "recipes/hello.yaml", "-o"])
            .arg(out.path())
            .spawn()
            .unwrap()
    };
    let mut children: Vec<_> = (0..4).map(|_| spawn()).collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    // inspect verifies every blob against its digest.
    run_ok(cairn().arg("inspect").arg(out.path().join("hello")));
    assert!(temp_dirs(out.path()).is_empty());
}

#[test]
fn the_thread_count_never_changes_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/big"), generated_bytes(9 << 20, 3)).unwrap();
    std::fs::write(dir.path().join("data/small"), generated_bytes(1000, 4)).unwrap();
    let recipe = write_recipe(
        dir.path(),
        "r.yaml",
        "cairn: 1\nname: t\nsources:\n  data: { path: data/ }\nlayers:\n  - name: l\n    contents:\n      - copy: data\n        to: /data\n",
    );
    let mut layouts = Vec::new();
    for jobs in ["1", "2", "3", "8"] {
        let out = tempfile::tempdir().unwrap();
        run_ok(
            cairn()
                .args(["build", "--quiet", "--jobs", jobs])
                .arg(&recipe)
                .arg("-o")
                .arg(out.path()),
        );
        layouts.push(tree_bytes(&out.path().join("t")));
    }
    for l in &layouts[1..] {
        assert!(l == &layouts[0], "a different --jobs gave different bytes");
    }
}

#[test]
fn later_layers_keep_parent_directories_as_earlier_layers_set_them() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(
        dir.path(),
        "r.yaml",
        r#"cairn: 1
name: t
layers:
  - name: base
    contents:
      - dir: /tmp
        mode: 0o1777
      - dir: /srv
        mode: 0o750
        owner: 1000:1000
  - name: app
    contents:
      - file: /tmp/x
        content: "x"
      - file: /srv/app/y
        content: "y"
"#,
    );
    let out = tempfile::tempdir().unwrap();
    run_ok(cairn().arg("build").arg(&recipe).arg("-o").arg(out.path()));
    let layers = layer_files(&out.path().join("t"));
    let app = &layers[1];
    assert_eq!(file(app, "tmp/")["mode"], 0o1777);
    assert_eq!(file(app, "srv/")["mode"], 0o750);
    assert_eq!(file(app, "srv/")["uid"], 1000);
    assert_eq!(file(app, "srv/app/")["mode"], 0o755);
    assert_eq!(file(app, "srv/app/")["uid"], 0);
}

#[test]
fn hard_links_and_long_names_in_a_directory_source_survive() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
    std::fs::create_dir_all(dir.path().join("data").join("d".repeat(120))).unwrap();
    std::fs::write(dir.path().join("data").join(&long), "long\n").unwrap();
    std::fs::write(dir.path().join("data/b"), "shared\n").unwrap();
    std::fs::hard_link(dir.path().join("data/b"), dir.path().join("data/a")).unwrap();
    let recipe = write_recipe(
        dir.path(),
        "r.yaml",
        "cairn: 1\nname: t\nsources:\n  data: { path: data/ }\nlayers:\n  - name: l\n    contents:\n      - copy: data\n        to: /data\n",
    );
    let out = tempfile::tempdir().unwrap();
    run_ok(cairn().arg("build").arg(&recipe).arg("-o").arg(out.path()));
    let files = &layer_files(&out.path().join("t"))[0];
    assert_eq!(file(files, "data/a")["kind"], "file");
    assert_eq!(file(files, "data/b")["kind"], "hardlink");
    assert_eq!(file(files, "data/b")["link"], "data/a");
    assert_eq!(file(files, &format!("data/{long}"))["size"], 5);
}

#[test]
fn inspect_detects_a_corrupted_blob() {
    let out = tempfile::tempdir().unwrap();
    let report = build_json(&repo_root().join("recipes/hello.yaml"), out.path(), &[]);
    let layer = report["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let blob = out.path().join("hello/blobs/sha256").join(layer);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let (code, err) = run_err(cairn().arg("inspect").arg(out.path().join("hello")));
    assert_eq!(code, 1);
    assert!(err.contains("corrupt") || err.contains("checksum"), "{err}");
}

#[test]
fn validate_accepts_the_example_and_rejects_a_bad_recipe_with_its_location() {
    run_ok(
        cairn()
            .current_dir(repo_root())
            .args(["validate", "recipes/hello.yaml"]),
    );
    let (code, err) = run_err(
        cairn()
            .current_dir(repo_root())
            .args(["validate", "fixtures/errors/mode-decimal.yaml"]),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("--> fixtures/errors/mode-decimal.yaml:12:15"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_with_2_and_help_teaches() {
    let (code, _) = run_err(cairn().args(["build"]));
    assert_eq!(code, 2);
    let help = run_ok(cairn().args(["build", "--help"]));
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--locked") && help.contains("--json") && help.contains("--jobs"),
        "{help}"
    );
}
