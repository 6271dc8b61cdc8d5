//! `cargo xtask bench-debian`: how long `recipes/distroless.yaml` (busybox-static and
//! ca-certificates from the host's Debian mirror) takes to build with the release
//! binary: once with an empty package cache, then resolving with a warm cache, then
//! (the number that matters) from the lock with a warm cache, median of 5. The recipe
//! is copied to `target/bench-debian/` with its own cache there, so the user's cache and
//! the repository stay untouched.

use crate::{cargo, measure, repo_root, run_checked, target_dir};
use anyhow::{bail, Result};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

pub fn run() -> Result<ExitCode> {
    run_checked(cargo().args(["build", "--release", "-p", "cairn"]))?;
    let cairn = target_dir().join("release/cairn");
    let dir = target_dir().join("bench-debian");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let recipe = dir.join("distroless.yaml");
    std::fs::copy(repo_root().join("recipes/distroless.yaml"), &recipe)?;
    let lock = recipe.with_extension("lock");
    let build = |what: &str| -> Result<Duration> {
        let m = measure::run(
            Command::new(&cairn)
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .arg("build")
                .arg(&recipe)
                .arg("-o")
                .arg(dir.join("out"))
                .arg("-q"),
        )?;
        if !m.status.success() {
            bail!(
                "{what}: cairn build failed:\n{}",
                String::from_utf8_lossy(&m.stderr)
            );
        }
        Ok(m.wall)
    };
    let cold = build("cold cache")?;
    remove(&lock)?;
    let resolve = build("resolve, warm cache")?;
    let mut warm: Vec<Duration> = (0..5)
        .map(|_| build("from the lock, warm cache"))
        .collect::<Result<_>>()?;
    warm.sort();
    println!("distroless (busybox-static + ca-certificates), release build:");
    println!(
        "  empty cache, resolve + download:  {:.2} s",
        cold.as_secs_f64()
    );
    println!(
        "  warm cache, resolve:              {:.2} s",
        resolve.as_secs_f64()
    );
    println!(
        "  warm cache, from the lock:        {:.2} s (median of 5; target < 2 s)",
        warm[2].as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}
