//! `cargo xtask bench [--size-mb N] [--keep]`: times `cairn build` against the
//! `tar | gzip` baseline on the same generated tree (see `bench_tree.rs`).
//!
//! Every contender runs `RUNS` times in one invocation; the table shows the median wall
//! time and the largest peak RSS. It also checks that `--jobs 1` and the default thread
//! count give the same manifest digest (principle 1). It fails if any run fails or the
//! digests differ; the speed and memory targets are reported, not enforced.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bench_tree::{self, MIB, TREE_DIR};
use crate::measure::{self, Measured};

const RUNS: usize = 3;
const DEFAULT_SIZE_MIB: u64 = 300;
const RATIO_TARGET: f64 = 0.50;
const RSS_TARGET_MIB: u64 = 100;
const RECIPE_FILE: &str = "bench.yaml";
const TAR: &str = "tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf -";

/// The recipe the contract in the brief describes; `path` is relative to the recipe.
const RECIPE: &str = "\
cairn: 1
name: bench
epoch: 0
sources:
  tree: { path: tree/ }
layers:
  - name: tree
    contents:
      - copy: tree
        to: /data
";

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub size_mib: u64,
    /// Leave cairn's output layouts in place for inspection.
    pub keep: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut options = Options {
            size_mib: DEFAULT_SIZE_MIB,
            keep: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let size = match arg.as_str() {
                "--keep" => {
                    options.keep = true;
                    continue;
                }
                "--size-mb" => args.next().context("--size-mb needs a number of MiB")?,
                other => match other.strip_prefix("--size-mb=") {
                    Some(size) => size,
                    None => bail!(
                        "unknown bench option `{other}`; \
                         usage: cargo xtask bench [--size-mb N] [--keep]"
                    ),
                },
            };
            options.size_mib = match size.parse() {
                Ok(n) if n > 0 => n,
                _ => bail!("--size-mb takes a whole number of MiB above 0, got `{size}`"),
            };
        }
        Ok(options)
    }
}

pub fn run(options: &Options) -> Result<ExitCode> {
    let bench_root = crate::target_dir().join("bench");
    let bench_dir = bench_root.join(format!("tree-{}mib", options.size_mib));
    let out_root = bench_root.join(format!("out-{}mib", options.size_mib));

    let started = Instant::now();
    let tree = bench_tree::ensure(&bench_dir, options.size_mib)?;
    println!(
        "xtask: bench tree {} ({} entries, {:.1} MiB): {}",
        tree.root.display(),
        tree.entries,
        mib(tree.bytes),
        if tree.reused {
            "reused".to_string()
        } else {
            format!("generated in {:.1} s", started.elapsed().as_secs_f64())
        }
    );

    println!("xtask: cargo build --release -p cairn");
    crate::run_checked(crate::cargo().args(["build", "--release", "-p", "cairn"]))?;
    let cairn = crate::target_dir().join("release").join("cairn");
    fs::write(bench_dir.join(RECIPE_FILE), RECIPE)?;

    // Untimed: brings the tree into the page cache so run 1 is not the odd one out.
    let warm = run_pipeline(&bench_dir, &format!("{TAR} {TREE_DIR} | wc -c"))?;
    let tar_bytes: u64 = String::from_utf8_lossy(&warm.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    println!(
        "xtask: tar stream {:.1} MiB; {RUNS} runs each",
        mib(tar_bytes)
    );

    let mut rows = Vec::new();
    for (name, compressor) in [
        ("tar | gzip -n -6 (baseline)", "gzip -n -6"),
        ("tar | pigz -p2 -n -6", "pigz -p2 -n -6"),
    ] {
        let pipeline = format!("{TAR} {TREE_DIR} | {compressor} | sha256sum");
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            runs.push(run_pipeline(&bench_dir, &pipeline)?);
        }
        let row = Row::new(name, &runs);
        println!("xtask: {name}: {:.2} s", row.wall.as_secs_f64());
        rows.push(row);
    }

    // The default run signs, so its time includes SBOMs and attestations.
    let key = bench_dir.join("bench.key");
    if !key.exists() {
        crate::run_checked(
            Command::new(&cairn)
                .arg("keygen")
                .arg(bench_dir.join("bench")),
        )?;
    }
    let mut digests = Vec::new();
    let mut last_build = None;
    let mut attest_shares = Vec::new();
    for (name, jobs) in [
        ("cairn build --sign-key", None),
        ("cairn build --jobs 1", Some("1")),
    ] {
        let out_dir = out_root.join(if jobs.is_some() { "jobs1" } else { "default" });
        let sign_key = jobs.is_none().then_some(key.as_path());
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            let built = match run_cairn(&cairn, &bench_dir, &out_dir, jobs, sign_key) {
                Ok(built) => built,
                Err(err) => {
                    print_table(&rows, tree.bytes);
                    return Err(err.context(format!("{name} failed")));
                }
            };
            digests.push((name, built.manifest_digest.clone()));
            if sign_key.is_some() {
                attest_shares.push(attest_share(&built.measured.stderr));
            }
            runs.push(built.measured);
            last_build = Some(built.json);
        }
        let row = Row::new(name, &runs);
        println!("xtask: {name}: {:.2} s", row.wall.as_secs_f64());
        rows.push(row);
    }

    print_table(&rows, tree.bytes);
    if let Some(json) = &last_build {
        print_layers(json);
    }
    let baseline = &rows[0];
    let cairn_row = &rows[2];
    println!(
        "cairn/baseline ratio: {:.2} (target <= {RATIO_TARGET:.2})",
        cairn_row.wall.as_secs_f64() / baseline.wall.as_secs_f64()
    );
    println!(
        "cairn peak RSS: {} MB (target < {RSS_TARGET_MIB})",
        cairn_row.peak_rss_bytes / MIB
    );
    attest_shares.sort_by(f64::total_cmp);
    if let Some(share) = attest_shares.get(attest_shares.len() / 2) {
        println!(
            "SBOM + attestation share of the signed cairn build: {:.1}% (target <= 10%)",
            share * 100.0
        );
    }

    if options.keep {
        println!("xtask: kept cairn's layouts in {}", out_root.display());
    } else {
        fs::remove_dir_all(&out_root)
            .with_context(|| format!("removing {}", out_root.display()))?;
    }

    let first = &digests[0].1;
    if digests.iter().all(|(_, digest)| digest == first) {
        println!("cairn output identical with --jobs 1 and default: yes ({first})");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("cairn output identical with --jobs 1 and default: NO");
        for (name, digest) in &digests {
            println!("  {name}: {digest}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Runs `bash -c` with pipefail in `dir` and fails with its stderr unless it succeeds.
fn run_pipeline(dir: &Path, pipeline: &str) -> Result<Measured> {
    let measured = measure::run(
        Command::new("bash")
            .arg("-c")
            .arg(format!("set -o pipefail; {pipeline}"))
            .current_dir(dir),
    )?;
    if !measured.status.success() {
        bail!(
            "`{pipeline}` failed ({}):\n{}",
            measured.status,
            String::from_utf8_lossy(&measured.stderr)
        );
    }
    Ok(measured)
}

struct CairnBuild {
    measured: Measured,
    manifest_digest: String,
    json: serde_json::Value,
}

/// One timed `cairn build bench.yaml -o OUT --quiet --json [--jobs N]` into an empty
/// `out_dir`.
fn run_cairn(
    cairn: &Path,
    bench_dir: &Path,
    out_dir: &Path,
    jobs: Option<&str>,
    sign_key: Option<&Path>,
) -> Result<CairnBuild> {
    if out_dir.exists() {
        fs::remove_dir_all(out_dir).with_context(|| format!("removing {}", out_dir.display()))?;
    }
    let mut command = Command::new(cairn);
    command
        .current_dir(bench_dir)
        .args(["build", RECIPE_FILE, "-o"])
        .arg(out_dir)
        .args(["--quiet", "--json", "--timings"]);
    if let Some(jobs) = jobs {
        command.args(["--jobs", jobs]);
    }
    if let Some(key) = sign_key {
        command.arg("--sign-key").arg(key);
    }
    let measured = measure::run(&mut command)?;
    let stderr = String::from_utf8_lossy(&measured.stderr);
    if !measured.status.success() {
        bail!(
            "{command:?} exited with {}{}",
            measured.status,
            stderr_section(&stderr)
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&measured.stdout).with_context(|| {
        let stdout = String::from_utf8_lossy(&measured.stdout);
        let printed = if stdout.trim().is_empty() {
            "nothing".to_string()
        } else {
            format!("this:\n{stdout}")
        };
        format!(
            "{command:?} should print one JSON object on stdout but printed {printed}{}",
            stderr_section(&stderr)
        )
    })?;
    let manifest_digest = json
        .get("manifest_digest")
        .and_then(|digest| digest.as_str())
        .with_context(|| format!("no string `manifest_digest` in cairn's JSON: {json}"))?
        .to_string();
    Ok(CairnBuild {
        measured,
        manifest_digest,
        json,
    })
}

/// Bytes as (fractional) MiB, for display.
/// The fraction of the build spent generating SBOMs and signing, from cairn's
/// `timing: <stage> <seconds>` lines (`--timings`).
fn attest_share(stderr: &[u8]) -> f64 {
    let mut total = 0.0;
    let mut attest = 0.0;
    for line in String::from_utf8_lossy(stderr).lines() {
        let mut fields = line.split_whitespace();
        if fields.next() != Some("timing:") {
            continue;
        }
        let (Some(stage), Some(Ok(secs))) = (fields.next(), fields.next().map(str::parse::<f64>))
        else {
            continue;
        };
        total += secs;
        if stage == "sbom" || stage == "sign" {
            attest += secs;
        }
    }
    if total > 0.0 {
        attest / total
    } else {
        0.0
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

fn stderr_section(stderr: &str) -> String {
    if stderr.trim().is_empty() {
        String::new()
    } else {
        format!("\nits stderr:\n{}", stderr.trim_end())
    }
}

struct Row {
    name: &'static str,
    /// Median over the runs.
    wall: Duration,
    /// Largest over the runs.
    peak_rss_bytes: u64,
}

impl Row {
    fn new(name: &'static str, runs: &[Measured]) -> Self {
        let mut walls: Vec<Duration> = runs.iter().map(|run| run.wall).collect();
        walls.sort();
        Row {
            name,
            wall: walls[walls.len() / 2],
            peak_rss_bytes: runs.iter().map(|run| run.peak_rss_bytes).max().unwrap_or(0),
        }
    }
}

fn print_table(rows: &[Row], tree_bytes: u64) {
    let Some(baseline) = rows.first() else {
        return;
    };
    println!();
    println!(
        "{:<28} {:>8} {:>7} {:>8} {:>12}   (median of {RUNS}; MB = MiB; RSS = max)",
        "name", "wall s", "ratio", "MB/s", "peak RSS MB"
    );
    for row in rows {
        let seconds = row.wall.as_secs_f64();
        println!(
            "{:<28} {:>8.2} {:>7.2} {:>8.1} {:>12}",
            row.name,
            seconds,
            seconds / baseline.wall.as_secs_f64(),
            mib(tree_bytes) / seconds,
            row.peak_rss_bytes / MIB
        );
    }
    println!();
}

/// Compressed and uncompressed size per layer from cairn's JSON, where present.
fn print_layers(json: &serde_json::Value) {
    let layers = json.get("layers").and_then(|layers| layers.as_array());
    for layer in layers.into_iter().flatten() {
        let name = layer
            .get("name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?");
        let size = layer.get("size").and_then(serde_json::Value::as_u64);
        let uncompressed = layer
            .get("uncompressed_size")
            .and_then(serde_json::Value::as_u64);
        if let (Some(size), Some(uncompressed)) = (size, uncompressed) {
            println!(
                "cairn layer {name}: {:.1} MB gzip of {:.1} MB tar ({:.0}%)",
                mib(size),
                mib(uncompressed),
                100.0 * size as f64 / uncompressed.max(1) as f64
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::parse(&args.iter().map(|arg| arg.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn attest_share_reads_cairns_timing_lines() {
        let stderr = b"warning: x\ntiming: resolve 1.0\ntiming: layers 7.0\ntiming: sbom 1.5\ntiming: sign 0.5\n";
        assert!((attest_share(stderr) - 0.2).abs() < 1e-9);
        assert_eq!(attest_share(b"no timings"), 0.0);
    }

    #[test]
    fn options_accept_both_size_spellings_and_reject_nonsense() {
        assert_eq!(
            parse(&[]).expect("defaults"),
            Options {
                size_mib: 300,
                keep: false
            }
        );
        assert_eq!(
            parse(&["--size-mb", "20", "--keep"]).expect("spaced"),
            Options {
                size_mib: 20,
                keep: true
            }
        );
        assert_eq!(parse(&["--size-mb=5"]).expect("equals").size_mib, 5);
        for bad in [
            &["--size-mb"][..],
            &["--size-mb", "0"],
            &["--size-mb", "x"],
            &["--fast"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
