//! The `cairn` command line: parses arguments, reads the environment (the only place
//! that does), and calls the library. Exit codes: 0 success, 1 failure (bad recipe,
//! bad input, I/O), 2 usage error, 130 interrupted.

mod progress;

use anyhow::{bail, Context, Result};
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
    match run(cli, cancel) {
        Ok(()) => {}
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
            std::process::exit(1);
        }
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
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

fn run(cli: Cli, cancel: Arc<AtomicBool>) -> Result<()> {
    match cli.command {
        Command::Build {
            recipe,
            out,
            locked,
            json,
            quiet,
            jobs,
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
            };
            let show_progress = !quiet && !json && std::io::stderr().is_terminal();
            let bars;
            let observer: &dyn Observer = if show_progress {
                bars = progress::Bars::new();
                &bars
            } else {
                &Quiet
            };
            let report = build::build(&recipe, &opts, observer)?;
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
            println!("{}", report.manifest_digest);
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
    Ok(())
}
