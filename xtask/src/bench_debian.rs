//! `cargo xtask bench-debian`: how long images of Debian packages from the host's
//! mirror take to build with the release binary. Three recipes: `recipes/distroless.yaml`
//! (busybox-static, ca-certificates, mawk), python3 + ca-certificates (the same
//! repositories, no layers of its own) and `recipes/debian-vm.yaml` (129 packages and
//! their raw and qcow2 disks). Each is built once with an empty package cache, then
//! resolving with a warm cache, then (the number that matters) from the lock with a
//! warm package cache and every layer written (`--no-cache`), and last unchanged with
//! the layer cache (an image is replayed; a disk is not yet), medians of 5 (3 for the
//! VM). Each recipe is copied to `target/bench-debian/` with its own cache there, so the
//! user's cache and the repository stay untouched.

use crate::{cargo, measure, repo_root, run_checked, target_dir};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

pub fn run() -> Result<ExitCode> {
    run_checked(cargo().args(["build", "--release", "-p", "cairn"]))?;
    let cairn = target_dir().join("release/cairn");
    let dir = target_dir().join("bench-debian");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let distroless = std::fs::read_to_string(repo_root().join("recipes/distroless.yaml"))?;
    let python = python_recipe(&distroless)?;
    let vm = std::fs::read_to_string(repo_root().join("recipes/debian-vm.yaml"))?;
    for (name, text, target, runs) in [
        ("distroless", distroless.as_str(), "2 s", 5),
        ("python-tls", python.as_str(), "3 s", 5),
        ("debian-vm", vm.as_str(), "30 s", 3),
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
            "  unchanged, with the layer cache:          {:.2} s (median of {runs})",
            times.with_layer_cache.as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
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
    let with_layer_cache = median("with the layer cache", &["--locked"])?;
    Ok(Times {
        cold,
        resolve,
        from_lock,
        with_layer_cache,
    })
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}
