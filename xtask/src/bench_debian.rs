//! `cargo xtask bench-debian`: how long images of Debian packages from the host's
//! mirror take to build with the release binary. Four recipes:
//! `recipes/distroless.yaml` (busybox-static, ca-certificates, mawk), python3 +
//! ca-certificates (the same repositories, no layers of its own),
//! `recipes/debian-vm.yaml` (129 packages and their raw and qcow2 disks) and
//! `recipes/immutable-vm.yaml` (its verity disk, with the initrd made from the image's
//! files in the signed unified kernel image). Each is built once with an empty package
//! cache, then resolving with a warm cache, then (the number that matters) from the
//! lock with a warm package cache and every layer written (`--no-cache`), and last
//! unchanged with the layer cache (the image replayed, and the VM's disks with it:
//! checked, and the ratio to the build from the lock printed), medians of 5 (3 for the
//! VMs). Each recipe is copied to `target/bench-debian/` with its own cache there, so
//! the user's cache and the repository stay untouched. Last, the Debian VM's qcow2 disk
//! is booted under QEMU (TCG) with user-mode networking, timed until systemd reaches
//! `multi-user.target` and until `ssh root@127.0.0.1 cat /etc/os-release` answers (the
//! recipe gets a key made for the run); the immutable VM's boot is timed by its mirror
//! test (`tools::debian_mirror`), which enrolls the test certificate in OVMF.

use crate::{cargo, measure, repo_root, run_checked, target_dir};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

// Shared with the VM tests, which use the parts the bench does not.
#[allow(dead_code)]
#[path = "../../tests/it/common/qemu.rs"]
mod qemu;

/// How long the VM may take from QEMU's start to answering over SSH.
const SSH_DEADLINE: Duration = Duration::from_secs(300);

pub fn run() -> Result<ExitCode> {
    run_checked(cargo().args(["build", "--release", "-p", "cairn"]))?;
    let cairn = target_dir().join("release/cairn");
    let dir = target_dir().join("bench-debian");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let distroless = std::fs::read_to_string(repo_root().join("recipes/distroless.yaml"))?;
    let python = python_recipe(&distroless)?;
    let ssh_key = dir.join("id_ed25519");
    let vm = vm_recipe(&ssh_key)?;
    let immutable = immutable_recipe(&dir.join("immutable-vm"))?;
    for (name, text, target, runs) in [
        ("distroless", distroless.as_str(), "2 s", 5),
        ("python-tls", python.as_str(), "3 s", 5),
        ("debian-vm", vm.as_str(), "30 s", 3),
        ("immutable-vm", immutable.as_str(), "20 s", 3),
    ] {
        let times = bench_recipe(&cairn, &dir.join(name), name, text, runs)?;
        println!("{name}, release build:");
        println!(
            "  empty cache, resolve + download:          {:.2} s",
            times.cold.as_secs_f64()
        );
        println!(
            "  warm cache, resolve:                      {:.2} s",
            times.resolve.as_secs_f64()
        );
        println!(
            "  warm package cache, from the lock:        {:.2} s (median of {runs}, every layer written; target < {target})",
            times.from_lock.as_secs_f64()
        );
        println!(
            "  unchanged, with the layer cache:          {:.2} s (median of {runs}; {:.3} of the build from the lock)",
            times.with_layer_cache.as_secs_f64(),
            times.with_layer_cache.as_secs_f64() / times.from_lock.as_secs_f64()
        );
    }
    let (multi_user, ssh) = boot_to_ssh(&dir.join("debian-vm/out"), &ssh_key)?;
    println!("debian-vm, qcow2 under qemu-system-x86_64 -accel tcg (user-mode networking):");
    println!(
        "  QEMU start to multi-user.target:          {:.1} s",
        multi_user.as_secs_f64()
    );
    println!(
        "  QEMU start to an SSH answer:              {:.1} s (ssh root@127.0.0.1 cat /etc/os-release)",
        ssh.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `recipes/debian-vm.yaml` with root's key replaced by a new one at `key`.
fn vm_recipe(key: &Path) -> Result<String> {
    run_checked(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "cairn-bench", "-f"])
            .arg(key),
    )?;
    let public = std::fs::read_to_string(key.with_extension("pub"))?;
    let text = std::fs::read_to_string(repo_root().join("recipes/debian-vm.yaml"))?;
    let placeholder = "ssh-ed25519 REPLACE-WITH-YOUR-PUBLIC-KEY you@example";
    if !text.contains(placeholder) {
        bail!("recipes/debian-vm.yaml no longer has root's key placeholder `{placeholder}`");
    }
    Ok(text.replace(placeholder, public.trim()))
}

/// `recipes/immutable-vm.yaml`, with the files it names relative to itself (the
/// initrd's init, the Secure Boot test pair) copied into `dir`.
fn immutable_recipe(dir: &Path) -> Result<String> {
    for file in [
        "initrd/verity-init",
        "keys/secure-boot-test.key",
        "keys/secure-boot-test.crt",
    ] {
        let to = dir.join(file);
        std::fs::create_dir_all(to.parent().unwrap())?;
        std::fs::copy(repo_root().join("recipes").join(file), &to)
            .with_context(|| format!("copying recipes/{file}"))?;
    }
    Ok(std::fs::read_to_string(
        repo_root().join("recipes/immutable-vm.yaml"),
    )?)
}

/// Boots the VM disk in `out` under TCG: the times from QEMU's start to
/// `multi-user.target` and to an SSH answer.
fn boot_to_ssh(out: &Path, key: &Path) -> Result<(Duration, Duration)> {
    let cmdline = std::fs::read_to_string(out.join("debian-vm.cmdline"))?;
    let vm = qemu::SshVm::start(
        &qemu::VmDisk {
            kernel: &out.join("debian-vm.vmlinuz"),
            cmdline: cmdline.trim(),
            qcow2: &out.join("debian-vm.qcow2"),
        },
        key,
        &out.with_file_name("serial.log"),
    )
    .context("starting qemu-system-x86_64")?;
    let multi_user = vm
        .wait_for_console("Reached target multi-user.target", SSH_DEADLINE)
        .map_err(|e| anyhow!(e))?;
    let (os_release, ssh) = vm
        .wait_for_ssh("cat /etc/os-release", SSH_DEADLINE)
        .map_err(|e| anyhow!(e))?;
    if !os_release.contains("Debian GNU/Linux") {
        bail!("the VM answered over SSH with another /etc/os-release:\n{os_release}");
    }
    Ok((multi_user, ssh))
}

struct Times {
    cold: Duration,
    resolve: Duration,
    from_lock: Duration,
    with_layer_cache: Duration,
}

/// A python3 + ca-certificates recipe with distroless's repositories.
fn python_recipe(distroless: &str) -> Result<String> {
    let start = distroless
        .find("\nrepositories:")
        .context("recipes/distroless.yaml has no `repositories:`")?
        + 1;
    let end = distroless
        .find("\npackages:")
        .context("recipes/distroless.yaml has no `packages:`")?
        + 1;
    Ok(format!(
        "cairn: 1\nname: python-tls\nepoch: 1700000000\nplatform: linux/amd64\n{}packages: [python3, ca-certificates]\nconfig:\n  entrypoint: [/usr/bin/python3]\n",
        &distroless[start..end]
    ))
}

fn bench_recipe(cairn: &Path, dir: &Path, name: &str, text: &str, runs: usize) -> Result<Times> {
    std::fs::create_dir_all(dir)?;
    let recipe: PathBuf = dir.join(format!("{name}.yaml"));
    std::fs::write(&recipe, text)?;
    let build = |what: &str, extra: &[&str]| -> Result<Duration> {
        let m = measure::run(
            Command::new(cairn)
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .arg("build")
                .arg(&recipe)
                .arg("-o")
                .arg(dir.join("out"))
                .arg("-q")
                .args(extra),
        )?;
        if !m.status.success() {
            bail!(
                "{name}, {what}: cairn build failed:\n{}",
                String::from_utf8_lossy(&m.stderr)
            );
        }
        Ok(m.wall)
    };
    let median = |what: &str, extra: &[&str]| -> Result<Duration> {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| build(what, extra))
            .collect::<Result<_>>()?;
        times.sort();
        Ok(times[runs / 2])
    };
    let cold = build("cold cache", &[])?;
    remove(&recipe.with_extension("lock"))?;
    let resolve = build("resolve, warm cache", &[])?;
    let from_lock = median("from the lock", &["--locked", "--no-cache"])?;
    // Once to fill the layer cache, then unchanged.
    build("filling the layer cache", &["--locked"])?;
    let with_layer_cache = median("with the layer cache", &["--locked"])?;
    check_replayed(cairn, dir, &recipe, name)?;
    Ok(Times {
        cold,
        resolve,
        from_lock,
        with_layer_cache,
    })
}

/// Fails unless an unchanged rebuild of `recipe` replays its image (and its disks).
fn check_replayed(cairn: &Path, dir: &Path, recipe: &Path, name: &str) -> Result<()> {
    let output = Command::new(cairn)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .arg("build")
        .arg(recipe)
        .arg("-o")
        .arg(dir.join("out"))
        .args(["--locked", "--json"])
        .output()?;
    if !output.status.success() {
        bail!(
            "{name}, unchanged: cairn build failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let disk_replayed = report["disk"].is_null() || report["disk"]["cached"] == true;
    if report["image_cached"] != true || !disk_replayed {
        bail!(
            "{name}: an unchanged rebuild was not replayed from the layer cache; warnings: {}",
            report["warnings"]
        );
    }
    Ok(())
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}
