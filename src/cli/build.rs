//! `cairn build`: compile a recipe into an OCI layout, with progress on a terminal,
//! optional stage timings, and an optional signed ledger entry.

use super::progress;
use super::push::{self as push_cmd, PushFlags};
use super::unrecorded::{Recorder, Unrecorded};
use crate::{now_rfc3339, package_options, print_json, source_date_epoch, wall_clock};
use anyhow::{bail, Context, Result};
use cairn::build::context::{BuildHandles, BuildSettings, Observer, Quiet};
use cairn::build::{self, names::SBOM_DIR, report::BuildReport};
use cairn::digest::Sha256Digest;
use cairn::keys;
use cairn::recipe;
use cairn::remote_cache::RemoteCache;
use cairn::resolve::LockMode;
use clap::Args;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Args)]
pub struct BuildArgs {
    /// The recipe file (YAML, `cairn: 1`).
    recipe: PathBuf,
    /// Directory that receives <name>/ (the OCI layout).
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
    /// Output format: `oci` (a layout directory OUT/<name>/), `oci-archive` (that
    /// layout as one tar, OUT/<name>.tar) or `docker-archive` (a `docker save`
    /// tarball for `docker load` / `podman load`, OUT/<name>.tar).
    #[arg(long, default_value = "oci", value_name = "FORMAT")]
    format: cairn::output::archive::OutputFormat,
    /// A name for the image in a docker-archive, NAME[:TAG] (e.g. team/hello:v1; the
    /// tag defaults to latest); repeat for several. Default: <recipe name>:latest.
    #[arg(long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<cairn::output::archive::DockerTag>,
    /// Fail unless every source is pinned and the lock file is up to date (for CI).
    #[arg(long)]
    locked: bool,
    /// Refuse, rather than warn about, an image holding files its platform cannot run
    /// (an ELF binary for another machine, e.g. arm64 in an amd64 image).
    #[arg(long)]
    strict: bool,
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
    #[arg(long, env = "CAIRN_LEDGER", value_name = "LOCATION")]
    ledger: Option<String>,
    /// Who builds (e.g. the CI job), recorded in the ledger.
    #[arg(long, env = "CAIRN_IDENTITY", default_value = "")]
    identity: String,
    /// Record the build's wall-clock start and finish in the provenance
    /// (startedOn/finishedOn). Off by default: they make attestations differ per run.
    #[arg(long)]
    record_times: bool,
    /// Write every layer anew: neither read nor fill the layer cache.
    #[arg(long, env = "CAIRN_NO_CACHE", value_parser = clap::builder::FalseyValueParser::new())]
    no_cache: bool,
    #[command(flatten)]
    cache_dir: super::cache::CacheDirArg,
    /// Share the layer cache through this registry repository (e.g.
    /// registry.example/team/cairn-cache): layers missing locally are fetched from it,
    /// layers built or found locally are pushed to it. Uses --insecure and the registry
    /// credentials as `cairn push` does.
    #[arg(long, value_name = "REF", conflicts_with = "no_cache")]
    cache_registry: Option<String>,
    /// After the build, push the layout (image, SBOMs, attestations) to this registry
    /// reference, as `cairn push` does; prints REF@sha256:... after the digest.
    #[arg(long, value_name = "REF")]
    push: Option<String>,
    #[command(flatten)]
    push_flags: PushFlags,
    /// Never use the network: Debian packages, indexes and InRelease files must be in
    /// the cache (filled by an earlier build).
    #[arg(long)]
    offline: bool,
    #[command(flatten)]
    source_roots: super::source_roots::SourceRootArgs,
    /// Sign the unified kernel image of a `boot: uefi` disk for Secure Boot with this
    /// RSA private key (PEM), in place of the recipe's `vm.secure_boot`; needs
    /// --secure-boot-cert. The key goes into no output.
    #[arg(long, value_name = "KEY", requires = "secure_boot_cert")]
    secure_boot_key: Option<PathBuf>,
    /// The X.509 certificate (PEM or DER) of --secure-boot-key, the one enrolled in
    /// the firmware's db; its SHA-256 goes into the provenance.
    #[arg(long, value_name = "CERT", requires = "secure_boot_key")]
    secure_boot_cert: Option<PathBuf>,
}

/// Builds; prints the manifest digest on stdout (or the JSON report) and the summary
/// on stderr. Returns the exit code.
pub fn run(args: BuildArgs, cancel: Arc<AtomicBool>) -> Result<i32> {
    let BuildArgs {
        recipe,
        out,
        format,
        tags,
        locked,
        strict,
        json,
        quiet,
        jobs,
        sign_key,
        timings,
        ledger,
        identity,
        record_times,
        no_cache,
        cache_dir,
        cache_registry,
        push,
        push_flags,
        offline,
        source_roots,
        secure_boot_key,
        secure_boot_cert,
    } = args;
    if push.is_some() && format.is_archive() {
        bail!("--push sends the layout directory to the registry: build with --format oci (the default) to push");
    }
    if !tags.is_empty() && format != cairn::output::archive::OutputFormat::DockerArchive {
        bail!("--tag names the image in a docker-archive: add --format docker-archive (an OCI layout keeps its tag in index.json, and `cairn push REF` names the pushed image)");
    }
    if push.is_none() && push_flags.mount_from.is_some() {
        bail!("--mount-from applies to --push REF, which is missing");
    }
    let recipe = recipe::load(&recipe)?;
    let talks_to_registry = push.is_some()
        || cache_registry.is_some()
        || matches!(
            &recipe.base,
            Some(cairn::recipe::BaseSpec {
                source: cairn::recipe::BaseSource::Registry(_),
                ..
            })
        );
    if push_flags.registry.insecure && !talks_to_registry {
        bail!("--insecure applies to a registry this build talks to (--push, --cache-registry or a `ref:` base), and there is none");
    }
    let jobs = match jobs {
        Some(0) => bail!("--jobs must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // Built in this order so that the first bad flag is the one reported.
    let registry = super::registry::base_client(
        &recipe,
        &push_flags.registry,
        super::registry::WRITE_TIMEOUT,
    )?;
    let source_date_epoch = source_date_epoch()?;
    let secure_boot = match (&secure_boot_key, &secure_boot_cert) {
        (Some(key), Some(cert)) => {
            if !matches!(&recipe.vm, Some(vm) if vm.boot == cairn::recipe::BootMode::Uefi) {
                bail!("--secure-boot-key signs the unified kernel image of a `vm: {{ boot: uefi }}` disk, and {} builds none", recipe.file.path.display());
            }
            Some(cairn::disk::secure_boot::SecureBootKey::read(
                Path::new(""),
                key,
                cert,
            )?)
        }
        _ => None,
    };
    let sign_key_path = sign_key;
    let sign_key = sign_key_path
        .as_deref()
        .map(keys::read_private)
        .transpose()?;
    let cache = if no_cache {
        None
    } else {
        let cache = cache_dir.open()?.with_program(program_identity());
        Some(match &cache_registry {
            Some(reference) => {
                let reference: cairn::registry::Reference = reference
                    .parse()
                    .with_context(|| format!("--cache-registry {reference}"))?;
                cache.with_remote(RemoteCache::new(
                    super::registry::client(
                        &push_flags.registry,
                        &reference,
                        super::registry::WRITE_TIMEOUT,
                    )?,
                    reference,
                ))
            }
            None => cache,
        })
    };
    let settings = BuildSettings {
        out_dir: out,
        format,
        docker_tags: tags,
        lock_mode: if locked {
            LockMode::Locked
        } else {
            LockMode::PinMissing
        },
        jobs,
        source_date_epoch,
        clock: record_times.then_some(wall_clock as fn() -> u64),
        packages: package_options(offline)?,
        source_roots: source_roots.roots()?,
        strict,
    };
    let handles = BuildHandles {
        cancel,
        sign_key,
        registry,
        cache,
        secure_boot,
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
    let report = build::build(&recipe, &settings, &handles, &clock)?;
    let mut recorder = match (&ledger, &handles.sign_key, &sign_key_path) {
        (Some(ledger), Some(key), Some(key_path)) => {
            Some(Recorder::new(ledger, key, key_path, &identity))
        }
        (Some(ledger), _, _) => {
            eprintln!(
                "warning: not recorded in the ledger {}: entries are signed; pass --sign-key",
                cairn::ledger::backend::shown(ledger)
            );
            None
        }
        (None, _, _) => None,
    };
    if let (Some(recorder), Some(ledger)) = (&mut recorder, &ledger) {
        let details = build_details(&recipe, &report)?;
        if let Some(entry) = recorder.record(cairn::ledger::Action::Build, details, now_rfc3339()) {
            if !quiet && !json {
                eprintln!(
                    "ledger: recorded build as entry {} in {}",
                    entry.seq,
                    cairn::ledger::backend::shown(ledger)
                );
            }
        }
    }
    let pushed = match &push {
        Some(reference) => {
            let pushed = match push_cmd::push(
                &report.layout,
                reference,
                &push_flags,
                quiet || json,
                handles.cancel.clone(),
            ) {
                Ok(pushed) => pushed,
                Err(e) => {
                    // The build entry not recorded must not be lost behind the push error.
                    if let Some(unrecorded) = recorder.and_then(Recorder::unrecorded) {
                        unrecorded.report();
                    }
                    return Err(e);
                }
            };
            if let Some(recorder) = &mut recorder {
                push_cmd::record(recorder, &report.layout, &pushed, quiet || json)?;
            }
            Some(pushed)
        }
        None => None,
    };
    let unrecorded = recorder.and_then(Recorder::unrecorded);
    if timings {
        for (stage, took) in clock.finish() {
            eprintln!("timing: {stage} {:.3}", took.as_secs_f64());
        }
        eprintln!(
            "hashing: SHA-256 and SHA-1 with {}",
            cairn::digest::sha_implementation()
        );
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if json {
        let mut value = serde_json::to_value(&report)?;
        if let (Some(pushed), Some(map)) = (&pushed, value.as_object_mut()) {
            map.insert("push".to_string(), serde_json::to_value(pushed)?);
        }
        if let (Some(unrecorded), Some(map)) = (&unrecorded, value.as_object_mut()) {
            map.insert(
                "ledger_error".to_string(),
                serde_json::to_value(unrecorded)?,
            );
        }
        print_json(&value)?;
        return Ok(exit_code(unrecorded));
    }
    if !quiet {
        if report.images.is_empty() {
            let n = report.layers.len();
            eprintln!(
                "built {} ({}, {n} layer{}) at {}",
                report.name,
                report.platform,
                if n == 1 { "" } else { "s" },
                report.layout.display()
            );
        } else {
            eprintln!(
                "built {} (image index over {}) at {}",
                report.name,
                report
                    .images
                    .iter()
                    .map(|i| i.platform.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                report.layout.display()
            );
            for i in &report.images {
                eprintln!("  {} {}", i.platform, i.manifest_digest);
            }
        }
        let paths: Vec<String> = if report.images.is_empty() {
            vec![format!(
                "{} {}",
                report.spdx.display(),
                report.cyclonedx.display()
            )]
        } else {
            report
                .images
                .iter()
                .map(|i| format!("{} {}", i.spdx.display(), i.cyclonedx.display()))
                .collect()
        };
        let mut sboms = format!("sbom: {}", paths.join(" "));
        if report.sbom_embedded {
            sboms.push_str(&format!(" (also in the image under {})", SBOM_DIR));
        }
        eprintln!("{sboms}");
        match (&report.attestations, &report.signed_by) {
            (Some(path), Some(key)) => {
                eprintln!("attestations: {} (signed by {key})", path.display())
            }
            _ => eprintln!("attestations: none (pass --sign-key to sign provenance)"),
        }
        if let Some(disk) = &report.disk {
            let replayed = if disk.cached {
                ", replayed from the layer cache"
            } else {
                ""
            };
            for f in &disk.files {
                eprintln!(
                    "disk: {} {} ({} bytes{replayed})",
                    f.path.display(),
                    f.sha256,
                    f.size
                );
            }
            eprintln!("{}", disk.run_hint());
            if let Some(path) = &disk.attestations {
                eprintln!("disk attestations: {}", path.display());
            }
        }
    }
    println!("{}", report.manifest_digest);
    if let Some(pushed) = &pushed {
        println!("{}", pushed.reference);
    }
    Ok(exit_code(unrecorded))
}

/// 0, or 1 after reporting the entries that the ledger did not record.
fn exit_code(unrecorded: Option<Unrecorded>) -> i32 {
    match unrecorded {
        Some(unrecorded) => {
            unrecorded.report();
            1
        }
        None => 0,
    }
}

/// What a `build` ledger entry says about the build.
fn build_details(
    recipe: &recipe::Recipe,
    report: &BuildReport,
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
    let mut details = BTreeMap::from([
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
    ]);
    if let Some(disk) = &report.disk {
        // So that `ledger show --roothash`/`trace --roothash` and a deployment of the
        // disk (by digest or root hash) lead back to this build.
        let files: BTreeMap<&str, String> = disk
            .files
            .iter()
            .map(|f| (f.format, f.sha256.to_string()))
            .collect();
        let mut recorded = serde_json::json!({ "files": files });
        if let Some(verity) = &disk.verity {
            recorded["roothash"] = verity.roothash.clone().into();
        }
        details.insert("disk".to_string(), recorded);
    }
    if let Some(base) = &report.base {
        details.insert(
            "base".to_string(),
            serde_json::json!({
                "reference": base.reference,
                "manifest_digest": base.manifest_digest.to_string(),
                "pinned": base.pinned.to_string(),
            }),
        );
    }
    Ok(details)
}

/// The running executable as the file system sees it (size, inode, mtime): image
/// records in the cache are replayed only by the program that stored them. Empty if
/// it cannot be read, which leaves the cairn version to tell programs apart.
fn program_identity() -> String {
    use std::os::unix::fs::MetadataExt;
    std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| {
            format!(
                "{} {} {}.{:09}",
                m.len(),
                m.ino(),
                m.mtime(),
                m.mtime_nsec()
            )
        })
        .unwrap_or_default()
}
