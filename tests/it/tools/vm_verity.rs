//! A dm-verity root (`root: { ..., verity: true }`), checked with cryptsetup's own
//! `veritysetup` (Debian `cryptsetup-bin`): the root and hash partitions cut from the
//! disk verify against the root hash on the kernel command line, and one byte changed
//! in either is refused, by `veritysetup` and by `cairn verify`, which names the
//! partition and block; the hash partition is byte for byte what `veritysetup format`
//! writes with the same salt and UUID. The partitions carry the UUIDs systemd derives from the root
//! hash (read back with util-linux's `partx`); the disk is reproducible under other
//! thread counts; and the root hash leads back to the build through the ledger
//! (`trace --roothash`, `ledger show --roothash`, `ledger record deploy --roothash`).
//! No test boots: that needs an initrd that sets up dm-verity (issue 16, point 2).

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The first sectors of a bzImage: enough for cairn's check; these disks never boot.
fn fake_bzimage(path: &Path) {
    let mut bytes = vec![0u8; 4096];
    bytes[0x202..0x206].copy_from_slice(b"HdrS");
    std::fs::write(path, bytes).unwrap();
}

/// A small verity recipe in `dir` (`fs`: ext4 or squashfs), and its signing key pair.
fn verity_recipe(dir: &Path, fs: &str) -> (PathBuf, PathBuf, PathBuf) {
    fake_bzimage(&dir.join("vmlinuz"));
    let recipe = write_recipe(
        dir,
        "vverity.yaml",
        &format!(
            r##"cairn: 1
name: vverity
epoch: 1700000000
sources:
  kernel: {{ path: vmlinuz }}
layers:
  - name: base
    contents:
      - file: /etc/motd
        content: "a verity root\n"
      - file: /init
        content: "#!/bin/sh\n"
        mode: 0o755
vm:
  kernel: {{ source: kernel }}
  cmdline: "console=ttyS0 ro panic=-1"
  root: {{ fs: {fs}, size: 16M, verity: true }}
"##
        ),
    );
    let key = dir.join("ci");
    run_ok(cairn().arg("keygen").arg(&key));
    (recipe, key.with_extension("key"), key.with_extension("pub"))
}

/// One GPT partition as `partx` reads it: byte offset, byte size, type, UUID, name.
#[derive(Debug)]
struct Part {
    start: u64,
    size: u64,
    type_uuid: String,
    uuid: String,
    name: String,
}

fn partitions(disk: &Path) -> Vec<Part> {
    let out = run_ok(
        Command::new("partx")
            .args(["--show", "--noheadings", "--bytes"])
            .args(["-o", "START,SECTORS,TYPE,UUID,NAME"])
            .arg(disk),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Part {
                start: f[0].parse::<u64>().unwrap() * 512,
                size: f[1].parse::<u64>().unwrap() * 512,
                type_uuid: f[2].to_string(),
                uuid: f[3].to_string(),
                name: f[4].to_string(),
            }
        })
        .collect()
}

fn cut(disk: &[u8], p: &Part, to: &Path) {
    std::fs::write(to, &disk[p.start as usize..(p.start + p.size) as usize]).unwrap();
}

fn veritysetup_verify(data: &Path, hash: &Path, roothash: &str) -> std::process::Output {
    Command::new("veritysetup")
        .arg("verify")
        .arg(data)
        .arg(hash)
        .arg(roothash)
        .output()
        .expect("veritysetup runs (TEST_TOOLS: cryptsetup-bin)")
}

pub(super) fn check<'a>(verdict: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no `{name}` check in {verdict:#}"))
}

#[test]
fn veritysetup_and_cairn_verify_accept_the_tree_and_refuse_a_changed_byte() {
    for fs in ["ext4", "squashfs"] {
        let dir = tempfile::tempdir().unwrap();
        let (recipe, key, public) = verity_recipe(dir.path(), fs);
        let out = dir.path().join("out");
        let report = build_json(&recipe, &out, &["--sign-key", key.to_str().unwrap()]);
        let verity = &report["disk"]["verity"];
        let roothash = verity["roothash"].as_str().unwrap().to_string();
        assert_eq!(roothash.len(), 64, "{fs}: {verity:#}");
        let cmdline = std::fs::read_to_string(out.join("vverity.cmdline")).unwrap();
        assert_eq!(
            cmdline,
            format!("console=ttyS0 ro panic=-1 roothash={roothash}\n"),
            "{fs}"
        );
        let provenance = provenance_of(&out.join("vverity.disk.intoto.jsonl"));
        let vm = &provenance["predicate"]["buildDefinition"]["internalParameters"]["vm"];
        assert_eq!(vm["root"]["verity"]["roothash"], roothash.as_str(), "{fs}");
        assert_eq!(vm["cmdline"], cmdline.trim_end(), "{fs}");

        // The GPT as util-linux reads it: the DPS types, the UUIDs systemd looks for.
        let raw = out.join("vverity.raw");
        let parts = partitions(&raw);
        assert_eq!(parts.len(), 2, "{fs}: {parts:?}");
        let (root, hash) = (&parts[0], &parts[1]);
        assert_eq!(
            (root.name.as_str(), root.type_uuid.as_str()),
            ("root", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709")
        );
        assert_eq!(
            (hash.name.as_str(), hash.type_uuid.as_str()),
            ("root-verity", "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5")
        );
        assert_eq!(root.uuid.replace('-', ""), roothash[..32], "{fs}");
        assert_eq!(hash.uuid.replace('-', ""), roothash[32..], "{fs}");
        assert_eq!(root.size, 16 << 20);

        let disk = std::fs::read(&raw).unwrap();
        let (data_path, hash_path) = (dir.path().join("data"), dir.path().join("hash"));
        cut(&disk, root, &data_path);
        cut(&disk, hash, &hash_path);
        let ok = veritysetup_verify(&data_path, &hash_path, &roothash);
        assert!(
            ok.status.success(),
            "{fs}: veritysetup verify: {}{}",
            String::from_utf8_lossy(&ok.stdout),
            String::from_utf8_lossy(&ok.stderr)
        );
        // Its superblock: format 1, SHA-256, 4 KiB blocks, the hash partition's UUID.
        let dump = run_ok(Command::new("veritysetup").arg("dump").arg(&hash_path));
        let dump = String::from_utf8_lossy(&dump.stdout);
        for line in [
            format!("UUID:            \t{}", hash.uuid),
            "Hash type:       \t1".to_string(),
            "Data blocks:     \t4096".to_string(),
            "Data block size: \t4096".to_string(),
            "Hash algorithm:  \tsha256".to_string(),
            format!("Salt:            \t{}", verity["salt"].as_str().unwrap()),
        ] {
            assert!(dump.contains(&line), "{fs}: `{line}` not in\n{dump}");
        }
        // `veritysetup format` with the same salt and UUID writes the same bytes.
        let theirs = dir.path().join("theirs");
        let formatted = run_ok(
            Command::new("veritysetup")
                .arg("format")
                .arg(&data_path)
                .arg(&theirs)
                .arg(format!("--salt={}", verity["salt"].as_str().unwrap()))
                .arg(format!("--uuid={}", hash.uuid)),
        );
        assert!(
            String::from_utf8_lossy(&formatted.stdout).contains(&roothash),
            "{fs}: veritysetup format gave another root hash"
        );
        assert!(
            std::fs::read(&theirs).unwrap() == std::fs::read(&hash_path).unwrap(),
            "{fs}: the hash partition differs from what veritysetup format writes"
        );
        let (verified, verdict) = verify_disk(&raw, &public);
        assert!(verified, "{fs}: {verdict:#}");
        let passed = check(&verdict, "verity");
        assert!(
            passed["detail"].as_str().unwrap().contains(&roothash),
            "{passed}"
        );

        // One byte of the root file system, then one of the tree: both refused.
        let flipped_data = root.start + 5 * 4096 + 17;
        let flipped_hash = hash.start + 2 * 4096 + 3;
        for (at, partition, block) in [(flipped_data, "root", 5), (flipped_hash, "root-verity", 2)]
        {
            let mut bad = disk.clone();
            bad[at as usize] ^= 0x40;
            let bad_raw = dir.path().join("bad/vverity.raw");
            std::fs::create_dir_all(bad_raw.parent().unwrap()).unwrap();
            std::fs::write(&bad_raw, &bad).unwrap();
            std::fs::copy(
                out.join("vverity.disk.intoto.jsonl"),
                dir.path().join("bad/vverity.disk.intoto.jsonl"),
            )
            .unwrap();
            cut(&bad, root, &data_path);
            cut(&bad, hash, &hash_path);
            let refused = veritysetup_verify(&data_path, &hash_path, &roothash);
            assert!(
                !refused.status.success(),
                "{fs}: veritysetup accepted a changed byte in {partition}"
            );
            let (verified, verdict) = verify_disk(&bad_raw, &public);
            assert!(!verified, "{fs}: {verdict:#}");
            let failed = check(&verdict, "verity");
            let detail = failed["detail"].as_str().unwrap();
            assert_eq!(failed["ok"], false, "{fs}: {failed}");
            assert!(
                detail.contains(&format!("partition `{partition}` block {block} ")),
                "{fs}: {detail}"
            );
        }
    }
}

#[test]
fn a_verity_disk_is_reproducible_under_other_thread_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, key, _) = verity_recipe(dir.path(), "ext4");
    run_ok(cairn().arg("lock").arg(&recipe));
    let build = |out: &str, threads: &str| {
        let out = dir.path().join(out);
        run_ok(
            cairn()
                .env("RAYON_NUM_THREADS", threads)
                .args([
                    "build",
                    "--locked",
                    "--quiet",
                    "--jobs",
                    threads,
                    "--sign-key",
                ])
                .arg(&key)
                .arg(&recipe)
                .arg("-o")
                .arg(&out),
        );
        ["raw", "cmdline", "disk.intoto.jsonl"]
            .map(|ext| std::fs::read(out.join(format!("vverity.{ext}"))).unwrap())
    };
    let (a, b) = (build("a", "1"), build("b", "3"));
    assert!(a == b, "the disks differ with 1 and 3 threads");
}

#[test]
fn a_root_hash_leads_to_its_build_signer_and_deployments() {
    let dir = tempfile::tempdir().unwrap();
    let (recipe, key, public) = verity_recipe(dir.path(), "ext4");
    let ledger = dir.path().join("ledger.jsonl");
    let out = dir.path().join("out");
    let report = build_json(
        &recipe,
        &out,
        &[
            "--sign-key",
            key.to_str().unwrap(),
            "--ledger",
            ledger.to_str().unwrap(),
        ],
    );
    let roothash = report["disk"]["verity"]["roothash"]
        .as_str()
        .unwrap()
        .to_string();
    let raw_digest = report["disk"]["files"][0]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let key_id = report["signed_by"].as_str().unwrap().to_string();
    let ledger_arg = ["--ledger", ledger.to_str().unwrap()];

    // What a running machine shows: `roothash=HEX` in /proc/cmdline, in upper case too.
    let traced = run_ok(
        cairn()
            .args(["trace", "--roothash"])
            .arg(format!("roothash={}", roothash.to_uppercase()))
            .args(ledger_arg)
            .arg("--key")
            .arg(&public),
    );
    let traced = String::from_utf8_lossy(&traced.stdout);
    for want in [
        format!("roothash={roothash}"),
        format!(
            "image vverity {}",
            report["manifest_digest"].as_str().unwrap()
        ),
        "recipe  vverity.yaml sha256:".to_string(),
        format!("disk    raw {raw_digest}"),
        format!("signer  key {key_id}"),
        "signature verified".to_string(),
    ] {
        assert!(traced.contains(&want), "`{want}` not in:\n{traced}");
    }

    // Deployed by root hash and by disk digest; both lead back to the build.
    for deployed in [["--roothash", &roothash], ["--disk", &raw_digest]] {
        run_ok(
            cairn()
                .args(["ledger", "record", "deploy"])
                .args(deployed)
                .args(["--env", "prod", "--key"])
                .arg(&key)
                .args(ledger_arg),
        );
    }
    let shown = run_ok(
        cairn()
            .args(["ledger", "show", "--roothash", &roothash])
            .args(ledger_arg),
    );
    let shown = String::from_utf8_lossy(&shown.stdout);
    let lines: Vec<&str> = shown
        .lines()
        .filter(|l| !l.starts_with("unverified"))
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "the build and the deploy by root hash:\n{shown}"
    );
    assert!(
        lines[0].contains(" build ") && lines[0].contains("vverity"),
        "{shown}"
    );
    assert!(
        lines[1].contains(&format!("roothash={roothash} to prod")),
        "{shown}"
    );

    let traced = run_ok(
        cairn()
            .args(["trace", "--json", "--roothash", &roothash])
            .args(ledger_arg),
    );
    let traced: serde_json::Value = serde_json::from_slice(&traced.stdout).unwrap();
    let deployed: Vec<&str> = traced["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deployed"].as_str().unwrap())
        .collect();
    assert_eq!(
        deployed,
        [format!("roothash={roothash}"), raw_digest.clone()]
    );

    let running = run_ok(
        cairn()
            .args(["ledger", "show", "--env", "prod", "--json", "--key"])
            .arg(&public)
            .args(ledger_arg),
    );
    let running: serde_json::Value = serde_json::from_slice(&running.stdout).unwrap();
    let image = &running["images"][0];
    assert_eq!(image["digest"], raw_digest.as_str(), "{running:#}");
    assert_eq!(image["build"]["recipe"], "vverity.yaml", "{running:#}");

    // A root hash no build recorded is an error that says so.
    let (_, err) = run_err(
        cairn()
            .args(["trace", "--roothash", &"0".repeat(64)])
            .args(ledger_arg),
    );
    assert!(err.contains("no build entry in the ledger"), "{err}");
}
