//! An immutable machine, booted for real: a `boot: uefi` disk with a dm-verity root,
//! an initrd cairn builds from files of the image (`vm.initrd: { init, files,
//! modules }`: busybox, the host's `veritysetup` with the libraries it loads, and
//! Debian's `dm-verity` module with what it depends on) and a unified kernel image
//! signed with the repository's test key. Under OVMF with Secure Boot on (TCG), the
//! initrd opens the root with the root hash the signed command line carries and the
//! root's `/init` prints its marker from `/dev/mapper/root`; the same disk with one
//! byte of the root file system changed stops at a verity error and never prints it.
//! The initrd is a sorted `newc` cpio that GNU cpio reads back, its members are in the
//! disk's provenance with where each came from, and it is reproducible.

use super::secure_boot::{boot_secure, uki_of, with_uki};
use super::vm::{busybox, kernel, kernel_modules, uefi_stub};
use super::vm_verity::check;
use crate::common::ovmf::{enrolled_vars, test_keys};
use crate::common::sha256_hex;
use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const MOTD: &str = "an immutable cairn disk\n";
const MARKER: &str = "CAIRN-VERITY-MARKER";

/// The root's first program: the SHA-256 of /etc/motd (read through dm-verity) and
/// the mount of `/`, then power off. `set -e`: a read error stops it before the marker.
const ROOT_INIT: &str = "#!/bin/busybox sh\n\
set -e\n\
/bin/busybox mount -t proc proc /proc\n\
motd=$(/bin/busybox sha256sum /etc/motd)\n\
root=$(/bin/busybox grep ' / ' /proc/mounts)\n\
/bin/busybox echo \"CAIRN-VERITY-MARKER $motd | $root\"\n\
/bin/busybox poweroff -f\n";

/// `veritysetup` of the host (Debian's cryptsetup-bin) with every library `ldd` says
/// it loads, laid out as in the image: `usr/sbin/veritysetup`, the libraries in
/// `usr/lib/x86_64-linux-gnu/`, the dynamic linker at `lib64/`.
fn veritysetup_tree(dir: &Path) {
    let libs = dir.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&libs).unwrap();
    std::fs::create_dir_all(dir.join("usr/sbin")).unwrap();
    std::fs::create_dir_all(dir.join("lib64")).unwrap();
    let veritysetup = Path::new("/usr/sbin/veritysetup");
    std::fs::copy(veritysetup, dir.join("usr/sbin/veritysetup")).unwrap();
    let ldd = run_ok(Command::new("ldd").arg(veritysetup));
    for line in String::from_utf8(ldd.stdout).unwrap().lines() {
        let line = line.trim();
        if let Some((name, rest)) = line.split_once(" => ") {
            let path = rest.split_whitespace().next().unwrap();
            std::fs::copy(path, libs.join(name)).unwrap();
        } else if line.starts_with("/lib64/ld-linux-x86-64.so.2") {
            std::fs::copy(
                "/lib64/ld-linux-x86-64.so.2",
                dir.join("lib64/ld-linux-x86-64.so.2"),
            )
            .unwrap();
        }
    }
}

/// A signed verity recipe in `dir` whose initrd cairn builds.
fn immutable_recipe(dir: &Path) -> PathBuf {
    std::fs::copy(busybox(), dir.join("busybox")).unwrap();
    std::fs::copy(kernel(), dir.join("vmlinuz")).unwrap();
    std::fs::copy(uefi_stub(), dir.join("stub.efi")).unwrap();
    std::fs::copy(
        repo_root().join("recipes/initrd/verity-init"),
        dir.join("verity-init"),
    )
    .unwrap();
    std::fs::write(dir.join("root-init"), ROOT_INIT).unwrap();
    veritysetup_tree(&dir.join("sys"));
    copy_tree(&kernel_modules(), &dir.join("modules"));
    let (key, cert) = test_keys();
    std::fs::create_dir(dir.join("keys")).unwrap();
    std::fs::copy(key, dir.join("keys/db.key")).unwrap();
    std::fs::copy(cert, dir.join("keys/db.crt")).unwrap();
    write_recipe(
        dir,
        "immutable.yaml",
        &format!(
            r#"cairn: 1
name: immutable
epoch: 1700000000
sources:
  busybox: {{ path: busybox }}
  kernel: {{ path: vmlinuz }}
  stub: {{ path: stub.efi }}
  verity-init: {{ path: verity-init }}
  root-init: {{ path: root-init }}
  sys: {{ path: sys }}
  modules: {{ path: modules }}
layers:
  - name: base
    contents:
      - copy: busybox
        to: /bin/busybox
        mode: 0o755
      - symlink: /bin/sh
        target: busybox
      - copy: sys
        to: /
      - copy: modules
        to: /
      - copy: verity-init
        to: /usr/lib/initrd/init
        mode: 0o755
      - copy: root-init
        to: /init
        mode: 0o755
      - dir: /proc
      - dir: /sys
      - dir: /dev
      - file: /etc/motd
        content: {MOTD:?}
vm:
  kernel: {{ source: kernel }}
  initrd:
    init: /usr/lib/initrd/init
    files: [/bin/busybox, /usr/sbin/veritysetup]
    modules: [dm-verity]
  cmdline: "console=ttyS0 init=/init panic=-1"
  root: {{ fs: ext4, size: 32M, verity: true }}
  boot: uefi
  stub: {{ source: stub }}
  secure_boot: {{ key: keys/db.key, cert: keys/db.crt }}
"#
        ),
    )
}

/// The initrd's members as the signed provenance records them, by path.
fn recorded_members(provenance: &Value) -> Vec<Value> {
    provenance["predicate"]["buildDefinition"]["internalParameters"]["vm"]["initrd"]["built"]
        ["members"]
        .as_array()
        .expect("the provenance lists the built initrd's members")
        .clone()
}

fn member<'a>(members: &'a [Value], path: &str) -> &'a Value {
    members
        .iter()
        .find(|m| m["path"] == path)
        .unwrap_or_else(|| panic!("no member {path} in {members:#?}"))
}

/// `cpio -t` of an archive: its paths, in order.
fn cpio_listing(archive: &Path) -> Vec<String> {
    let out = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!("cpio -t --quiet < '{}'", archive.display())),
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_verity_root_boots_through_the_built_initrd_under_secure_boot_and_a_changed_byte_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = immutable_recipe(dir.path());
    let (sign_key, _, _) = keygen(dir.path(), "ci");
    let out = dir.path().join("out");
    let report = build_json(&recipe, &out, &["--sign-key", sign_key.to_str().unwrap()]);
    let roothash = report["disk"]["verity"]["roothash"]
        .as_str()
        .unwrap_or_else(|| panic!("no root hash in the report: {report:#}"))
        .to_string();

    // The initrd: what the recipe named, the libraries and modules they need, and no
    // more; each member traced to the image file and source it came from.
    let provenance = provenance_of(&out.join("immutable.disk.intoto.jsonl"));
    let members = recorded_members(&provenance);
    assert_eq!(
        report["disk"]["initrd"]["built_members"],
        members.len(),
        "{report:#}"
    );
    let init = member(&members, "/init");
    assert_eq!(init["image_path"], "/usr/lib/initrd/init");
    assert_eq!(init["from"], "verity-init");
    assert_eq!(
        init["sha256"],
        sha256_hex(&std::fs::read(dir.path().join("verity-init")).unwrap())
    );
    assert_eq!(member(&members, "/usr/sbin/veritysetup")["from"], "sys");
    assert_eq!(
        member(&members, "/lib64/ld-linux-x86-64.so.2")["from"],
        "sys"
    );
    assert!(
        members
            .iter()
            .any(|m| m["path"] == "/usr/lib/x86_64-linux-gnu/libcryptsetup.so.12"),
        "veritysetup's library is missing: {members:#?}"
    );
    let modules: Vec<&str> = members
        .iter()
        .filter_map(|m| m["path"].as_str())
        .filter(|p| p.ends_with(".ko"))
        .map(|p| p.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        modules,
        [
            "dm-bufio.ko",
            "dm-mod.ko",
            "dm-verity.ko",
            "reed_solomon.ko"
        ],
        "dm-verity and what it depends on, and not squashfs"
    );

    // A sorted newc cpio that GNU cpio reads, with modules.dep as modprobe reads it.
    let initrd = out.join("immutable.initrd");
    let listing = cpio_listing(&initrd);
    let mut sorted = listing.clone();
    sorted.sort();
    assert_eq!(listing, sorted);
    assert!(listing.contains(&"init".to_string()), "{listing:?}");
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run_ok(
        Command::new("sh")
            .current_dir(&unpacked)
            .arg("-c")
            .arg(format!("cpio -idm --quiet < '{}'", initrd.display())),
    );
    let version = std::fs::read_dir(unpacked.join("lib/modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let dep = std::fs::read_to_string(version.join("modules.dep")).unwrap();
    assert!(
        dep.contains(
            "kernel/drivers/md/dm-verity.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko kernel/lib/reed_solomon/reed_solomon.ko\n"
        ),
        "{dep}"
    );
    assert_eq!(
        std::fs::read(unpacked.join("usr/sbin/veritysetup")).unwrap(),
        std::fs::read("/usr/sbin/veritysetup").unwrap()
    );

    // Under Secure Boot with the test certificate enrolled: the initrd opens the
    // verity root, and the root's init reads through it.
    let (_, cert) = test_keys();
    let vars = enrolled_vars(dir.path(), &cert);
    let disk_path = out.join("immutable.raw");
    let serial = boot_secure(&disk_path, &vars);
    let marker = format!(
        "{MARKER} {}  /etc/motd | /dev/mapper/root / ext4 ro",
        sha256_hex(MOTD.as_bytes())
    );
    assert!(
        serial.lines().any(|l| l.starts_with(&marker)),
        "the verity root did not reach its marker; serial console:\n{serial}"
    );
    assert!(serial.contains("Secure boot enabled"), "{serial}");
    assert!(
        serial.contains(&format!("roothash={roothash}")),
        "the signed command line carries the root hash: {serial}"
    );

    // One byte of /etc/motd changed in the root partition: the UKI is still the
    // signed one, but dm-verity refuses the block and the marker is never printed.
    let mut disk = std::fs::read(&disk_path).unwrap();
    let (_, esp) = uki_of(&disk, dir.path());
    let at = disk
        .windows(MOTD.len())
        .enumerate()
        .skip(esp.end)
        .find(|(_, w)| *w == MOTD.as_bytes())
        .map(|(i, _)| i)
        .expect("/etc/motd's bytes in the root partition");
    disk[at] ^= 0x20;
    let changed = dir.path().join("changed.raw");
    std::fs::write(&changed, &disk).unwrap();
    let serial = boot_secure(&changed, &vars);
    assert!(
        !serial.contains(MARKER),
        "a changed root reached the marker; serial console:\n{serial}"
    );
    assert!(
        serial.contains("verity") && serial.contains("is corrupted"),
        "the kernel did not report the corrupted block; serial console:\n{serial}"
    );
}

/// The same inputs copied elsewhere, built under another umask, time zone, locale,
/// thread count and working directory: the initrd, the disk (its signed UKI inside)
/// and the signed statements are the same bytes. `cairn verify` finds the initrd that
/// boots to be exactly the recorded one, each file the image's own, and names the
/// member of an initrd changed inside the unified kernel image.
#[test]
fn the_built_initrd_is_reproducible_and_verify_traces_each_member_to_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let first_dir = dir.path().join("a");
    std::fs::create_dir(&first_dir).unwrap();
    immutable_recipe(&first_dir);
    let (sign_key, public, _) = keygen(dir.path(), "ci");
    let second_dir = dir.path().join("b");
    copy_tree(&first_dir, &second_dir);
    let build = |dir: &Path, umask: &str, env: &[(&str, &str)]| {
        let out = dir.join("out");
        run_ok(
            Command::new("sh")
                .current_dir(dir)
                .arg("-c")
                .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
                .arg(env!("CARGO_BIN_EXE_cairn"))
                .args([
                    "build",
                    "--quiet",
                    "immutable.yaml",
                    "-o",
                    "out",
                    "--sign-key",
                ])
                .arg(&sign_key)
                .env_remove("SOURCE_DATE_EPOCH")
                .env("CAIRN_NO_CACHE", "1")
                .envs(env.iter().copied()),
        );
        ["initrd", "raw", "disk.intoto.jsonl"].map(|ext| {
            let bytes = std::fs::read(out.join(format!("immutable.{ext}"))).unwrap();
            (ext, sha256_hex(&bytes))
        })
    };
    let a = build(&first_dir, "022", &[("TZ", "UTC"), ("LANG", "C")]);
    let b = build(
        &second_dir,
        "077",
        &[
            ("TZ", "Pacific/Kiritimati"),
            ("LANG", "de_DE.UTF-8"),
            ("RAYON_NUM_THREADS", "1"),
        ],
    );
    assert_eq!(a, b);
    let first = first_dir.join("out");

    // The initrd's own SPDX document, signed beside the disk's statements: valid SPDX
    // 2.3 to the SPDX tools, its files the initrd's, made from the image's document.
    let sbom = initrd_sbom(&first.join("immutable.disk.intoto.jsonl"));
    let sbom_path = dir.path().join("initrd.spdx.json");
    std::fs::write(&sbom_path, serde_json::to_vec(&sbom).unwrap()).unwrap();
    pyspdxtools(&sbom_path).unwrap_or_else(|e| panic!("pyspdxtools: {e}"));
    let names: Vec<&str> = sbom["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fileName"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"./usr/sbin/veritysetup") && names.contains(&"./init"),
        "{names:?}"
    );
    assert_eq!(
        sbom["externalDocumentRefs"][0]["externalDocumentId"], "DocumentRef-image",
        "{sbom:#}"
    );

    let disk_path = first.join("immutable.raw");
    let (ok, verdict) = verify_disk(&disk_path, &public);
    assert!(ok, "{verdict:#}");
    let initrd = check(&verdict, "initrd");
    assert_eq!(initrd["ok"], true, "{verdict:#}");

    // One byte of busybox changed inside the initrd of the unified kernel image.
    let disk = std::fs::read(&disk_path).unwrap();
    let (mut uki, esp) = uki_of(&disk, dir.path());
    let busybox_bytes = std::fs::read(busybox()).unwrap();
    let probe = &busybox_bytes[4096..4160];
    let at = uki
        .windows(probe.len())
        .position(|w| w == probe)
        .expect("busybox's bytes in the UKI's .initrd");
    uki[at] ^= 0xff;
    let changed = first.join("changed.raw");
    std::fs::write(&changed, with_uki(&disk, esp, &uki, dir.path())).unwrap();
    std::fs::copy(
        first.join("immutable.disk.intoto.jsonl"),
        first.join("changed.disk.intoto.jsonl"),
    )
    .unwrap();
    let (ok, verdict) = verify_disk(&changed, &public);
    assert!(!ok);
    let initrd = check(&verdict, "initrd");
    assert_eq!(initrd["ok"], false, "{verdict:#}");
    assert!(
        initrd["detail"]
            .as_str()
            .unwrap()
            .contains("/bin/busybox in the initrd is not the recorded one"),
        "{verdict:#}"
    );
}

/// `compression: gzip` and `zstd`: the initrd is the same archive as the uncompressed
/// one, as the host's `gzip -dc` and `zstd -dc` unpack it, smaller; the provenance
/// records the compression, and `cairn verify` unpacks the initrd inside the unified
/// kernel image and traces each member as before.
#[test]
fn a_compressed_initrd_unpacks_to_the_same_archive_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = immutable_recipe(dir.path());
    let (sign_key, public, _) = keygen(dir.path(), "ci");
    let sign = ["--sign-key", sign_key.to_str().unwrap()];
    let text = std::fs::read_to_string(&recipe).unwrap();
    build_json(&recipe, &dir.path().join("none"), &sign);
    let archive = std::fs::read(dir.path().join("none/immutable.initrd")).unwrap();
    for (compression, tool) in [("gzip", "gzip"), ("zstd", "zstd")] {
        let compressed = dir.path().join(format!("{compression}.yaml"));
        std::fs::write(
            &compressed,
            text.replace(
                "    modules: [dm-verity]\n",
                &format!("    modules: [dm-verity]\n    compression: {compression}\n"),
            ),
        )
        .unwrap();
        let out = dir.path().join(compression);
        build_json(&compressed, &out, &sign);
        let initrd = out.join("immutable.initrd");
        let unpacked = run_ok(Command::new(tool).arg("-dc").arg(&initrd)).stdout;
        assert!(unpacked == archive, "{compression}: not the same archive");
        let size = std::fs::metadata(&initrd).unwrap().len();
        assert!(
            size < archive.len() as u64 / 2,
            "{compression}: {size} bytes"
        );
        let provenance = provenance_of(&out.join("immutable.disk.intoto.jsonl"));
        let built = &provenance["predicate"]["buildDefinition"]["internalParameters"]["vm"]
            ["initrd"]["built"];
        assert_eq!(built["compression"], compression, "{built:#}");
        let (ok, verdict) = verify_disk(&out.join("immutable.raw"), &public);
        assert!(ok, "{compression}: {verdict:#}");
        assert_eq!(check(&verdict, "initrd")["ok"], true, "{verdict:#}");
    }
}

/// The SPDX document of the signed statements in `jsonl` that describes the initrd.
fn initrd_sbom(jsonl: &Path) -> Value {
    use base64::Engine as _;
    std::fs::read_to_string(jsonl)
        .unwrap()
        .lines()
        .map(|line| {
            let envelope: Value = serde_json::from_str(line).unwrap();
            let payload = base64::engine::general_purpose::STANDARD
                .decode(envelope["payload"].as_str().unwrap())
                .unwrap();
            serde_json::from_slice::<Value>(&payload).unwrap()["predicate"].clone()
        })
        .find(|p| p["packages"][0]["SPDXID"] == "SPDXRef-Initrd")
        .expect("a signed SPDX document of the initrd")
}

/// What the recipe names must be in the image: each mistake points at its line.
#[test]
fn a_missing_file_module_or_library_of_the_initrd_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = immutable_recipe(dir.path());
    let text = std::fs::read_to_string(&recipe).unwrap();
    let cases = [
        (
            "files: [/bin/busybox, /usr/sbin/veritysetup]",
            "files: [/bin/busybox, /usr/sbin/cryptsetup]",
            "the initrd's `/usr/sbin/cryptsetup` is not in the image",
        ),
        (
            "modules: [dm-verity]",
            "modules: [dm-crypt]",
            "has no module `dm-crypt`",
        ),
        (
            "      - copy: modules\n        to: /\n",
            "",
            "the image has no kernel modules",
        ),
    ];
    for (from, to, message) in cases {
        let broken = write_recipe(dir.path(), "broken.yaml", &text.replace(from, to));
        let (code, stderr) = run_err(
            cairn()
                .arg("build")
                .arg(&broken)
                .arg("-o")
                .arg(dir.path().join("x")),
        );
        assert_ne!(code, 0);
        assert!(stderr.contains(message), "{to}: {stderr}");
        assert!(
            stderr.contains("broken.yaml:"),
            "the error points into the recipe: {stderr}"
        );
    }
    // A library veritysetup loads, taken out of the image.
    std::fs::remove_file(
        dir.path()
            .join("sys/usr/lib/x86_64-linux-gnu/libcryptsetup.so.12"),
    )
    .unwrap();
    let (_, stderr) = run_err(
        cairn()
            .arg("build")
            .arg(&recipe)
            .arg("-o")
            .arg(dir.path().join("y")),
    );
    assert!(
        stderr.contains("needs the library libcryptsetup.so.12"),
        "{stderr}"
    );
}
