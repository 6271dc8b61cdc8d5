//! `cargo xtask bench [--size-mb N[,N...]] [--runs N] [--files N[,N...]] [--keep]`: times
//! `cairn build` with
//! each layer compression, cold and from a warm layer cache, against the `tar | gzip`,
//! `tar | pigz -p2` and `tar | zstd -T2` pipelines and `umoci repack` (where installed),
//! on the same generated tree (see `bench_tree.rs`), at one or more tree sizes.
//!
//! Every contender runs `--runs` times (default 3); the table shows the median wall and
//! CPU time, the largest peak RSS and the wall-time and CPU-time ratios against the gzip
//! pipeline (CPU time barely moves when other jobs share the machine; wall time does). With
//! several sizes it ends with the cost per MiB at each size, to show that cost grows
//! linearly. It checks that the output does not depend on the thread count or on the
//! cache (same manifest digest from `--jobs 1`, the default and a warm cache) and fails if
//! any run fails or a digest differs; the speed and memory targets are reported, not
//! enforced.
//!
//! `--files` adds the file-count section (`bench_files.rs`): builds of N small files from a
//! directory and from an archive, with peak RSS per file. It is opt-in, as generating a
//! million files takes minutes; given alone, it replaces the tree-size section.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bench_tree::{self, MIB, TREE_DIR};
use crate::measure::{self, Measured};

const DEFAULT_RUNS: usize = 3;
const DEFAULT_SIZE_MIB: u64 = 300;
const GZIP_TARGET: f64 = 0.30;
const ZSTD_TARGET: f64 = 0.15;
const WARM_TARGET: f64 = 0.05;
const RSS_TARGET_MIB: u64 = 100;
const TAR: &str = "tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf -";
const COMPRESSIONS: [&str; 3] = ["gzip", "zstd", "none"];

/// How a cairn contender finds its layer cache and output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Warm {
    /// `--no-cache`.
    Cold,
    /// A cache filled by the same build, an empty output directory (a CI job that
    /// restored its cache).
    Cache,
    /// A cache filled by the same build and that build's output still in place.
    InPlace,
}

/// The bench recipe: the whole tree in one layer below /data.
fn recipe(compression: &str) -> String {
    format!(
        "cairn: 1\nname: bench\nepoch: 0\ncompression: {compression}\n\
         sources:\n  tree: {{ path: tree/ }}\n\
         layers:\n  - name: tree\n    contents:\n      - copy: tree\n        to: /data\n"
    )
}

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub sizes_mib: Vec<u64>,
    pub runs: usize,
    /// File counts for the file-count section; empty: no such section.
    pub file_counts: Vec<u64>,
    /// Leave cairn's output layouts in place for inspection.
    pub keep: bool,
}

const USAGE: &str =
    "usage: cargo xtask bench [--size-mb N[,N...]] [--runs N] [--files N[,N...]] [--keep]";

/// Whole numbers above 0, comma-separated, for `flag`.
fn parse_counts(flag: &str, text: &str, unit: &str) -> Result<Vec<u64>> {
    text.split(',')
        .map(|n| match n.trim().parse() {
            Ok(n) if n > 0 => Ok(n),
            _ => {
                bail!("{flag} takes whole numbers of {unit} above 0, comma-separated, got `{text}`")
            }
        })
        .collect()
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut options = Options {
            sizes_mib: Vec::new(),
            runs: DEFAULT_RUNS,
            file_counts: Vec::new(),
            keep: false,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag, Some(value.to_string())),
                None => (arg.as_str(), None),
            };
            let mut value = || -> Result<String> {
                match &inline {
                    Some(v) => Ok(v.clone()),
                    None => args
                        .next()
                        .cloned()
                        .with_context(|| format!("{flag} needs a value; {USAGE}")),
                }
            };
            match flag {
                "--keep" if inline.is_none() => options.keep = true,
                "--size-mb" => options.sizes_mib = parse_counts(flag, &value()?, "MiB")?,
                "--files" => options.file_counts = parse_counts(flag, &value()?, "files")?,
                "--runs" => {
                    let runs = value()?;
                    options.runs = match runs.parse() {
                        Ok(n) if n > 0 => n,
                        _ => bail!("--runs takes a whole number above 0, got `{runs}`"),
                    };
                }
                other => bail!("unknown bench option `{other}`; {USAGE}"),
            }
        }
        if options.sizes_mib.is_empty() && options.file_counts.is_empty() {
            options.sizes_mib = vec![DEFAULT_SIZE_MIB];
        }
        Ok(options)
    }
}

pub fn run(options: &Options) -> Result<ExitCode> {
    println!("xtask: cargo build --release -p cairn");
    crate::run_checked(crate::cargo().args(["build", "--release", "-p", "cairn"]))?;
    let cairn = crate::target_dir().join("release").join("cairn");
    print_machine();

    let mut all_same = true;
    let mut growth = Vec::new();
    for &size_mib in &options.sizes_mib {
        let result = bench_size(&cairn, size_mib, options)?;
        all_same &= result.digests_agree;
        growth.push((size_mib, result.tree_bytes, result.rows));
    }
    if growth.len() > 1 {
        print_growth(&growth);
    }
    if !options.file_counts.is_empty() {
        crate::bench_files::run(&cairn, &options.file_counts, options.keep)?;
    }
    Ok(if all_same {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// CPU, cores and load: the numbers mean little without them.
fn print_machine() {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let sha_ni = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "sha_ni"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "xtask: machine: {model}, {cores} cores, SHA-NI {}; load average {}",
        if sha_ni { "yes" } else { "no" },
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

struct SizeResult {
    tree_bytes: u64,
    rows: Vec<Row>,
    digests_agree: bool,
}

fn bench_size(cairn: &Path, size_mib: u64, options: &Options) -> Result<SizeResult> {
    let bench_root = crate::target_dir().join("bench");
    let bench_dir = bench_root.join(format!("tree-{size_mib}mib"));
    let out_root = bench_root.join(format!("out-{size_mib}mib"));
    let cache_root = bench_root.join(format!("cache-{size_mib}mib"));
    let runs = options.runs;

    let tree = bench_tree::ensure(&bench_dir, size_mib)?;
    println!(
        "\nxtask: bench tree {} ({} entries, {:.1} MiB){}",
        tree.root.display(),
        tree.entries,
        mib(tree.bytes),
        if tree.reused { ", reused" } else { "" }
    );
    for compression in COMPRESSIONS {
        fs::write(
            bench_dir.join(format!("bench-{compression}.yaml")),
            recipe(compression),
        )?;
    }

    // Untimed: brings the tree into the page cache so run 1 is not the odd one out.
    let warm = run_pipeline(&bench_dir, &format!("{TAR} {TREE_DIR} | wc -c"))?;
    let tar_bytes: u64 = String::from_utf8_lossy(&warm.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    println!(
        "xtask: tar stream {:.1} MiB; {runs} runs each",
        mib(tar_bytes)
    );

    let mut rows = Vec::new();
    for (name, compressor) in [
        ("tar | gzip -n -6 (baseline)", "gzip -n -6"),
        ("tar | pigz -p2 -n -6", "pigz -p2 -n -6"),
        ("tar | zstd -3 -T2", "zstd -3 -T2 -q -c"),
    ] {
        let pipeline = format!("{TAR} {TREE_DIR} | {compressor} | sha256sum");
        let measured = (0..runs)
            .map(|_| run_pipeline(&bench_dir, &pipeline))
            .collect::<Result<Vec<_>>>()?;
        rows.push(Row::new(name.to_string(), &measured));
        report_row(rows.last());
    }
    if let Some(row) = bench_umoci(&bench_dir, runs)? {
        rows.push(row);
        report_row(rows.last());
    }

    let key = bench_dir.join("bench.key");
    if !key.exists() {
        crate::run_checked(
            Command::new(cairn)
                .arg("keygen")
                .arg(bench_dir.join("bench")),
        )?;
    }
    let mut digests: Vec<(String, String)> = Vec::new();
    let mut attest_shares = Vec::new();
    let mut hash_backend = String::new();
    let mut last_json = None;
    // `warm`: from a warm cache into an empty output directory, or `InPlace`, over the
    // previous output of the same build (what rebuilding on a laptop does).
    let mut cairn_runs = |name: String, compression: &str, extra: &[&str], warm: Warm| {
        let out_dir = out_root.join(name.replace(' ', "-"));
        let keep_output = warm == Warm::InPlace;
        let cache_dir = cache_root.join(compression);
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if warm != Warm::Cold {
            if cache_dir.exists() {
                fs::remove_dir_all(&cache_dir)?;
            }
            args.extend(["--cache-dir".to_string(), cache_dir.display().to_string()]);
            // Untimed: fills the cache (and writes the output an in-place rebuild replaces).
            run_cairn(cairn, &bench_dir, &out_dir, compression, &args, false)?;
        } else {
            args.push("--no-cache".into());
        }
        let mut measured = Vec::new();
        for _ in 0..runs {
            let built = run_cairn(cairn, &bench_dir, &out_dir, compression, &args, keep_output)
                .with_context(|| format!("{name} failed"))?;
            digests.push((name.clone(), built.manifest_digest));
            if hash_backend.is_empty() {
                hash_backend = hash_backend_line(&built.measured.stderr);
            }
            if extra.first() == Some(&"--sign-key") {
                attest_shares.push(attest_share(&built.measured.stderr));
            }
            measured.push(built.measured);
            last_json = Some(built.json);
        }
        let row = Row::new(name, &measured);
        report_row(Some(&row));
        anyhow::Ok(row)
    };
    for compression in COMPRESSIONS {
        rows.push(cairn_runs(
            format!("cairn {compression} cold"),
            compression,
            &[],
            Warm::Cold,
        )?);
        rows.push(cairn_runs(
            format!("cairn {compression} warm cache"),
            compression,
            &[],
            Warm::Cache,
        )?);
        if compression == "gzip" {
            rows.push(cairn_runs(
                "cairn gzip warm cache, in place".into(),
                compression,
                &[],
                Warm::InPlace,
            )?);
            rows.push(cairn_runs(
                "cairn gzip cold --jobs 1".into(),
                compression,
                &["--jobs", "1"],
                Warm::Cold,
            )?);
            let key = key.display().to_string();
            rows.push(cairn_runs(
                "cairn gzip cold --sign-key".into(),
                compression,
                &["--sign-key", &key],
                Warm::Cold,
            )?);
        }
    }

    print_table(&rows, tree.bytes, runs);
    if let Some(json) = &last_json {
        print_layers(json);
    }
    if !hash_backend.is_empty() {
        println!("{hash_backend}");
    }
    let ratio = |name: &str| -> Option<f64> {
        let baseline = rows.first()?.wall.as_secs_f64();
        rows.iter()
            .find(|r| r.name == name)
            .map(|r| r.wall.as_secs_f64() / baseline)
    };
    let wall = |name: &str| rows.iter().find(|r| r.name == name).map(|r| r.wall);
    if let Some(r) = ratio("cairn gzip cold") {
        let faster_than_pigz = wall("cairn gzip cold") < wall("tar | pigz -p2 -n -6");
        println!(
            "cairn gzip cold / gzip pipeline: {r:.2} (target <= {GZIP_TARGET:.2}); faster than pigz -p2: {}",
            if faster_than_pigz { "yes" } else { "no" }
        );
    }
    if let Some(r) = ratio("cairn zstd cold") {
        println!("cairn zstd cold / gzip pipeline: {r:.2} (target <= {ZSTD_TARGET:.2})");
    }
    for compression in COMPRESSIONS {
        for warm in ["warm cache", "warm cache, in place"] {
            if let (Some(cold), Some(warm_wall)) = (
                wall(&format!("cairn {compression} cold")),
                wall(&format!("cairn {compression} {warm}")),
            ) {
                println!(
                    "cairn {compression} {warm} / cold: {:.3} (target < {WARM_TARGET:.2})",
                    warm_wall.as_secs_f64() / cold.as_secs_f64()
                );
            }
        }
    }
    attest_shares.sort_by(f64::total_cmp);
    if let Some(share) = attest_shares.get(attest_shares.len() / 2) {
        println!(
            "SBOM + attestation share of the signed cairn build: {:.1}% (target <= 10%)",
            share * 100.0
        );
    }
    let cairn_rss = rows
        .iter()
        .filter(|r| r.name.starts_with("cairn"))
        .map(|r| r.peak_rss_bytes)
        .max()
        .unwrap_or(0);
    println!(
        "cairn peak RSS: {} MiB (target < {RSS_TARGET_MIB})",
        cairn_rss / MIB
    );

    if options.keep {
        println!("xtask: kept cairn's layouts in {}", out_root.display());
    } else {
        for dir in [&out_root, &cache_root] {
            if dir.exists() {
                fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
            }
        }
    }

    // One image per compression, whatever the thread count or cache.
    let mut digests_agree = true;
    for compression in COMPRESSIONS {
        let prefix = format!("cairn {compression} ");
        let of: Vec<&(String, String)> = digests
            .iter()
            .filter(|(n, _)| n.starts_with(&prefix))
            .collect();
        let same = of.windows(2).all(|w| w[0].1 == w[1].1);
        println!(
            "cairn {compression}: same image cold, warm{}: {}",
            if compression == "gzip" {
                " and --jobs 1"
            } else {
                ""
            },
            if same { "yes" } else { "NO" }
        );
        if !same {
            digests_agree = false;
            for (name, digest) in of {
                println!("  {name}: {digest}");
            }
        }
    }
    Ok(SizeResult {
        tree_bytes: tree.bytes,
        rows,
        digests_agree,
    })
}

/// `umoci repack` of the tree copied into an unpacked empty image, if umoci is installed.
/// Setup is untimed; every run repacks the same change (the bundle is not refreshed).
fn bench_umoci(bench_dir: &Path, runs: usize) -> Result<Option<Row>> {
    let found = Command::new("umoci").arg("--version").output();
    if !found.is_ok_and(|out| out.status.success()) {
        println!("xtask: umoci not installed; skipped");
        return Ok(None);
    }
    let work = bench_dir.join("umoci");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    let setup = format!(
        "umoci init --layout umoci/image && umoci new --image umoci/image:bench && \
         umoci unpack --image umoci/image:bench umoci/bundle && \
         mkdir umoci/bundle/rootfs/data && cp -a {TREE_DIR}/. umoci/bundle/rootfs/data/"
    );
    run_pipeline(bench_dir, &setup)?;
    let measured = (0..runs)
        .map(|_| {
            run_pipeline(
                bench_dir,
                "umoci repack --image umoci/image:bench umoci/bundle",
            )
        })
        .collect::<Result<Vec<_>>>()?;
    fs::remove_dir_all(&work)?;
    Ok(Some(Row::new("umoci repack (gzip)".into(), &measured)))
}

fn report_row(row: Option<&Row>) {
    if let Some(row) = row {
        println!(
            "xtask: {}: {:.2} s wall, {:.2} s CPU",
            row.name,
            row.wall.as_secs_f64(),
            row.cpu.as_secs_f64()
        );
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

/// One timed `cairn build bench-<compression>.yaml -o OUT --quiet --json --timings ARGS`
/// into an empty `out_dir`.
fn run_cairn(
    cairn: &Path,
    bench_dir: &Path,
    out_dir: &Path,
    compression: &str,
    args: &[String],
    keep_output: bool,
) -> Result<CairnBuild> {
    if out_dir.exists() && !keep_output {
        fs::remove_dir_all(out_dir).with_context(|| format!("removing {}", out_dir.display()))?;
    }
    let mut command = Command::new(cairn);
    command
        .current_dir(bench_dir)
        .arg("build")
        .arg(format!("bench-{compression}.yaml"))
        .arg("-o")
        .arg(out_dir)
        .args(["--quiet", "--json", "--timings"])
        .args(args);
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
        format!(
            "{command:?} should print one JSON object on stdout{}",
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

/// cairn's `hashing: ...` line (`--timings`): which SHA implementation ran.
fn hash_backend_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .find(|l| l.starts_with("hashing:"))
        .map(|l| format!("cairn {l}"))
        .unwrap_or_default()
}

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
    name: String,
    /// Median over the runs.
    wall: Duration,
    /// Median over the runs.
    cpu: Duration,
    /// Largest over the runs.
    peak_rss_bytes: u64,
}

impl Row {
    fn new(name: String, runs: &[Measured]) -> Self {
        let median = |mut values: Vec<Duration>| {
            values.sort();
            values[values.len() / 2]
        };
        Row {
            name,
            wall: median(runs.iter().map(|run| run.wall).collect()),
            cpu: median(runs.iter().map(|run| run.cpu).collect()),
            peak_rss_bytes: runs.iter().map(|run| run.peak_rss_bytes).max().unwrap_or(0),
        }
    }
}

fn print_table(rows: &[Row], tree_bytes: u64, runs: usize) {
    let Some(baseline) = rows.first() else {
        return;
    };
    println!();
    println!(
        "| {:<29} | {:>7} | {:>6} | {:>7} | {:>9} | {:>7} | {:>8} |",
        "contender", "wall s", "CPU s", "ratio", "CPU ratio", "MiB/s", "RSS MiB"
    );
    println!(
        "|{:-<31}|{:->9}|{:->8}|{:->9}|{:->11}|{:->9}|{:->10}|",
        "", "", "", "", "", "", ""
    );
    for row in rows {
        let seconds = row.wall.as_secs_f64();
        println!(
            "| {:<29} | {:>7.2} | {:>6.2} | {:>7.3} | {:>9.3} | {:>7.1} | {:>8} |",
            row.name,
            seconds,
            row.cpu.as_secs_f64(),
            seconds / baseline.wall.as_secs_f64(),
            row.cpu.as_secs_f64() / baseline.cpu.as_secs_f64(),
            mib(tree_bytes) / seconds,
            row.peak_rss_bytes / MIB
        );
    }
    println!(
        "(median of {runs} runs; ratio = wall / gzip pipeline wall; CPU ratio = CPU time / \
         gzip pipeline CPU time, steadier on a shared machine; RSS = largest)"
    );
    println!();
}

/// Seconds per GiB of tree for each contender at each size: flat means linear growth.
fn print_growth(sizes: &[(u64, u64, Vec<Row>)]) {
    println!("\nwall seconds per GiB of tree, by tree size (flat = linear growth):");
    let header: Vec<String> = sizes
        .iter()
        .map(|(mib, _, _)| format!("{mib} MiB"))
        .collect();
    println!("| {:<29} | {} |", "contender", header.join(" | "));
    let names: Vec<&String> = sizes[0].2.iter().map(|r| &r.name).collect();
    for name in names {
        let cells: Vec<String> = sizes
            .iter()
            .map(|(_, bytes, rows)| {
                rows.iter()
                    .find(|r| &r.name == name)
                    .map_or("-".into(), |r| {
                        format!(
                            "{:.2}",
                            r.wall.as_secs_f64() / (*bytes as f64 / (1024.0 * MIB as f64))
                        )
                    })
            })
            .collect();
        println!("| {name:<29} | {} |", cells.join(" | "));
    }
}

/// Compressed and uncompressed size per layer from cairn's JSON, where present.
fn print_layers(json: &serde_json::Value) {
    let layers = json.get("layers").and_then(|layers| layers.as_array());
    for layer in layers.into_iter().flatten() {
        let field = |key: &str| layer.get(key).and_then(serde_json::Value::as_u64);
        let name = layer
            .get("name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?");
        if let (Some(size), Some(uncompressed)) = (field("size"), field("uncompressed_size")) {
            println!(
                "cairn layer {name} (last build): {:.1} MiB blob of {:.1} MiB tar ({:.0}%)",
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
    fn hash_backend_line_is_found_in_cairns_stderr() {
        let stderr = b"timing: resolve 1.0\nhashing: SHA-256 sha-ni, SHA-1 sha-ni\n";
        assert_eq!(
            hash_backend_line(stderr),
            "cairn hashing: SHA-256 sha-ni, SHA-1 sha-ni"
        );
        assert_eq!(hash_backend_line(b"timing: layers 2.0\n"), "");
    }

    #[test]
    fn options_accept_sizes_runs_and_reject_nonsense() {
        assert_eq!(
            parse(&[]).expect("defaults"),
            Options {
                sizes_mib: vec![300],
                runs: 3,
                file_counts: vec![],
                keep: false
            }
        );
        assert_eq!(
            parse(&["--size-mb", "100,300,1024", "--keep", "--runs=1"]).expect("list"),
            Options {
                sizes_mib: vec![100, 300, 1024],
                runs: 1,
                file_counts: vec![],
                keep: true
            }
        );
        let files = parse(&["--files", "100000,1000000"]).expect("files alone");
        assert_eq!(
            (files.sizes_mib, files.file_counts),
            (vec![], vec![100_000, 1_000_000])
        );
        let both = parse(&["--files=10", "--size-mb", "5"]).expect("files and sizes");
        assert_eq!((both.sizes_mib, both.file_counts), (vec![5], vec![10]));
        assert_eq!(parse(&["--size-mb=5"]).expect("equals").sizes_mib, [5]);
        for bad in [
            &["--size-mb"][..],
            &["--size-mb", "0"],
            &["--size-mb", "100,x"],
            &["--runs", "0"],
            &["--files", "0"],
            &["--files", "1e6"],
            &["--fast"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
