//! The `cairn` command line: parses arguments, reads the environment (the only place
//! that does), and calls the library. Exit codes: 0 success, 1 failure (bad recipe,
//! bad input, I/O), 2 usage error, 130 interrupted.

mod ledger_cmd;
mod progress;

use anyhow::{bail, Context, Result};
use cairn::attest::keys;
use cairn::build::{self, BuildError, BuildOptions, Observer, Quiet};
use cairn::resolve::LockMode;
use cairn::{inspect, recipe};
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Compile declarative YAML recipes, deterministically, into OCI images.
///
/// The same recipe and the same input bytes give the same image, bit for bit, on any
/// machine, any day. Every input is pinned by SHA-256 (in the recipe or its .lock file).
#[derive(Parser)]
#[command(
    version,
    about,
    long_about,
    after_help = "Examples:\n  cairn build recipes/hello.yaml          build out/hello/ (an OCI layout)\n  cairn build recipes/hello.yaml --locked --json   CI: pinned inputs only, JSON result\n  cairn inspect out/hello                 show manifest, config and files\n  skopeo inspect oci:out/hello:hello      any OCI tool reads the result"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the recipe into an OCI image layout at OUT/<name>/.
    ///
    /// Prints the manifest digest on stdout. The layout appears only when complete: a
    /// failed or interrupted build leaves the previous output untouched. Sources not
    /// pinned in the recipe or its lock file are pinned into the lock (with a warning),
    /// unless --locked.
    Build {
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
    },
    /// The audit ledger: who built, pushed, verified and deployed what, and when.
    Ledger {
        /// The ledger file (default: $XDG_DATA_HOME/cairn/ledger.jsonl).
        #[arg(long, env = "CAIRN_LEDGER", global = true, value_name = "PATH")]
        ledger: Option<PathBuf>,
        #[command(subcommand)]
        command: ledger_cmd::LedgerCommand,
    },
    /// Create an Ed25519 signing key pair: PREFIX.key (PKCS#8 PEM, mode 0600) and
    /// PREFIX.pub (SPKI PEM). Prints the key id (SHA-256 of the public key).
    Keygen {
        /// Path prefix for the two files.
        #[arg(default_value = "cairn")]
        prefix: PathBuf,
    },
    /// Pin every source: write <recipe>.lock with each source's SHA-256.
    ///
    /// Sources pinned with `sha256:` in the recipe are checked, not re-pinned.
    Lock {
        recipe: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Parse and check a recipe without building it.
    Validate {
        recipe: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check that an image layout proves what it claims: blob digests, attestation
    /// signatures, statement subjects, provenance, the SBOM against the layers, and an
    /// optional policy. Exit 0 only if every check passes.
    Verify {
        /// The layout directory, e.g. out/hello.
        layout: PathBuf,
        /// Trusted public key(s) (SPKI PEM or OpenSSH ssh-ed25519 line).
        #[arg(long = "key", value_name = "PUB", required = true)]
        keys: Vec<PathBuf>,
        /// A policy file (see the README: trusted signers, source digests and signers).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Rebuild this recipe and require the same manifest digest.
        #[arg(long, value_name = "RECIPE")]
        rebuild: Option<PathBuf>,
        /// Record the verdict in this audit ledger (signed with --ledger-key).
        #[arg(long, env = "CAIRN_LEDGER", value_name = "PATH")]
        ledger: Option<PathBuf>,
        /// Private key that signs the ledger entry.
        #[arg(long, env = "CAIRN_LEDGER_KEY", value_name = "KEY")]
        ledger_key: Option<PathBuf>,
        /// Who verifies (e.g. the push hook), recorded in the ledger.
        #[arg(long, env = "CAIRN_IDENTITY", default_value = "")]
        identity: String,
        #[arg(long)]
        json: bool,
    },
    /// Show where a file in the image came from: its layer and digest, the source that
    /// supplied it (digest, signer) and the recipe line that put it there.
    ///
    /// WHAT is a path in the image (/usr/bin/hello) or the SHA-256 of a file found on a
    /// running system (sha256:<hex> or 64 hex digits).
    Trace {
        layout: PathBuf,
        what: String,
        #[arg(long)]
        json: bool,
    },
    /// Show what differs between two image layouts: config, layers, files (added,
    /// removed, changed in content, mode, owner or link target) and sources.
    ///
    /// Exit status as diff(1): 0 identical, 1 different, 2 trouble.
    Diff {
        a: PathBuf,
        b: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Show an OCI layout: manifest, config, layers and the files in each.
    ///
    /// Every blob read is verified against its digest.
    Inspect {
        /// The layout directory, e.g. out/hello.
        layout: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    let cancel = Arc::new(AtomicBool::new(false));
    let handler_flag = cancel.clone();
    // First Ctrl-C: stop cleanly (nothing is published). Second: stop now.
    let _ = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    let is_diff = matches!(cli.command, Command::Diff { .. });
    match run(cli, cancel) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if matches!(
                e.downcast_ref::<BuildError>(),
                Some(BuildError::Interrupted)
            ) {
                eprintln!("cairn: {e}");
                std::process::exit(130);
            }
            // Diagnostics render themselves as `error: ...`; other errors get the prefix.
            let text = format!("{e:#}");
            if text.starts_with("error:") {
                eprintln!("{text}");
            } else {
                eprintln!("error: {text}");
            }
            std::process::exit(if is_diff { 2 } else { 1 });
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<i32> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(0)
}

/// What a `build` ledger entry says about the build.
fn build_details(
    recipe: &recipe::Recipe,
    report: &build::BuildReport,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>> {
    use cairn::digest::Sha256Digest;
    let lock_path = cairn::resolve::lock_path_for(&recipe.file.path);
    let lock_sha256 = match std::fs::read(&lock_path) {
        Ok(bytes) => Some(Sha256Digest::of(&bytes).to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", lock_path.display())),
    };
    let layers: Vec<String> = report.layers.iter().map(|l| l.digest.to_string()).collect();
    let sources: std::collections::BTreeMap<&String, String> = report
        .sources
        .iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    Ok(std::collections::BTreeMap::from([
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

/// Wall-clock UTC for ledger entries (audit records carry real time; images do not).
fn now_rfc3339() -> String {
    cairn::image::rfc3339(wall_clock())
}

/// The only clock cairn reads: for `--record-times` and ledger entries.
fn wall_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => v
            .parse()
            .map(Some)
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
        Err(_) => Ok(None),
    }
}

fn run(cli: Cli, cancel: Arc<AtomicBool>) -> Result<i32> {
    match cli.command {
        Command::Build {
            recipe,
            out,
            locked,
            json,
            quiet,
            jobs,
            sign_key,
            record_times,
            timings,
            ledger,
            identity,
        } => {
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
                        let entry = ledger_cmd::record_action(
                            ledger,
                            cairn::ledger::Action::Build,
                            build_details(&recipe, &report)?,
                            key,
                            &identity,
                            now_rfc3339(),
                        )?;
                        if !quiet && !json {
                            eprintln!("ledger: recorded build as entry {} in {}", entry.seq, ledger.display());
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
            }
            if !quiet {
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
        }
        Command::Ledger { ledger, command } => {
            return ledger_cmd::run(ledger, command, now_rfc3339());
        }
        Command::Keygen { prefix } => {
            let key = keys::generate();
            let (private, public) = keys::write_pair(&key, &prefix)?;
            eprintln!("wrote {} and {}", private.display(), public.display());
            println!("{}", keys::key_id(&key.verifying_key()));
        }
        Command::Lock { recipe, json } => {
            let recipe = recipe::load(&recipe)?;
            let report = build::lock(&recipe)?;
            if json {
                return print_json(&report);
            }
            for (name, s) in &report.sources.sources {
                println!("{name}\t{}\t{}", s.kind, s.sha256);
            }
            eprintln!(
                "{} {}",
                if report.changed {
                    "wrote"
                } else {
                    "unchanged:"
                },
                report.lock_file.display()
            );
        }
        Command::Validate { recipe, json } => {
            let recipe = recipe::load(&recipe)?;
            if json {
                return print_json(&serde_json::json!({
                    "valid": true,
                    "name": recipe.name,
                    "layers": recipe.layers.iter().map(|l| &l.name).collect::<Vec<_>>(),
                    "sources": recipe.sources.keys().collect::<Vec<_>>(),
                }));
            }
            eprintln!(
                "{}: ok ({} sources, {} layers)",
                recipe.file.path.display(),
                recipe.sources.len(),
                recipe.layers.len()
            );
        }
        Command::Verify {
            layout,
            keys: key_paths,
            policy,
            rebuild,
            json,
            ledger,
            ledger_key,
            identity,
        } => {
            let trusted = key_paths
                .iter()
                .map(|p| keys::read_public(p))
                .collect::<Result<Vec<_>, _>>()?;
            let policy_sha256 = policy
                .as_deref()
                .map(std::fs::read)
                .transpose()?
                .map(|b| cairn::digest::Sha256Digest::of(&b).to_string());
            let policy = match policy {
                Some(p) => cairn::verify::Policy::read(&p)?,
                None => cairn::verify::Policy {
                    cairn_policy: 1,
                    require_sbom: true,
                    ..Default::default()
                },
            };
            let rebuilt = match rebuild {
                Some(recipe_path) => {
                    let recipe = recipe::load(&recipe_path)?;
                    let scratch = tempfile::tempdir()?;
                    let opts = BuildOptions {
                        out_dir: scratch.path().to_path_buf(),
                        lock_mode: LockMode::Locked,
                        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
                        source_date_epoch: source_date_epoch()?,
                        cancel,
                        sign_key: None,
                        clock: None,
                    };
                    Some(
                        build::build(&recipe, &opts, &Quiet)?
                            .manifest_digest
                            .to_string(),
                    )
                }
                None => None,
            };
            let verdict = cairn::verify::verify(&layout, &trusted, &policy, rebuilt.as_deref());
            if let Some(ledger) = &ledger {
                match &ledger_key {
                    Some(key) => {
                        let failed: Vec<&str> =
                            verdict.checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
                        let details = std::collections::BTreeMap::from([
                            ("image".to_string(), verdict.manifest_digest.clone().into()),
                            ("layout".to_string(), layout.display().to_string().into()),
                            ("verified".to_string(), verdict.verified.into()),
                            ("failed_checks".to_string(), failed.into()),
                            ("policy_sha256".to_string(), policy_sha256.clone().into()),
                        ]);
                        let entry = ledger_cmd::record_action(
                            ledger,
                            cairn::ledger::Action::Verify,
                            details,
                            &keys::read_private(key)?,
                            &identity,
                            now_rfc3339(),
                        )?;
                        eprintln!("ledger: recorded the verdict as entry {} in {}", entry.seq, ledger.display());
                    }
                    None => eprintln!(
                        "warning: not recorded in the ledger {}: entries are signed; pass --ledger-key",
                        ledger.display()
                    ),
                }
            }
            if json {
                print_json(&verdict)?;
            } else {
                for c in &verdict.checks {
                    println!(
                        "{} {:<11} {}",
                        if c.ok { "ok  " } else { "FAIL" },
                        c.name,
                        c.detail
                    );
                }
                println!(
                    "{}",
                    if verdict.verified {
                        "verified"
                    } else {
                        "NOT verified"
                    }
                );
            }
            return Ok(i32::from(!verdict.verified));
        }
        Command::Trace { layout, what, json } => {
            let t = cairn::trace::trace(&layout, &what)?;
            if t.matches.is_empty() {
                bail!("{what}: no regular file in {} matches", layout.display());
            }
            if json {
                return print_json(&t);
            }
            for m in &t.matches {
                println!("{}", m.path);
                println!(
                    "  file    {} ({} bytes, {:04o} {}:{})",
                    m.sha256, m.size, m.mode, m.uid, m.gid
                );
                println!(
                    "  layer   {} {} {}",
                    m.layer.index,
                    m.layer.name.as_deref().unwrap_or("?"),
                    m.layer.digest
                );
                match &m.source {
                    Some(s) => {
                        println!(
                            "  source  {} ({} {}) {}",
                            s.name,
                            s.kind.as_deref().unwrap_or("?"),
                            s.path.as_deref().unwrap_or("?"),
                            s.digest.as_deref().unwrap_or("?")
                        );
                        if let Some(member) = &m.member {
                            println!("  member  {member}");
                        }
                        println!(
                            "  signer  {}",
                            s.signer.as_deref().unwrap_or("none (unsigned source)")
                        );
                    }
                    None => println!(
                        "  source  {} (no source file)",
                        m.origin.as_deref().unwrap_or("unknown")
                    ),
                }
                if let Some(line) = m.recipe_line {
                    println!(
                        "  recipe  {} line {line}",
                        m.recipe.as_deref().unwrap_or("the recipe")
                    );
                }
            }
        }
        Command::Diff { a, b, json } => {
            let d = cairn::diff::diff(&a, &b)?;
            let code = i32::from(!d.identical());
            if json {
                print_json(&d)?;
                return Ok(code);
            }
            if d.identical() {
                println!("identical: {}", d.manifest.0);
                return Ok(0);
            }
            println!("manifest {} -> {}", d.manifest.0, d.manifest.1);
            // Layer and source changes name themselves ("layer 0", "source app").
            let sections = [
                ("config ", &d.config),
                ("", &d.layers),
                ("changed ", &d.files_changed),
                ("", &d.sources),
            ];
            for (label, changes) in sections {
                for c in changes {
                    println!("{label}{}: {} -> {}", c.what, c.a, c.b);
                }
            }
            for p in &d.files_added {
                println!("added {p}");
            }
            for p in &d.files_removed {
                println!("removed {p}");
            }
            return Ok(code);
        }
        Command::Inspect { layout, json } => {
            let report = inspect::inspect(&layout)?;
            if json {
                return print_json(&report);
            }
            for image in &report.images {
                println!(
                    "image {}",
                    image.ref_name.as_deref().unwrap_or("(untagged)")
                );
                println!("manifest {}", image.manifest_digest);
                println!("config {}", serde_json::to_string_pretty(&image.config)?);
                for r in &image.referrers {
                    println!("referrer {} {}", r.manifest_digest, r.artifact_type);
                }
                for layer in &image.layers {
                    println!(
                        "layer {} ({} bytes, {})",
                        layer.digest, layer.size, layer.media_type
                    );
                    for f in &layer.files {
                        println!("  {f}");
                    }
                }
            }
        }
    }
    Ok(0)
}
