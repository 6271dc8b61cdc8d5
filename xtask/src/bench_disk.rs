//! `cargo xtask bench-disk`: the disk stage against `mke2fs -d` of the same tree, in
//! the same run. The tree is the 300 MiB bench tree (`bench_tree.rs`); cairn builds it
//! into one layer and a raw disk with an ext4 root of 512 MiB (release build, the
//! stage's own `timing: disk` line from `--timings`), and `mke2fs -d` writes the same
//! directory into a fresh 512 MiB file. Medians of 3; the ratio is what counts.

use crate::{bench_tree, cargo, measure, run_checked, target_dir};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

const TREE_MIB: u64 = 300;
const ROOT_MIB: u64 = 512;
const RUNS: usize = 3;

pub fn run() -> Result<ExitCode> {
    run_checked(cargo().args(["build", "--release", "-p", "cairn"]))?;
    let cairn = target_dir().join("release/cairn");
    let dir = target_dir().join("bench-disk");
    let tree = bench_tree::ensure(&dir.join(format!("tree-{TREE_MIB}mib")), TREE_MIB)?;
    println!(
        "xtask: bench tree {} ({} entries, {:.1} MiB){}",
        tree.root.display(),
        tree.entries,
        tree.bytes as f64 / bench_tree::MIB as f64,
        if tree.reused { ", reused" } else { "" }
    );
    // A stand-in kernel: the disk stage only checks the bzImage signature.
    let mut kernel = vec![0u8; 4096];
    kernel[0x202..0x206].copy_from_slice(b"HdrS");
    fs::write(dir.join("bzimage"), kernel)?;
    let recipe = dir.join("bench-disk.yaml");
    // Sources are relative to the recipe (cairn refuses absolute ones).
    let tree_path = tree
        .root
        .strip_prefix(&dir)
        .context("the bench tree lies under the bench directory")?;
    fs::write(
        &recipe,
        format!(
            "cairn: 1\nname: bench-disk\nepoch: 0\n\
             sources:\n  tree: {{ path: {}/ }}\n  kernel: {{ path: bzimage }}\n\
             layers:\n  - name: tree\n    contents:\n      - copy: tree\n        to: /data\n\
             vm:\n  kernel: {{ source: kernel }}\n  cmdline: \"root=PARTLABEL=root\"\n  \
             root: {{ fs: ext4, size: {ROOT_MIB}M }}\n  formats: [raw]\n",
            tree_path.display()
        ),
    )?;

    let mut cairn_times = Vec::new();
    let mut mke2fs_times = Vec::new();
    for _ in 0..RUNS {
        cairn_times.push(disk_stage(&cairn, &recipe, &dir.join("out"))?);
        mke2fs_times.push(mke2fs(&tree.root, &dir.join("mke2fs.img"))?);
    }
    let (cairn, mke2fs) = (median(cairn_times), median(mke2fs_times));
    println!("disk stage, {ROOT_MIB} MiB ext4 root, release build, medians of {RUNS}:");
    println!(
        "  cairn disk stage (ext4 + raw disk): {:.2} s",
        cairn.as_secs_f64()
    );
    println!(
        "  mke2fs -d of the same tree:         {:.2} s",
        mke2fs.as_secs_f64()
    );
    println!(
        "  ratio:                              {:.2}x (target <= 2x)",
        cairn.as_secs_f64() / mke2fs.as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// One build; the seconds of its `timing: disk` line.
fn disk_stage(cairn: &Path, recipe: &Path, out: &Path) -> Result<Duration> {
    let _ = fs::remove_dir_all(out);
    let measured = measure::run(
        Command::new(cairn)
            .arg("build")
            .arg(recipe)
            .arg("-o")
            .arg(out)
            // Written every time: an unchanged recipe would replay its disk.
            .args(["--quiet", "--timings", "--no-cache"]),
    )?;
    let stderr = String::from_utf8_lossy(&measured.stderr);
    if !measured.status.success() {
        bail!("cairn build exited with {}:\n{stderr}", measured.status);
    }
    let seconds = stderr
        .lines()
        .find_map(|l| l.strip_prefix("timing: disk "))
        .and_then(|s| s.trim().parse::<f64>().ok())
        .with_context(|| format!("no `timing: disk` line from cairn:\n{stderr}"))?;
    Ok(Duration::from_secs_f64(seconds))
}

/// One `mke2fs -d` of `tree` into a fresh file of the root's size.
fn mke2fs(tree: &Path, image: &Path) -> Result<Duration> {
    let _ = fs::remove_file(image);
    fs::File::create(image)?.set_len(ROOT_MIB << 20)?;
    let measured = measure::run(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-d"])
            .arg(tree)
            .arg(image),
    )?;
    if !measured.status.success() {
        bail!(
            "mke2fs -d exited with {}: {}",
            measured.status,
            String::from_utf8_lossy(&measured.stderr)
        );
    }
    Ok(measured.wall)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
