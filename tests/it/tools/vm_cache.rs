//! An unchanged VM recipe replays its disk from the layer cache, as an unchanged image
//! is replayed: the same bytes (raw, qcow2, kernel, command line and the signed
//! statements), said in the report, and a disk that boots and verifies. A changed
//! `vm:` field or source file writes the disk anew; a cached disk file changed in place
//! (its mtime put back) is found, never published, and replaced; a disk file changed
//! in the output is replaced by the recorded bytes; a replay killed at any rename
//! leaves the previous disk whole.

use super::vm::{boot, fake_bzimage, kernel, write_vm_recipe, Firmware, MOTD};
use crate::common::sha256_hex;
use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A VM recipe (busybox `/init`, raw and qcow2 disks) with a signing key and a layer
/// cache of its own.
struct VmProject {
    dir: tempfile::TempDir,
    recipe: PathBuf,
    key: PathBuf,
    public: PathBuf,
}

impl VmProject {
    fn new(kernel: Option<&Path>) -> VmProject {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-vmlinuz");
        let kernel = kernel.unwrap_or_else(|| {
            fake_bzimage(&fake);
            &fake
        });
        let recipe = write_vm_recipe(dir.path(), kernel, "raw, qcow2");
        let (key, public, _) = keygen(dir.path(), "ci");
        VmProject {
            dir,
            recipe,
            key,
            public,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `cairn build` of the recipe into `out`, signed, with the project's cache.
    fn build_command(&self, out: &str) -> std::process::Command {
        let mut cmd = cairn();
        cmd.env_remove("CAIRN_NO_CACHE")
            .arg("build")
            .arg(&self.recipe)
            .arg("-o")
            .arg(self.path(out))
            .arg("--cache-dir")
            .arg(self.path("cache"))
            .arg("--sign-key")
            .arg(&self.key);
        cmd
    }

    /// The build's `--json` report.
    fn build(&self, out: &str) -> Value {
        let output = run_ok(self.build_command(out).arg("--json"));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn edit_recipe(&self, from: &str, to: &str) {
        let text = fs::read_to_string(&self.recipe).unwrap();
        assert!(text.contains(from), "{from} not in the recipe");
        fs::write(&self.recipe, text.replace(from, to)).unwrap();
    }
}

/// The disk outputs in `out` (every `vmtest.*` file beside the layout but the image's
/// own SBOMs and statements), by name, as the SHA-256 of their bytes.
fn disk_outputs(out: &Path) -> BTreeMap<String, String> {
    fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| {
            ["raw", "qcow2", "vmlinuz", "cmdline", "disk.intoto.jsonl"]
                .iter()
                .any(|ext| *n == format!("vmtest.{ext}"))
        })
        .map(|n| (n.clone(), sha256_hex(&fs::read(out.join(&n)).unwrap())))
        .collect()
}

/// The disks of `report`: (format, SHA-256), each checked against the file's bytes.
fn disks(report: &Value) -> Vec<(String, String)> {
    report["disk"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let bytes = fs::read(f["path"].as_str().unwrap()).unwrap();
            let sha256 = f["sha256"].as_str().unwrap().to_string();
            assert_eq!(sha256, format!("sha256:{}", sha256_hex(&bytes)));
            (f["format"].as_str().unwrap().to_string(), sha256)
        })
        .collect()
}

fn assert_replayed(report: &Value, replayed: bool) {
    assert_eq!(report["image_cached"], replayed, "{}", report["warnings"]);
    assert_eq!(report["disk"]["cached"], replayed, "{}", report["warnings"]);
}

fn verify(project: &VmProject, disk: &Path) {
    let verified = run_ok(
        cairn()
            .arg("verify")
            .arg(disk)
            .arg("--key")
            .arg(&project.public),
    );
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(text.ends_with("verified\n"), "{text}");
}

#[test]
fn an_unchanged_vm_recipe_replays_its_disk_which_boots_and_verifies() {
    let project = VmProject::new(Some(&kernel()));
    let cold = project.build("out");
    assert_replayed(&cold, false);
    let built = disk_outputs(&project.path("out"));
    assert_eq!(built.len(), 5, "{built:?}");

    // Rebuilt in place: every disk output is the same, bit for bit, the signed
    // statements included, and the report and the console say where it came from.
    let warm = project.build("out");
    assert_replayed(&warm, true);
    assert_eq!(warm["manifest_digest"], cold["manifest_digest"]);
    assert_eq!(disks(&warm), disks(&cold));
    assert_eq!(disk_outputs(&project.path("out")), built);
    let said = run_ok(&mut project.build_command("out"));
    let said = String::from_utf8_lossy(&said.stderr);
    assert!(
        said.contains(&format!(
            "vmtest.raw {} (69206016 bytes, replayed from the layer cache)",
            disks(&cold)[0].1
        )),
        "{said}"
    );

    // Into an empty output: copied from the cache, with its holes (the 66 MiB raw
    // disk holds about 2 MiB of data).
    let fresh = project.build("fresh");
    assert_replayed(&fresh, true);
    assert_eq!(disk_outputs(&project.path("fresh")), built);
    let raw = project.path("fresh/vmtest.raw");
    let allocated = std::os::unix::fs::MetadataExt::blocks(&fs::metadata(&raw).unwrap()) * 512;
    assert!(
        allocated < fs::metadata(&raw).unwrap().len() / 4,
        "the replayed raw disk takes {allocated} bytes on disk"
    );

    // The replayed disks verify against the key and boot the image.
    let qcow2 = project.path("fresh/vmtest.qcow2");
    verify(&project, &raw);
    verify(&project, &qcow2);
    let kernel = project.path("fresh/vmtest.vmlinuz");
    let cmdline = fs::read_to_string(project.path("fresh/vmtest.cmdline")).unwrap();
    let serial = boot(
        Firmware::Direct {
            kernel: &kernel,
            cmdline: cmdline.trim(),
        },
        &qcow2,
        "qcow2",
    );
    let motd = format!("{}  /etc/motd", sha256_hex(MOTD.as_bytes()));
    assert!(
        serial
            .lines()
            .any(|l| l.starts_with("CAIRN-MARKER ") && l.contains(&motd)),
        "{serial}"
    );
}

#[test]
fn a_changed_vm_field_or_source_file_writes_the_disk_anew() {
    let project = VmProject::new(None);
    let cold = project.build("out");
    assert_replayed(&cold, false);
    let raw = disks(&cold)[0].clone();
    assert_replayed(&project.build("out"), true);

    // A disk changed in the output (as booting it writes to it) is put back to the
    // recorded bytes.
    let out_raw = project.path("out/vmtest.raw");
    let file = fs::File::options().write(true).open(&out_raw).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"written by a guest", 5 << 20).unwrap();
    drop(file);
    let again = project.build("out");
    assert_replayed(&again, true);
    assert_eq!(disks(&again)[0], raw);

    // The command line: a new disk build (the same raw bytes, another command line),
    // replayed from then on.
    project.edit_recipe("panic=-1", "panic=-1 quiet");
    let cmdline = project.build("out");
    assert_replayed(&cmdline, false);
    assert_eq!(disks(&cmdline)[0], raw);
    assert!(fs::read_to_string(project.path("out/vmtest.cmdline"))
        .unwrap()
        .contains("quiet"));
    assert_replayed(&project.build("out"), true);

    // The root's size: another disk.
    project.edit_recipe("size: 64M", "size: 80M");
    let resized = project.build("out");
    assert_replayed(&resized, false);
    assert_ne!(disks(&resized)[0], raw);
    assert_eq!(resized["disk"]["root_size"], 80 << 20);

    // A source file of the image, pinned anew.
    let before = disks(&resized);
    fs::remove_file(project.path("vm.lock")).unwrap();
    fs::write(
        project.path("init"),
        "#!/bin/busybox sh\n/bin/busybox poweroff -f\n",
    )
    .unwrap();
    let changed = project.build("out");
    assert_replayed(&changed, false);
    assert_ne!(disks(&changed), before);
    verify(&project, &out_raw);
}

#[test]
fn a_cached_disk_file_changed_in_place_is_found_and_never_published() {
    let project = VmProject::new(None);
    let cold = project.build("a");
    let good = disk_outputs(&project.path("a"));
    let raw_digest = disks(&cold)[0].1.clone();
    let cached_raw = project.path(&format!(
        "cache/layers-v1/blobs/sha256/{}",
        raw_digest.trim_start_matches("sha256:")
    ));
    assert!(cached_raw.is_file(), "the raw disk is not in the cache");

    // Bytes changed in the root file system's superblock and in a hole, inode, size
    // and mtime kept: only the bytes can tell.
    let meta = fs::metadata(&cached_raw).unwrap();
    let mut perms = meta.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(&cached_raw, perms).unwrap();
    let file = fs::File::options().write(true).open(&cached_raw).unwrap();
    for at in [(1 << 20) + 1024 + 40, meta.len() / 2] {
        std::os::unix::fs::FileExt::write_all_at(&file, b"tampered", at).unwrap();
    }
    file.set_modified(meta.modified().unwrap()).unwrap();
    drop(file);

    let rebuilt = project.build("b");
    assert_replayed(&rebuilt, false);
    let warnings = rebuilt["warnings"].to_string();
    assert!(
        warnings.contains("vmtest.raw") && warnings.contains("was changed after it was written"),
        "{warnings}"
    );
    assert_eq!(disk_outputs(&project.path("b")), good);
    verify(&project, &project.path("b/vmtest.raw"));
    // The earlier output is untouched, and the cache holds the disk anew.
    assert_eq!(disk_outputs(&project.path("a")), good);
    let replayed = project.build("c");
    assert_replayed(&replayed, true);
    assert_eq!(disk_outputs(&project.path("c")), good);

    // `cache info` counts the disk record, and `cache prune` removes it with its blobs.
    let info = |what: &[&str]| -> Value {
        let out = run_ok(
            cairn()
                .arg("cache")
                .args(what)
                .arg("--json")
                .arg("--cache-dir")
                .arg(project.path("cache")),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(info(&["info"])["disks"], 1);
    let pruned = info(&["prune", "--max-size", "0"]);
    assert_eq!(pruned["after"]["disks"], 0);
    assert_eq!(pruned["after"]["bytes"], 0);
    assert!(!cached_raw.exists());
    assert_replayed(&project.build("d"), false);
}

#[test]
fn a_replay_killed_at_any_rename_leaves_the_previous_disk_whole() {
    let project = VmProject::new(None);
    run_ok(project.build_command("out").arg("-q"));
    let out = project.path("out");
    let good = disk_outputs(&out);
    let mut kills = 0;
    for nth in 1.. {
        // Without its qcow2, the replay copies that one from the cache.
        fs::remove_file(out.join("vmtest.qcow2")).unwrap();
        let mut build = project.build_command("out");
        build.arg("-q");
        if !super::crash::killed_at_rename(&build, nth) {
            break;
        }
        kills += 1;
        for (name, digest) in disk_outputs(&out) {
            assert_eq!(
                Some(&digest),
                good.get(&name),
                "after kill {nth}: {name} is damaged"
            );
        }
        run_ok(&mut build);
        assert_eq!(disk_outputs(&out), good, "after kill {nth}");
        let leftovers: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') && n != ".vmtest.lock")
            .collect();
        assert!(leftovers.is_empty(), "after kill {nth}: {leftovers:?}");
    }
    assert!(kills >= 5, "only {kills} renames to kill at");
}
