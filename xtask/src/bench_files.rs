//! `cargo xtask bench --files N[,N...]`: the file-count section of the bench. For each N it
//! builds an image from N small files, once from a directory source and once from a
//! `.tar.gz` archive source holding the same files, and reports wall time, CPU time, peak
//! RSS, and RSS and time per file. With several counts it ends with the cost per file at
//! each count: flat columns mean memory and time grow linearly with the file count.
//!
//! The files (`tree/dNNNN/fNNN`, 1,000 per directory, each `file <i>\n`) and the archive
//! are generated once under `target/bench-files/files-N/` and reused while their stamp
//! matches; a million files take about 4 GB of disk (one block each), so delete
//! `target/bench-files/` when done. The target for a directory source of 1,000,000 files
//! is a peak RSS under 256 MB (250,000 KiB as `ru_maxrss` and `/usr/bin/time -v` count);
//! it is reported, not enforced.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bench_tree::MIB;
use crate::measure::{self, Measured};

const FILES_PER_DIR: u64 = 1000;
const GENERATOR_VERSION: u32 = 1;
const STAMP_FILE: &str = "stamp";
const TREE_DIR: &str = "tree";
const ARCHIVE: &str = "tree.tar.gz";
/// The peak RSS a directory source of [`TARGET_FILES`] files should build under: 256 MB.
const RSS_TARGET_BYTES: u64 = 256_000_000;
const TARGET_FILES: u64 = 1_000_000;

/// The two ways the files reach the image: a directory source and an archive source.
const SOURCES: [(&str, &str); 2] = [
    ("dir", "files: { path: tree/ }"),
    ("archive", "files: { archive: tree.tar.gz }"),
];

fn recipe(kind: &str, source: &str) -> String {
    let op = if kind == "dir" { "copy" } else { "extract" };
    // A million files and their thousand directories are more entries than an archive
    // may hold by default.
    format!(
        "cairn: 1\nname: files\nepoch: 0\ncompression: gzip\nlimits: {{ entries: 2000000 }}\n\
         sources:\n  {source}\n\
         layers:\n  - name: files\n    contents:\n      - {op}: files\n        to: /data\n"
    )
}

/// One measured build of N files from one kind of source.
struct FileRow {
    kind: &'static str,
    files: u64,
    measured: Measured,
}

impl FileRow {
    fn rss_per_file(&self) -> f64 {
        self.measured.peak_rss_bytes as f64 / self.files as f64
    }

    fn micros_per_file(&self, time: Duration) -> f64 {
        time.as_secs_f64() * 1e6 / self.files as f64
    }
}

/// Runs the section for every count in `counts` with the release binary `cairn`.
pub fn run(cairn: &Path, counts: &[u64], keep: bool) -> Result<()> {
    let root = crate::target_dir().join("bench-files");
    let mut rows = Vec::new();
    for &files in counts {
        let dir = ensure(&root.join(format!("files-{files}")), files)?;
        for (kind, source) in SOURCES {
            fs::write(dir.join(format!("{kind}.yaml")), recipe(kind, source))?;
            let out = root.join(format!("out-{files}-{kind}"));
            let measured = build(cairn, &dir, kind, &out)?;
            if !keep {
                fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
            }
            let row = FileRow {
                kind,
                files,
                measured,
            };
            println!(
                "xtask: cairn {kind} source, {files} files: {:.2} s wall, {:.2} s CPU, {} MiB peak RSS",
                row.measured.wall.as_secs_f64(),
                row.measured.cpu.as_secs_f64(),
                row.measured.peak_rss_bytes / MIB
            );
            rows.push(row);
        }
    }
    print_table(&rows);
    for row in rows
        .iter()
        .filter(|r| r.kind == "dir" && r.files == TARGET_FILES)
    {
        let peak = row.measured.peak_rss_bytes;
        println!(
            "cairn dir source, {TARGET_FILES} files: peak RSS {} KiB, {:.1} us of CPU a file \
             (target < {} KiB: {})",
            peak / 1024,
            row.micros_per_file(row.measured.cpu),
            RSS_TARGET_BYTES / 1024,
            if peak < RSS_TARGET_BYTES {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    if keep {
        println!("xtask: kept cairn's layouts in {}", root.display());
    }
    println!(
        "xtask: the generated files stay in {} for the next run; delete it to free the disk",
        root.display()
    );
    Ok(())
}

/// One `cairn build KIND.yaml --no-cache` into an empty `out`.
fn build(cairn: &Path, dir: &Path, kind: &str, out: &Path) -> Result<Measured> {
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    let mut command = Command::new(cairn);
    command
        .current_dir(dir)
        .arg("build")
        .arg(format!("{kind}.yaml"))
        .arg("-o")
        .arg(out)
        .args(["--quiet", "--no-cache"]);
    let measured = measure::run(&mut command)?;
    if !measured.status.success() {
        bail!(
            "{command:?} exited with {}:\n{}",
            measured.status,
            String::from_utf8_lossy(&measured.stderr).trim_end()
        );
    }
    Ok(measured)
}

fn print_table(rows: &[FileRow]) {
    println!();
    println!(
        "| {:<7} | {:>9} | {:>8} | {:>7} | {:>9} | {:>10} | {:>10} | {:>10} |",
        "source", "files", "wall s", "CPU s", "RSS KiB", "RSS B/file", "wall us/f", "CPU us/f"
    );
    println!(
        "|{:-<9}|{:->11}|{:->10}|{:->9}|{:->11}|{:->12}|{:->12}|{:->12}|",
        "", "", "", "", "", "", "", ""
    );
    for row in rows {
        println!(
            "| {:<7} | {:>9} | {:>8.2} | {:>7.2} | {:>9} | {:>10.0} | {:>10.1} | {:>10.1} |",
            row.kind,
            row.files,
            row.measured.wall.as_secs_f64(),
            row.measured.cpu.as_secs_f64(),
            row.measured.peak_rss_bytes / 1024,
            row.rss_per_file(),
            row.micros_per_file(row.measured.wall),
            row.micros_per_file(row.measured.cpu),
        );
    }
    println!(
        "(one run each, --no-cache, gzip; per-file columns flat across counts = linear growth; \
         RSS per file includes the fixed cost of the process)"
    );
    println!();
}

/// Makes sure `dir` holds `files` generated files and their archive, regenerating both
/// unless the stamp matches. Generation happens in a sibling `.partial` directory that is
/// renamed into place, so an interrupted run never leaves a half tree behind a stamp.
fn ensure(dir: &Path, files: u64) -> Result<PathBuf> {
    if files == 0 {
        bail!("--files takes counts above 0");
    }
    let stamp = stamp(files);
    if fs::read_to_string(dir.join(STAMP_FILE)).is_ok_and(|s| s == stamp) {
        println!("xtask: reusing {files} files in {}", dir.display());
        return Ok(dir.to_path_buf());
    }
    let partial = dir.with_extension("partial");
    for old in [dir, partial.as_path()] {
        if old.exists() {
            fs::remove_dir_all(old).with_context(|| format!("removing {}", old.display()))?;
        }
    }
    println!("xtask: generating {files} files in {}", dir.display());
    generate(&partial.join(TREE_DIR), files)?;
    let tar = format!(
        "set -o pipefail; tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
         -cf - {TREE_DIR} | gzip -n -1 > {ARCHIVE}"
    );
    crate::run_checked(
        Command::new("bash")
            .args(["-c", &tar])
            .current_dir(&partial),
    )?;
    fs::write(partial.join(STAMP_FILE), stamp)?;
    fs::rename(&partial, dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    Ok(dir.to_path_buf())
}

fn stamp(files: u64) -> String {
    format!("cairn-bench-files v{GENERATOR_VERSION} files={files} per_dir={FILES_PER_DIR}\n")
}

/// Writes `files` files below `root`: `dNNNN/fNNN`, each holding `file <i>\n`.
fn generate(root: &Path, files: u64) -> Result<()> {
    for i in 0..files {
        let (d, f) = (i / FILES_PER_DIR, i % FILES_PER_DIR);
        let dir = root.join(format!("d{d:04}"));
        if f == 0 {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let path = dir.join(format!("f{f:03}"));
        fs::write(&path, format!("file {i}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_are_spread_over_directories_of_a_thousand() {
        let root = std::env::temp_dir().join(format!("xtask-bench-files-{}", std::process::id()));
        generate(&root, 2001).expect("generate");
        let count = |d: &str| fs::read_dir(root.join(d)).map_or(0, |r| r.count());
        assert_eq!(
            (count("d0000"), count("d0001"), count("d0002")),
            (1000, 1000, 1)
        );
        assert_eq!(
            fs::read_to_string(root.join("d0002/f000")).expect("last file"),
            "file 2000\n"
        );
        fs::remove_dir_all(&root).expect("remove the generated files");
    }

    #[test]
    fn both_recipes_put_the_files_below_data() {
        for (kind, source) in SOURCES {
            let text = recipe(kind, source);
            assert!(
                text.contains(source) && text.contains("to: /data"),
                "{text}"
            );
        }
        assert!(recipe("archive", SOURCES[1].1).contains("- extract: files"));
        assert!(recipe("dir", SOURCES[0].1).contains("- copy: files"));
    }
}
