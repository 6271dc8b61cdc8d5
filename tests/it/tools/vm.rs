//! VM disks, for real: a recipe with `vm:` builds raw and qcow2 disks that boot Debian's
//! cloud kernel under QEMU (TCG, never KVM) into the image's `/init`, which prints the
//! SHA-256 of files in the image; the disks are bit-for-bit reproducible, verify and
//! trace, and the host tools they were made with are pinned. (A missing tool is
//! covered by a unit test in `src/disk/tools.rs`: the tools here are always installed.)
//!
//! The kernel is the one `linux-image-cloud-amd64` depends on, fetched once with
//! `apt-get download` from the host's configured Debian mirror and cached in
//! `target/vm-kernel/`.

use crate::common::apt::{pkg, AptRepo, Faults, Pkg, SYMLINK};
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
pub(super) const MOTD: &str = "hello from a cairn disk\n";

/// The kernel package `linux-image-cloud-amd64` depends on.
fn kernel_package() -> String {
    let depends = run_ok(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]));
    let depends = String::from_utf8_lossy(&depends.stdout).into_owned();
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| {
            p.starts_with("linux-image-") && p.as_bytes().get(12).is_some_and(u8::is_ascii_digit)
        })
        .unwrap_or_else(|| {
            panic!("linux-image-cloud-amd64 depends on no kernel package:\n{depends}")
        })
        .to_string()
}

/// Debian's cloud kernel (ext4 and NVMe built in, so no initramfs is needed).
pub(super) fn kernel() -> PathBuf {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL
        .get_or_init(|| {
            from_package(&kernel_package(), "vmlinuz", |root| {
                std::fs::read_dir(root.join("boot"))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .find(|p| {
                        p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
                    })
                    .expect("the kernel package holds /boot/vmlinuz-*")
            })
        })
        .clone()
}

/// The kernel's squashfs module (squashfs is not built in: an initrd loads it).
fn squashfs_module() -> PathBuf {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            from_package(&kernel_package(), "squashfs.ko", |root| {
                let modules = root.join("lib/modules");
                let version = std::fs::read_dir(&modules)
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path();
                version.join("kernel/fs/squashfs/squashfs.ko")
            })
        })
        .clone()
}

/// The kernel's modules a verity root needs (dm-verity and what its `.modinfo` says
/// it depends on) and one it does not (squashfs), as the kernel package lays them
/// out: a directory holding `lib/modules/<version>/kernel/...`.
pub(super) fn kernel_modules() -> PathBuf {
    static MODULES: OnceLock<PathBuf> = OnceLock::new();
    MODULES
        .get_or_init(|| {
            from_package(&kernel_package(), "modules", |root| {
                let picked = root.with_file_name("picked");
                for module in [
                    "drivers/md/dm-verity.ko",
                    "drivers/md/dm-bufio.ko",
                    "drivers/md/dm-mod.ko",
                    "lib/reed_solomon/reed_solomon.ko",
                    "fs/squashfs/squashfs.ko",
                ] {
                    let from = std::fs::read_dir(root.join("lib/modules"))
                        .unwrap()
                        .next()
                        .unwrap()
                        .unwrap()
                        .path();
                    let rel = from.strip_prefix(root).unwrap().join("kernel").join(module);
                    std::fs::create_dir_all(picked.join(&rel).parent().unwrap()).unwrap();
                    std::fs::copy(root.join(&rel), picked.join(&rel)).unwrap();
                }
                picked
            })
        })
        .clone()
}

/// systemd-stub for x86-64, from Debian's systemd-boot-efi (not installed: unpacked).
pub(super) fn uefi_stub() -> PathBuf {
    static STUB: OnceLock<PathBuf> = OnceLock::new();
    STUB.get_or_init(|| {
        from_package("systemd-boot-efi", "linuxx64.efi.stub", |root| {
            root.join("usr/lib/systemd/boot/efi/linuxx64.efi.stub")
        })
    })
    .clone()
}

/// A file from a Debian package, fetched with `apt-get download` from the host's
/// configured mirror, unpacked with `dpkg-deb -x`, and cached as `target/vm-kernel/NAME`.
fn from_package(package: &str, name: &str, pick: impl Fn(&Path) -> PathBuf) -> PathBuf {
    let cache = repo_root().join("target/vm-kernel");
    let cached = cache.join(name);
    if cached.exists() {
        return cached;
    }
    std::fs::create_dir_all(&cache).unwrap();
    let work = tempfile::tempdir_in(&cache).unwrap();
    run_ok(
        Command::new("apt-get")
            .current_dir(work.path())
            .args(["download", package]),
    );
    let deb = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("apt-get download wrote a .deb");
    let unpacked = work.path().join("x");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked));
    let partial = work.path().join(name);
    // A file or a directory of the package.
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(pick(&unpacked))
            .arg(&partial),
    );
    std::fs::rename(&partial, &cached).unwrap();
    cached
}

/// The first sectors of a bzImage: enough for cairn's check, for tests that do not boot.
pub(super) fn fake_bzimage(path: &Path) {
    let mut bytes = vec![0u8; 4096];
    bytes[0x202..0x206].copy_from_slice(b"HdrS");
    std::fs::write(path, bytes).unwrap();
}

pub(super) fn busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox-static is installed (TEST_TOOLS)")
}

/// A VM recipe in `dir`: busybox, an `/init` that prints the SHA-256 of two files and
/// powers off, a symlink and a hard-linked archive member; `kernel` copied in.
pub(super) fn write_vm_recipe(dir: &Path, kernel: &Path, formats: &str) -> PathBuf {
    std::fs::copy(busybox(), dir.join("busybox")).unwrap();
    std::fs::copy(kernel, dir.join("vmlinuz")).unwrap();
    std::fs::write(
        dir.join("init"),
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox echo \"CAIRN-MARKER $(/bin/busybox sha256sum /etc/motd /bin/busybox /opt/linked | /bin/busybox tr '\\n' ' ')\"\n\
         /bin/busybox poweroff -f\n",
    )
    .unwrap();
    // An archive with a hard link, so links reach the disk as links.
    let staging = tempfile::tempdir().unwrap();
    std::fs::create_dir(staging.path().join("opt")).unwrap();
    std::fs::write(staging.path().join("opt/data"), b"linked bytes\n").unwrap();
    std::fs::hard_link(
        staging.path().join("opt/data"),
        staging.path().join("opt/linked"),
    )
    .unwrap();
    run_ok(
        Command::new("tar")
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--mtime=@0",
                "-czf",
            ])
            .arg(dir.join("opt.tar.gz"))
            .arg("-C")
            .arg(staging.path())
            .arg("opt"),
    );
    let recipe = dir.join("vm.yaml");
    std::fs::write(
        &recipe,
        format!(
            r#"cairn: 1
name: vmtest
epoch: 1700000000
sources:
  busybox: {{ path: busybox }}
  init: {{ path: init }}
  kernel: {{ path: vmlinuz }}
  opt: {{ archive: opt.tar.gz }}
layers:
  - name: base
    contents:
      - copy: busybox
        to: /bin/busybox
        mode: 0o755
      - symlink: /bin/sh
        target: busybox
      - copy: init
        to: /init
        mode: 0o755
      - dir: /proc
      - dir: /sys
      - dir: /dev
      - extract: opt
  - name: config
    contents:
      - file: /etc/motd
        content: {MOTD:?}
vm:
  kernel: {{ source: kernel }}
  cmdline: "console=ttyS0 root=PARTLABEL=root ro init=/init panic=-1"
  root: {{ fs: ext4, size: 64M }}
  formats: [{formats}]
"#
        ),
    )
    .unwrap();
    recipe
}

/// How QEMU starts the guest.
pub(super) enum Firmware<'a> {
    /// `-kernel` and `-append`: QEMU loads the kernel.
    Direct { kernel: &'a Path, cmdline: &'a str },
    /// The same, with `-initrd`.
    DirectWithInitrd {
        kernel: &'a Path,
        cmdline: &'a str,
        initrd: &'a Path,
    },
    /// OVMF, with nothing but the disk.
    Uefi,
}

/// Turns the recipe `write_vm_recipe` wrote into a `boot: uefi` one with systemd-stub.
pub(super) fn make_uefi(recipe: &Path) {
    std::fs::copy(uefi_stub(), recipe.with_file_name("stub.efi")).unwrap();
    let text = std::fs::read_to_string(recipe)
        .unwrap()
        .replace(
            "  opt: { archive: opt.tar.gz }",
            "  opt: { archive: opt.tar.gz }\n  stub: { path: stub.efi }",
        )
        .replace("vm:\n", "vm:\n  boot: uefi\n  stub: { source: stub }\n");
    std::fs::write(recipe, text).unwrap();
}

/// Boots `disk` under QEMU (TCG) and returns what the serial console printed. The
/// guest powers off by itself; past the timeout QEMU is killed by its PID.
pub(super) fn boot(firmware: Firmware, disk: &Path, format: &str) -> String {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("serial.log");
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-accel",
        "tcg",
        "-m",
        "512",
        "-display",
        "none",
        "-no-reboot",
    ])
    .args(["-monitor", "none", "-serial"])
    .arg(format!("file:{}", log.display()));
    match firmware {
        Firmware::Direct { kernel, cmdline } => {
            qemu.arg("-kernel").arg(kernel).args(["-append", cmdline]);
        }
        Firmware::DirectWithInitrd {
            kernel,
            cmdline,
            initrd,
        } => {
            qemu.arg("-kernel")
                .arg(kernel)
                .args(["-append", cmdline])
                .arg("-initrd")
                .arg(initrd);
        }
        Firmware::Uefi => {
            let vars = log_dir.path().join("OVMF_VARS.fd");
            std::fs::copy("/usr/share/OVMF/OVMF_VARS.fd", &vars)
                .expect("OVMF is installed (TEST_TOOLS: ovmf)");
            qemu.arg("-drive")
                .arg("if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd")
                .arg("-drive")
                .arg(format!("if=pflash,format=raw,file={}", vars.display()));
        }
    }
    let mut qemu = qemu
        .arg("-drive")
        .arg(format!(
            "file={},format={format},if=none,id=root,snapshot=on",
            disk.display()
        ))
        .args(["-device", "nvme,drive=root,serial=cairn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 runs (TEST_TOOLS: qemu-system-x86)");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = qemu.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > BOOT_TIMEOUT {
            qemu.kill().unwrap();
            qemu.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let serial = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    assert!(
        status.is_some(),
        "{} did not power off within {BOOT_TIMEOUT:?}; serial console:\n{serial}",
        disk.display()
    );
    serial
}

#[test]
fn raw_and_qcow2_disks_boot_the_image_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_vm_recipe(dir.path(), &kernel(), "raw, qcow2");
    let key = dir.path().join("ci");
    run_ok(cairn().arg("keygen").arg(&key));
    let out = dir.path().join("out");
    let report = build_json(
        &recipe,
        &out,
        &["--sign-key", key.with_extension("key").to_str().unwrap()],
    );
    let disk = &report["disk"];
    let files = disk["files"].as_array().unwrap();
    assert_eq!(
        files
            .iter()
            .map(|f| f["format"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["raw", "qcow2"]
    );
    let cmdline = std::fs::read_to_string(out.join("vmtest.cmdline")).unwrap();
    assert_eq!(
        cmdline.trim(),
        "console=ttyS0 root=PARTLABEL=root ro init=/init panic=-1"
    );
    assert_eq!(
        std::fs::read(out.join("vmtest.vmlinuz")).unwrap(),
        std::fs::read(kernel()).unwrap()
    );

    // The disks hold the same blocks; qemu-img finds the qcow2 consistent.
    let raw = out.join("vmtest.raw");
    let qcow2 = out.join("vmtest.qcow2");
    run_ok(Command::new("qemu-img").args(["check", "-q"]).arg(&qcow2));
    run_ok(
        Command::new("qemu-img")
            .args(["compare", "-q", "-f", "raw", "-F", "qcow2"])
            .arg(&raw)
            .arg(&qcow2),
    );

    // The root partition (at 1 MiB, 64 MiB long) is a clean ext4 file system.
    let partition = dir.path().join("root.ext4");
    let disk_bytes = std::fs::read(&raw).unwrap();
    std::fs::write(&partition, &disk_bytes[1 << 20..(1 << 20) + (64 << 20)]).unwrap();
    let fsck = Command::new("/usr/sbin/e2fsck")
        .args(["-f", "-n"])
        .arg(&partition)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );

    // Every inode carries the recipe's owner, mode and epoch, never the host's.
    let stat = run_ok(
        Command::new("/usr/sbin/debugfs")
            .args(["-R", "stat /init"])
            .arg(&partition),
    );
    let stat = String::from_utf8_lossy(&stat.stdout);
    for field in ["ctime", " atime", "mtime", "crtime"] {
        assert!(
            stat.contains(&format!("{field}: 0x6553f100:00000000")),
            "{field}: {stat}"
        );
    }
    assert!(
        stat.contains("Mode:  0755") && stat.contains("User:     0   Group:     0"),
        "{stat}"
    );

    let busybox_sha = sha256_hex(&std::fs::read(busybox()).unwrap());
    let expected = [
        format!("{}  /etc/motd", sha256_hex(MOTD.as_bytes())),
        format!("{busybox_sha}  /bin/busybox"),
        format!("{}  /opt/linked", sha256_hex(b"linked bytes\n")),
    ];
    for (disk, format) in [(&raw, "raw"), (&qcow2, "qcow2")] {
        let kernel = out.join("vmtest.vmlinuz");
        let firmware = Firmware::Direct {
            kernel: &kernel,
            cmdline: cmdline.trim(),
        };
        let serial = boot(firmware, disk, format);
        let marker = serial
            .lines()
            .find(|l| l.starts_with("CAIRN-MARKER "))
            .unwrap_or_else(|| {
                panic!("{format}: /init printed no marker; serial console:\n{serial}")
            });
        for e in &expected {
            assert!(
                marker.contains(e.as_str()),
                "{format}: `{e}` not in {marker}"
            );
        }
        assert!(
            serial.contains("Mounted root (ext4 filesystem) readonly"),
            "{format}: {serial}"
        );

        let verified = run_ok(
            cairn()
                .arg("verify")
                .arg(disk)
                .arg("--key")
                .arg(key.with_extension("pub")),
        );
        let text = String::from_utf8_lossy(&verified.stdout);
        assert!(text.ends_with("verified\n"), "{text}");
        for check in [
            "disk",
            "signatures",
            "subject",
            "provenance",
            "sbom",
            "boot",
        ] {
            assert!(text.contains(&format!("ok   {check}")), "{check}: {text}");
        }
    }

    let traced = run_ok(
        cairn()
            .arg("trace")
            .arg(&raw)
            .arg("/bin/busybox")
            .arg("--json"),
    );
    let traced: serde_json::Value = serde_json::from_slice(&traced.stdout).unwrap();
    let m = &traced["matches"][0];
    assert_eq!(m["sha256"], format!("sha256:{busybox_sha}"));
    assert_eq!(m["source"]["name"], "busybox");
    assert_eq!(m["layer"]["name"], "base");
    assert_eq!(m["recipe_line"], 12);
    assert_eq!(
        (m["mode"].as_u64(), m["uid"].as_u64()),
        (Some(0o755), Some(0))
    );

    // A kernel beside the disk that is not the one the provenance names.
    std::fs::write(out.join("vmtest.vmlinuz"), b"another kernel").unwrap();
    let failed = cairn()
        .arg("verify")
        .arg(&raw)
        .arg("--key")
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&failed.stdout);
    assert!(
        !failed.status.success()
            && text.contains("FAIL boot")
            && text.contains("vmtest.vmlinuz is not the recorded kernel"),
        "{text}"
    );

    // A disk whose bytes changed no longer matches what was signed.
    let mut bytes = std::fs::read(&raw).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&raw, bytes).unwrap();
    let (code, _) = run_err(
        cairn()
            .arg("verify")
            .arg(&raw)
            .arg("--key")
            .arg(key.with_extension("pub")),
    );
    assert_eq!(code, 1);
}

#[test]
fn a_uefi_disk_boots_with_firmware_alone() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_vm_recipe(dir.path(), &kernel(), "raw, qcow2");
    make_uefi(&recipe);
    let out = dir.path().join("out");
    let key = dir.path().join("k");
    run_ok(cairn().arg("keygen").arg(&key));
    build_json(
        &recipe,
        &out,
        &["--sign-key", key.with_extension("key").to_str().unwrap()],
    );
    let verified = run_ok(
        cairn()
            .arg("verify")
            .arg(out.join("vmtest.qcow2"))
            .arg("--key")
            .arg(key.with_extension("pub")),
    );
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(
        text.contains(
            "ok   boot        the unified kernel image in the EFI system partition carries"
        ) && text.ends_with("verified\n"),
        "{text}"
    );
    let expected = format!("CAIRN-MARKER {}  /etc/motd", sha256_hex(MOTD.as_bytes()));
    for format in ["raw", "qcow2"] {
        let serial = boot(
            Firmware::Uefi,
            &out.join(format!("vmtest.{format}")),
            format,
        );
        assert!(
            serial.lines().any(|l| l.starts_with(&expected)),
            "{format}: no `{expected}`; serial console:\n{serial}"
        );
        // The command line came from the image's .cmdline section, not from QEMU.
        assert!(
            serial.contains(
                "Kernel command line: console=ttyS0 root=PARTLABEL=root ro init=/init panic=-1"
            ),
            "{format}: {serial}"
        );
    }

    // The ESP holds the unified kernel image: stub, then .osrel, .cmdline, .linux.
    let raw = std::fs::read(out.join("vmtest.raw")).unwrap();
    let esp = dir.path().join("esp.fat");
    let (_, partitions) =
        cairn::disk::gpt::read_partitions(&mut std::io::Cursor::new(&raw)).unwrap();
    let names: Vec<&str> = partitions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["esp", "root"]);
    let p = &partitions[0];
    std::fs::write(&esp, &raw[p.offset as usize..(p.offset + p.size) as usize]).unwrap();
    let uki = cairn::disk::esp::read(&esp, cairn::disk::esp::BOOT_PATH).unwrap();
    let sections = cairn::disk::uki::sections(&uki).unwrap();
    let linux = sections.iter().find(|s| s.name == ".linux").unwrap();
    assert_eq!(linux.bytes, std::fs::read(kernel()).unwrap());
    let names: Vec<&str> = sections.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.ends_with(&[".osrel", ".cmdline", ".linux"]),
        "{names:?}"
    );
}

#[test]
fn disks_are_bit_for_bit_reproducible_under_varied_conditions() {
    let first = tempfile::tempdir().unwrap();
    let kernel = first.path().join("bzimage");
    fake_bzimage(&kernel);
    let recipe = write_vm_recipe(first.path(), &kernel, "raw, qcow2");
    // UEFI, to cover the whole disk: GPT with two partitions, FAT, PE, ext4, qcow2.
    make_uefi(&recipe);
    // Epoch 0 (no `epoch:`, no SOURCE_DATE_EPOCH), which e2fsprogs reads as "now".
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, text.replace("epoch: 1700000000\n", "")).unwrap();
    let key = first.path().join("k");
    run_ok(cairn().arg("keygen").arg(&key));
    run_ok(cairn().arg("lock").arg(&recipe));

    // The same inputs elsewhere, with other mtimes and modes, built later under another
    // umask, time zone and locale from another working directory.
    let second = tempfile::tempdir().unwrap();
    for name in [
        "busybox",
        "init",
        "vmlinuz",
        "opt.tar.gz",
        "stub.efi",
        "vm.yaml",
        "vm.lock",
    ] {
        let to = second.path().join(name);
        std::fs::copy(first.path().join(name), &to).unwrap();
        let f = std::fs::File::options().write(true).open(&to).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(12345))
            .unwrap();
    }
    let build = |dir: &Path, umask: &str, env: &[(&str, &str)]| {
        let out = dir.join("out");
        let mut cmd = Command::new("sh");
        cmd.current_dir(dir)
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_cairn"))
            .args(["build", "--locked", "--quiet", "--sign-key"])
            .arg(key.with_extension("key"))
            .arg(dir.join("vm.yaml"))
            .arg("-o")
            .arg(&out)
            .env_remove("SOURCE_DATE_EPOCH")
            .env("CAIRN_NO_CACHE", "1")
            .envs(env.iter().copied());
        run_ok(&mut cmd);
        ["raw", "qcow2", "disk.intoto.jsonl"].map(|ext| {
            let bytes = std::fs::read(out.join(format!("vmtest.{ext}"))).unwrap();
            (ext, sha256_hex(&bytes))
        })
    };
    let a = build(first.path(), "022", &[("TZ", "UTC"), ("LANG", "C")]);
    std::thread::sleep(Duration::from_millis(1100));
    let b = build(
        second.path(),
        "077",
        &[("TZ", "Pacific/Chatham"), ("LANG", "de_DE.UTF-8")],
    );
    assert_eq!(a, b);
}

#[test]
fn tools_are_pinned_and_a_changed_tool_stops_the_build() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("bzimage");
    fake_bzimage(&kernel);
    let recipe = write_vm_recipe(dir.path(), &kernel, "qcow2");
    run_ok(cairn().arg("lock").arg(&recipe));
    let lock_path = dir.path().join("vm.lock");
    let read_lock = || -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&lock_path).unwrap()).unwrap()
    };
    assert!(
        read_lock().get("tools").is_none(),
        "ext4 and qcow2 are written natively: {}",
        read_lock()
    );

    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, text.replace("fs: ext4", "fs: squashfs")).unwrap();
    run_ok(cairn().arg("lock").arg(&recipe));
    let lock = read_lock();
    let pinned: Vec<&String> = lock["tools"].as_object().unwrap().keys().collect();
    assert_eq!(pinned, ["mksquashfs"]);
    let version = lock["tools"]["mksquashfs"].as_str().unwrap_or_default();
    assert!(version.starts_with("mksquashfs"), "{lock}");

    let mut changed = lock.clone();
    changed["tools"]["mksquashfs"] = "mksquashfs version 0.0.1".into();
    std::fs::write(&lock_path, serde_json::to_vec_pretty(&changed).unwrap()).unwrap();
    let out = dir.path().join("out");
    for extra in [&["--locked"][..], &[]] {
        let (code, stderr) = run_err(
            cairn()
                .arg("build")
                .args(extra)
                .arg(&recipe)
                .arg("-o")
                .arg(&out),
        );
        assert_eq!(code, 1);
        assert!(
            stderr.contains(
                "pins mksquashfs `mksquashfs version 0.0.1`, but this host has `mksquashfs "
            ) && stderr.contains("run `cairn lock` to re-pin it"),
            "{stderr}"
        );
    }
    assert!(!out.join("vmtest.qcow2").exists());
}

/// A small disk's bytes are checked in: a change to cairn's GPT, ext4 or qcow2
/// writer shows up here, with the partition table
/// and the root's inodes to read in the diff.
#[test]
fn a_small_disk_builds_to_its_golden_digests() {
    let dir = tempfile::tempdir().unwrap();
    fake_bzimage(&dir.path().join("bzimage"));
    std::fs::write(dir.path().join("hello.sh"), "#!/bin/sh\necho hello\n").unwrap();
    let recipe = dir.path().join("golden.yaml");
    std::fs::write(
        &recipe,
        r#"cairn: 1
name: golden
epoch: 1700000000
sources:
  kernel: { path: bzimage }
  hello: { path: hello.sh }
layers:
  - name: base
    contents:
      - copy: hello
        to: /usr/bin/hello
      - file: /etc/motd
        content: "golden\n"
      - dir: /tmp
        mode: 0o1777
      - symlink: /bin
        target: usr/bin
      - dir: /home/app
        owner: 65532:65532
vm:
  kernel: { source: kernel }
  cmdline: "console=ttyS0 root=PARTLABEL=root ro"
  root: { fs: ext4, size: 16M }
  formats: [raw, qcow2]
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let report = build_json(&recipe, &out, &[]);
    let mut text = String::new();
    for f in report["disk"]["files"].as_array().unwrap() {
        text.push_str(&format!("{} {} {}\n", f["format"], f["sha256"], f["size"]));
    }
    let raw = std::fs::read(out.join("golden.raw")).unwrap();
    let (guid, partitions) =
        cairn::disk::gpt::read_partitions(&mut std::io::Cursor::new(&raw)).unwrap();
    text.push_str(&format!("\ndisk guid {guid}\n"));
    for p in &partitions {
        text.push_str(&format!(
            "partition {} type {} guid {} at {} size {}\n",
            p.name, p.type_guid, p.guid, p.offset, p.size
        ));
    }
    let root = &partitions[0];
    let fs = dir.path().join("root.ext4");
    std::fs::write(
        &fs,
        &raw[root.offset as usize..(root.offset + root.size) as usize],
    )
    .unwrap();
    text.push('\n');
    for path in ["/", "/usr/bin", "/home"] {
        let listing = run_ok(
            Command::new("/usr/sbin/debugfs")
                .env("TZ", "UTC")
                .args(["-R", &format!("ls -l {path}")])
                .arg(&fs),
        );
        text.push_str(&format!(
            "ls -l {path}\n{}",
            String::from_utf8_lossy(&listing.stdout)
        ));
    }
    insta::assert_snapshot!("golden-vm-disk", text);
}

/// An initramfs (newc cpio, made with busybox) that loads squashfs.ko, mounts the
/// root partition and switches to it.
fn squashfs_initrd(path: &Path) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    std::fs::copy(busybox(), dir.path().join("bin/busybox")).unwrap();
    std::fs::copy(squashfs_module(), dir.path().join("squashfs.ko")).unwrap();
    std::fs::write(
        dir.path().join("init"),
        "#!/bin/busybox sh\n\
         /bin/busybox mkdir -p /dev /newroot\n\
         /bin/busybox mount -t devtmpfs dev /dev\n\
         /bin/busybox insmod /squashfs.ko\n\
         for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do\n\
           [ -e /dev/nvme0n1p1 ] && break\n\
           /bin/busybox sleep 0.5\n\
         done\n\
         /bin/busybox mount -t squashfs -o ro /dev/nvme0n1p1 /newroot\n\
         exec /bin/busybox switch_root /newroot /init\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path().join("init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let cpio = run_ok(
        Command::new("sh")
            .current_dir(dir.path())
            .arg("-c")
            .arg(format!(
                "find . | sort | {} cpio -o -H newc",
                busybox().display()
            )),
    );
    std::fs::write(path, cpio.stdout).unwrap();
}

#[test]
fn a_squashfs_root_boots_through_an_initrd_and_rebuilds_identically() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_vm_recipe(dir.path(), &kernel(), "raw, qcow2");
    squashfs_initrd(&dir.path().join("initrd.cpio"));
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace(
            "  kernel: { path: vmlinuz }",
            "  kernel: { path: vmlinuz }\n  initrd: { path: initrd.cpio }",
        )
        .replace(
            "  kernel: { source: kernel }",
            "  kernel: { source: kernel }\n  initrd: { source: initrd }",
        )
        .replace("fs: ext4", "fs: squashfs")
        .replace("root=PARTLABEL=root ro init=/init", "rdinit=/init");
    std::fs::write(&recipe, text).unwrap();
    let key = dir.path().join("k");
    run_ok(cairn().arg("keygen").arg(&key));
    let sign = [
        "--sign-key".to_string(),
        key.with_extension("key").display().to_string(),
    ];
    let out = dir.path().join("out");
    let report = build_json(&recipe, &out, &[&sign[0], &sign[1]]);
    assert_eq!(report["disk"]["root_fs"], "squashfs");
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("vm.lock")).unwrap()).unwrap();
    assert!(
        lock["tools"]["mksquashfs"]
            .as_str()
            .is_some_and(|v| v.starts_with("mksquashfs version")),
        "{lock}"
    );

    let cmdline = std::fs::read_to_string(out.join("vmtest.cmdline")).unwrap();
    let kernel = out.join("vmtest.vmlinuz");
    let initrd = out.join("vmtest.initrd");
    let firmware = Firmware::DirectWithInitrd {
        kernel: &kernel,
        cmdline: cmdline.trim(),
        initrd: &initrd,
    };
    let serial = boot(firmware, &out.join("vmtest.qcow2"), "qcow2");
    let expected = format!("CAIRN-MARKER {}  /etc/motd", sha256_hex(MOTD.as_bytes()));
    assert!(
        serial.lines().any(|l| l.starts_with(&expected)),
        "no `{expected}`; serial console:\n{serial}"
    );

    let verified = run_ok(
        cairn()
            .arg("verify")
            .arg(out.join("vmtest.raw"))
            .arg("--key")
            .arg(key.with_extension("pub")),
    );
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(
        text.ends_with("verified\n") && text.contains("ok   sbom"),
        "{text}"
    );
    let traced = run_ok(
        cairn()
            .arg("trace")
            .arg(out.join("vmtest.raw"))
            .arg("/init")
            .arg("--json"),
    );
    let traced: serde_json::Value = serde_json::from_slice(&traced.stdout).unwrap();
    assert_eq!(traced["matches"][0]["mode"], 0o755);
    assert_eq!(traced["matches"][0]["source"]["name"], "init");

    // Built again, later, under another umask, from sources with other mtimes.
    for name in ["busybox", "init"] {
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join(name))
            .unwrap();
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(99))
            .unwrap();
    }
    let again = dir.path().join("again");
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("umask 077 && exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_cairn"))
            .args(["build", "--locked", "--quiet"])
            .args(&sign)
            .arg(&recipe)
            .arg("-o")
            .arg(&again)
            .env_remove("SOURCE_DATE_EPOCH")
            .env("CAIRN_NO_CACHE", "1"),
    );
    for ext in ["raw", "qcow2", "disk.intoto.jsonl"] {
        let name = format!("vmtest.{ext}");
        assert!(
            std::fs::read(out.join(&name)).unwrap() == std::fs::read(again.join(&name)).unwrap(),
            "{name} differs between builds"
        );
    }
}

/// The vm recipe of [`write_vm_recipe`] with its kernel taken from the image: a
/// package of the test apt repository ships the real cloud kernel as
/// `/boot/vmlinuz-6.1.0-test`, and `vm.kernel` names `/boot/vmlinuz-*`.
fn write_kernel_package_recipe(dir: &Path, repo: &AptRepo) -> PathBuf {
    let recipe = write_vm_recipe(dir, &kernel(), "raw");
    let text = std::fs::read_to_string(&recipe)
        .unwrap()
        .replace("  kernel: { path: vmlinuz }\n", "")
        .replace("  kernel: { source: kernel }", "  kernel: { path: /boot/vmlinuz-* }")
        .replace(
            "sources:\n",
            &format!(
                "repositories:\n  test:\n    mirror: {}\n    suite: stable\n    components: [main]\n    keyring: {}\npackages: [linux-image-test]\nsources:\n",
                repo.url,
                repo.keyring.display()
            ),
        );
    std::fs::write(&recipe, text).unwrap();
    recipe
}

/// A fixture package `linux-image-test` holding `files`.
fn test_kernel_package(files: Vec<(String, Vec<u8>, u32)>) -> Pkg {
    Pkg {
        files,
        ..pkg("linux-image-test", "6.1-1", "")
    }
}

/// `vm.kernel: { path: /boot/vmlinuz-* }` takes the kernel a package of the image
/// ships: the disk boots it, the kernel beside the disk is that file, and the build
/// report, the signed provenance (`verify` checks the kernel against it) and `trace`
/// name the package it came from.
#[test]
fn a_kernel_from_a_package_of_the_image_boots_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let kernel_bytes = std::fs::read(kernel()).unwrap();
    let repo = AptRepo::new(
        &[test_kernel_package(vec![(
            "boot/vmlinuz-6.1.0-test".into(),
            kernel_bytes.clone(),
            0o644,
        )])],
        Faults::default(),
    );
    let recipe = write_kernel_package_recipe(dir.path(), &repo);
    let key = dir.path().join("ci");
    run_ok(cairn().arg("keygen").arg(&key));
    let out = dir.path().join("out");
    let mut cmd = cairn();
    cmd.env("XDG_CACHE_HOME", dir.path().join("cache"));
    let report = build_json_with(
        cmd,
        &recipe,
        &out,
        &["--sign-key", key.with_extension("key").to_str().unwrap()],
    );
    assert_eq!(
        report["disk"]["kernel_in_image"],
        serde_json::json!({"path": "/boot/vmlinuz-6.1.0-test", "from": "deb:linux-image-test"})
    );
    let beside = out.join("vmtest.vmlinuz");
    assert!(std::fs::read(&beside).unwrap() == kernel_bytes);

    let jsonl = std::fs::read_to_string(out.join("vmtest.disk.intoto.jsonl")).unwrap();
    let envelope: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    use base64::Engine;
    let statement: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(envelope["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        statement["predicate"]["buildDefinition"]["internalParameters"]["vm"]["kernel"],
        serde_json::json!({
            "image_path": "/boot/vmlinuz-6.1.0-test",
            "source": "deb:linux-image-test",
            "sha256": sha256_hex(&kernel_bytes),
        })
    );

    let raw = out.join("vmtest.raw");
    let serial = boot(
        Firmware::Direct {
            kernel: &beside,
            cmdline: "console=ttyS0 root=PARTLABEL=root ro init=/init panic=-1",
        },
        &raw,
        "raw",
    );
    assert!(
        serial.lines().any(|l| l.starts_with("CAIRN-MARKER ")),
        "/init printed no marker; serial console:\n{serial}"
    );
    let verified = run_ok(
        cairn()
            .arg("verify")
            .arg(&raw)
            .arg("--key")
            .arg(key.with_extension("pub")),
    );
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(
        text.contains("ok   boot") && text.ends_with("verified\n"),
        "{text}"
    );
    let traced = run_ok(
        cairn()
            .arg("trace")
            .arg(&raw)
            .arg("/boot/vmlinuz-6.1.0-test")
            .arg("--json"),
    );
    let traced: serde_json::Value = serde_json::from_slice(&traced.stdout).unwrap();
    assert_eq!(
        traced["matches"][0]["source"]["name"], "deb:linux-image-test",
        "{traced}"
    );
    assert_eq!(
        traced["matches"][0]["sha256"],
        format!("sha256:{}", sha256_hex(&kernel_bytes))
    );
}

/// A kernel or initrd path of the image must match exactly one regular file: none,
/// two, a symbolic link and a file that is no bzImage are each an error naming what
/// was found, located at the recipe's `kernel`/`initrd`.
#[test]
fn a_kernel_path_of_the_image_must_name_one_bzimage() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-vmlinuz");
    fake_bzimage(&fake);
    let fake = std::fs::read(&fake).unwrap();
    let repo = AptRepo::new(
        &[test_kernel_package(vec![
            ("boot/vmlinuz-6.1.0-a".into(), fake.clone(), 0o644),
            ("boot/vmlinuz-6.1.0-b".into(), fake, 0o644),
            ("boot/notes.txt".into(), b"not a kernel\n".to_vec(), 0o644),
            ("vmlinuz".into(), b"boot/vmlinuz-6.1.0-a".to_vec(), SYMLINK),
        ])],
        Faults::default(),
    );
    let recipe = write_kernel_package_recipe(dir.path(), &repo);
    let text = std::fs::read_to_string(&recipe).unwrap();
    let refused = |from: &str, to: &str| {
        std::fs::write(&recipe, text.replace(from, to)).unwrap();
        let (code, stderr) = run_err(
            cairn()
                .env("XDG_CACHE_HOME", dir.path().join("cache"))
                .arg("build")
                .arg(&recipe)
                .arg("-o")
                .arg(dir.path().join("out")),
        );
        assert_eq!(code, 1, "{stderr}");
        stderr
    };
    let kernel_line = text
        .lines()
        .position(|l| l.starts_with("  kernel: { path: /boot"))
        .unwrap()
        + 1;
    let at_kernel = format!("vm.yaml:{kernel_line}:");

    let stderr = refused("", "");
    assert!(
        stderr.contains("2 files of the image match the kernel path `/boot/vmlinuz-*`: /boot/vmlinuz-6.1.0-a, /boot/vmlinuz-6.1.0-b")
            && stderr.contains(&at_kernel),
        "{stderr}"
    );
    let stderr = refused("/boot/vmlinuz-*", "/boot/vmlinuz-7*");
    assert!(
        stderr.contains("no file of the image matches the kernel path `/boot/vmlinuz-7*`")
            && stderr.contains("linux-image-cloud-amd64"),
        "{stderr}"
    );
    let stderr = refused("/boot/vmlinuz-*", "/vmlinu?");
    assert!(
        stderr.contains("matches /vmlinuz, a symbolic link to boot/vmlinuz-6.1.0-a"),
        "{stderr}"
    );
    let stderr = refused("/boot/vmlinuz-*", "/boot/notes.*");
    assert!(
        stderr.contains(
            "the kernel (/boot/notes.txt in the image) is not a bzImage: it is only 13 bytes long"
        ),
        "{stderr}"
    );
    let stderr = refused(
        "  kernel: { path: /boot/vmlinuz-* }",
        "  kernel: { path: /boot/vmlinuz-*-a }\n  initrd: { path: /boot/initrd.img-* }",
    );
    assert!(
        stderr.contains("no file of the image matches the initrd path `/boot/initrd.img-*`"),
        "{stderr}"
    );
}
