//! `cairn build`: compile a recipe into an OCI layout, with progress on a terminal,
//! optional stage timings, and an optional signed ledger entry.

use super::{ledger, progress};
use crate::{now_rfc3339, package_options, print_json, source_date_epoch, wall_clock};
use anyhow::{bail, Context, Result};
use cairn::attest::keys;
use cairn::build::{self, BuildOptions, Observer, Quiet};
use cairn::digest::Sha256Digest;
use cairn::recipe;
use cairn::resolve::LockMode;
use clap::Args;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Args)]
pub struct BuildArgs {
    /// The recipe file (YAML, `cairn: 1`).
    recipe: PathBuf,
    /// Directory that receives <name>/ (the OCI layout).
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
    /// Fail unless every source is pinned and the lock file is up to date (for CI).
    #[arg(long)]
    locked: bool,
    /// Print one JSON object describing the result (digests, sizes, paths).
    #[arg(long)]
    json: bool,
    /// No progress or summary on stderr (errors and warnings still print).
    #[arg(short, long)]
    quiet: bool,
    /// Compression threads (default: all cores). Never changes the output bytes.
    #[arg(short, long)]
    jobs: Option<usize>,
    /// Sign the provenance and SBOM statements with this Ed25519 private key
    /// (PKCS#8 PEM, as `cairn keygen` writes).
    #[arg(long, env = "CAIRN_SIGN_KEY", value_name = "KEY")]
    sign_key: Option<PathBuf>,
    /// Print how long each stage took (resolve, layers, sbom, sign, publish) on
    /// stderr, as `timing: <stage> <seconds>` lines.
    #[arg(long)]
    timings: bool,
    /// Record the build in this audit ledger (signed with --sign-key).
    #[arg(long, env = "CAIRN_LEDGER", value_name = "PATH")]
    ledger: Option<PathBuf>,
    /// Who builds (e.g. the CI job), recorded in the ledger.
    #[arg(long, env = "CAIRN_IDENTITY", default_value = "")]
    identity: String,
    /// Record the build's wall-clock start and finish in the provenance
    /// (startedOn/finishedOn). Off by default: they make attestations differ per run.
    #[arg(long)]
    record_times: bool,
    /// Never use the network: Debian packages, indexes and InRelease files must be in
    /// the cache (filled by an earlier build).
    #[arg(long)]
    offline: bool,
}

/// Builds; prints the manifest digest on stdout (or the JSON report) and the summary
/// on stderr. Returns the exit code.
pub fn run(args: BuildArgs, cancel: Arc<AtomicBool>) -> Result<i32> {
    let BuildArgs {
        recipe,
        out,
        locked,
        json,
        quiet,
        jobs,
        sign_key,
        timings,
        ledger,
        identity,
        record_times,
        offline,
    } = args;
    let recipe = recipe::load(&recipe)?;
    let jobs = match jobs {
        Some(0) => bail!("--jobs must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let opts = BuildOptions {
        out_dir: out,
        lock_mode: if locked {
            LockMode::Locked
        } else {
            LockMode::PinMissing
        },
        jobs,
        source_date_epoch: source_date_epoch()?,
        cancel,
        sign_key: sign_key.as_deref().map(keys::read_private).transpose()?,
        clock: record_times.then_some(wall_clock as fn() -> u64),
        packages: package_options(offline)?,
    };
    let show_progress = !quiet && !json && std::io::stderr().is_terminal();
    let bars;
    let observer: &dyn Observer = if show_progress {
        bars = progress::Bars::new();
        &bars
    } else {
        &Quiet
    };
    let clock = progress::StageClock::new(observer);
    let report = build::build(&recipe, &opts, &clock)?;
    if let Some(ledger) = &ledger {
        match &opts.sign_key {
            Some(key) => {
                let entry = ledger::record_action(
                    ledger,
                    cairn::ledger::Action::Build,
                    build_details(&recipe, &report)?,
                    key,
                    &identity,
                    now_rfc3339(),
                )?;
                if !quiet && !json {
                    eprintln!(
                        "ledger: recorded build as entry {} in {}",
                        entry.seq,
                        ledger.display()
                    );
                }
            }
            None => eprintln!(
                "warning: not recorded in the ledger {}: entries are signed; pass --sign-key",
                ledger.display()
            ),
        }
    }
    if timings {
        for (stage, took) in clock.finish() {
            eprintln!("timing: {stage} {:.3}", took.as_secs_f64());
        }
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if json {
        return print_json(&report);
    }
    if !quiet {
        let n = report.layers.len();
        eprintln!(
            "built {} ({}, {n} layer{}) at {}",
            report.name,
            report.platform,
            if n == 1 { "" } else { "s" },
            report.layout.display()
        );
        let mut sboms = format!(
            "sbom: {} {}",
            report.spdx.display(),
            report.cyclonedx.display()
        );
        if report.sbom_embedded {
            sboms.push_str(&format!(" (also in the image under {})", build::SBOM_DIR));
        }
        eprintln!("{sboms}");
        match (&report.attestations, &report.signed_by) {
            (Some(path), Some(key)) => {
                eprintln!("attestations: {} (signed by {key})", path.display())
            }
            _ => eprintln!("attestations: none (pass --sign-key to sign provenance)"),
        }
    }
    println!("{}", report.manifest_digest);
    Ok(0)
}

/// What a `build` ledger entry says about the build.
fn build_details(
    recipe: &recipe::Recipe,
    report: &build::BuildReport,
) -> Result<BTreeMap<String, serde_json::Value>> {
    let lock_path = cairn::resolve::lock_path_for(&recipe.file.path);
    let lock_sha256 = match std::fs::read(&lock_path) {
        Ok(bytes) => Some(Sha256Digest::of(&bytes).to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", lock_path.display())),
    };
    let layers: Vec<String> = report.layers.iter().map(|l| l.digest.to_string()).collect();
    let sources: BTreeMap<&String, String> = report
        .sources
        .iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    Ok(BTreeMap::from([
        ("image".to_string(), report.name.clone().into()),
        (
            "manifest_digest".to_string(),
            report.manifest_digest.to_string().into(),
        ),
        ("platform".to_string(), report.platform.clone().into()),
        (
            "recipe".to_string(),
            recipe
                .file
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .into(),
        ),
        (
            "recipe_sha256".to_string(),
            Sha256Digest::of(recipe.file.text.as_bytes())
                .to_string()
                .into(),
        ),
        ("lock_sha256".to_string(), lock_sha256.into()),
        ("layers".to_string(), serde_json::to_value(layers)?),
        ("sources".to_string(), serde_json::to_value(sources)?),
    ]))
}
