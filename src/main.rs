//! The `cairn` command line: parses arguments, reads the environment (the binary is
//! the only place that does), and hands each command to its module under `cli/`,
//! which calls the library. Exit codes: 0 success, 1 failure (bad recipe, bad input,
//! I/O), 2 usage error, 130 interrupted.

mod cli;

use anyhow::{Context, Result};
use cairn::build::error::BuildError;
use cairn::diag::{Diagnose, Interrupted, Report};
use clap::{Parser, Subcommand};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

// jemalloc, not glibc's malloc: at a million files its tighter size classes for the
// many small paths and contents, and the memory it returns, lower the peak RSS by 9%
// and the CPU by a third (mimalloc: 5% higher). docs/speed.md, "A million small files".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Compile declarative YAML recipes, deterministically, into OCI images and VM disks.
///
/// The same recipe and the same input bytes give the same image, bit for bit, on any
/// machine, any day. Every input (sources, base images, Debian packages) is pinned by
/// SHA-256 (in the recipe or its .lock file); every file traces to a signed source.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about,
    after_help = "Examples:\n  cairn build recipes/hello.yaml          build out/hello/ (an OCI layout)\n  cairn build recipes/hello.yaml --locked --json   CI: pinned inputs only, JSON result\n  cairn inspect out/hello                 show manifest, config and files\n  skopeo inspect oci:out/hello:hello      any OCI tool reads the result\n  cairn build app.yaml --sign-key ci.key --push registry.example/app:v1\n                                          build, sign, push image + SBOMs + attestations\n  cairn verify registry.example/app:v1 --key ci.pub --policy policy.yaml\n                                          push-hook gate: refuse what does not verify"
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
    Build(cli::build::BuildArgs),
    /// The layer cache: `cairn cache info`, `cairn cache prune`.
    Cache(cli::cache::CacheArgs),
    /// Push an OCI layout (the image, its SBOMs and signed attestations) to a registry.
    ///
    /// Blobs first (skipping those the registry has, so an interrupted push resumes),
    /// then the manifest by digest, the referrers (Referrers API, or the
    /// `sha256-<hex>` tag schema, plus cosign's `sha256-<hex>.att`), and the tag last.
    /// Prints REF@sha256:... on stdout. Credentials: CAIRN_REGISTRY_USERNAME and
    /// CAIRN_REGISTRY_PASSWORD, or the Docker config file's `auths`.
    Push(cli::push::PushArgs),
    /// The audit ledger: who built, pushed, verified and deployed what, and when.
    Ledger(cli::ledger::LedgerArgs),
    /// Create an Ed25519 signing key pair: PREFIX.key (PKCS#8 PEM, mode 0600) and
    /// PREFIX.pub (SPKI PEM). Prints the key id (SHA-256 of the public key).
    Keygen(cli::keygen::KeygenArgs),
    /// Pin every source: write <recipe>.lock with each source's SHA-256.
    ///
    /// Sources pinned with `sha256:` in the recipe are checked, not re-pinned. The
    /// base image and the Debian packages keep their pins while they match the recipe;
    /// `--update` resolves them afresh (newer packages from the mirror). What changed
    /// is printed, pin by pin: `changed deb:libssl3: 3.0.11-1 amd64 -> 3.0.15-1 amd64`.
    Lock(cli::recipe::LockArgs),
    /// Parse and check a recipe without building it.
    Validate(cli::recipe::ValidateArgs),
    /// Check that an image proves what it claims: blob digests, attestation
    /// signatures, statement subjects, provenance, the SBOM against the layers, and an
    /// optional policy. Exit 0 only if every check passes.
    ///
    /// The image is a layout directory, or a registry reference (pulled with its
    /// referrers into a temporary layout first), e.g. for a push hook.
    Verify(cli::verify::VerifyArgs),
    /// Check a registry against the audit ledger: `cairn audit registry HOST[/REPO]`
    /// lists every image no signed build entry explains (a cron backstop for the push
    /// hook, whose notifications a registry may drop).
    Audit(cli::audit::AuditArgs),
    /// Show where a file in the image came from: its layer and digest, the source that
    /// supplied it (digest, signer) and the recipe line that put it there.
    ///
    /// WHAT is a path in the image (/usr/bin/hello) or the SHA-256 of a file found on a
    /// running system (sha256:<hex> or 64 hex digits).
    Trace(cli::inspect::TraceArgs),
    /// Show what differs between two image layouts: config, layers, files (added,
    /// removed, changed in content, mode, owner or link target) and sources, Debian
    /// packages by version.
    ///
    /// Given two lock files instead (`cairn diff old.lock app.lock`), lists every pin
    /// that differs: sources, base image, tools, repositories and package versions,
    /// what a security rebuild after `cairn lock --update` is reviewed by.
    ///
    /// Exit status as diff(1): 0 identical, 1 different, 2 trouble.
    Diff(cli::inspect::DiffArgs),
    /// Show an OCI layout: manifest, config, layers and the files in each.
    ///
    /// Every blob read is verified against its digest.
    Inspect(cli::inspect::InspectArgs),
    /// Run the service: the registry push hook (`POST /registry/events`), the
    /// Kubernetes admission webhook (`POST /admit`) and `GET /healthz`.
    ///
    /// Plain HTTP only on a loopback address; elsewhere --tls-cert and --tls-key.
    /// Logs are JSON lines on stderr. SIGTERM finishes the requests in flight, then
    /// stops.
    Serve(cli::serve::ServeArgs),
}

fn main() {
    let cli = Cli::parse();
    let cancel = Arc::new(AtomicBool::new(false));
    let handler_flag = cancel.clone();
    // First Ctrl-C: stop cleanly (nothing is published). Second: stop now. The service
    // handles its own signals (it drains its requests).
    if !matches!(cli.command, Command::Serve(_)) {
        let _ = ctrlc::set_handler(move || {
            if handler_flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        });
    }
    let is_diff = matches!(cli.command, Command::Diff(_));
    match run(cli.command, cancel) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if e.chain().any(|cause| cause.is::<Interrupted>()) {
                eprintln!("cairn: {e}");
                std::process::exit(130);
            }
            let diagnoses: Vec<&dyn Diagnose> = e.chain().filter_map(diagnosis).collect();
            let message = chain_message(&e);
            let report = Report {
                message: &message,
                location: diagnoses.iter().find_map(|d| d.location()),
                hint: diagnoses.iter().find_map(|d| d.hint()),
            };
            eprintln!("{report}");
            std::process::exit(if is_diff { 2 } else { 1 });
        }
    }
}

/// The error chain as `outer: inner: ...`, each message once. Many errors quote their
/// source in their own message (`cannot write {path}: {source}`) and also return it as
/// `source()`, so printing every cause, as `{:#}` does, would repeat the innermost
/// message once per level (ENOSPC three times): a cause whose message the text so far
/// already holds is left out.
fn chain_message(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// The hint and location of a library error in an error chain, found by its type;
/// an error answers for the errors it wraps.
fn diagnosis<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Diagnose> {
    macro_rules! first_of {
        ($($error:ty),+ $(,)?) => {
            None$(.or_else(|| cause.downcast_ref::<$error>().map(|e| e as &dyn Diagnose)))+
        };
    }
    first_of!(
        BuildError,
        cairn::recipe::Diagnostic,
        cairn::resolve::ResolveError,
        cairn::resolve::containment::ContainmentError,
        cairn::resolve::lock::LockError,
        cairn::resolve::signature::SignatureError,
        cairn::debian::DebianError,
        cairn::base::BaseError,
        cairn::base::fs::BaseFsError,
        cairn::snapshot::archive::ArchiveError,
        cairn::snapshot::limits::LimitError,
        cairn::resolve::base::PinError,
        cairn::layers::LayerError,
        cairn::layers::TreeError,
        cairn::layers::tar::TarError,
        cairn::disk::DiskError,
        cairn::disk::tools::ToolError,
        cairn::disk::secure_boot::SecureBootError,
        cairn::registry::RegistryError,
        cairn::ledger::StoreError,
        cairn::ledger::pg::DatabaseError,
        cairn::serve::ServeError,
    )
}

/// Runs the command; returns the exit code.
fn run(command: Command, cancel: Arc<AtomicBool>) -> Result<i32> {
    match command {
        Command::Build(args) => cli::build::run(args, cancel),
        Command::Cache(args) => cli::cache::run(args),
        Command::Ledger(args) => cli::ledger::run(args, now_rfc3339()),
        Command::Keygen(args) => cli::keygen::run(args),
        Command::Push(args) => cli::push::run(args, cancel),
        Command::Lock(args) => cli::recipe::lock(args),
        Command::Validate(args) => cli::recipe::validate(args),
        Command::Verify(args) => cli::verify::run(args, cancel),
        Command::Audit(args) => cli::audit::run(args),
        Command::Trace(args) => cli::inspect::trace(args),
        Command::Diff(args) => cli::inspect::diff(args),
        Command::Inspect(args) => cli::inspect::inspect(args),
        Command::Serve(args) => cli::serve::run(args, Arc::new(wall_clock)),
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<i32> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(0)
}

/// Wall-clock UTC for ledger entries (audit records carry real time; images do not).
fn now_rfc3339() -> String {
    cairn::oci::time::rfc3339(wall_clock())
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

/// What Debian packages need from the host: the cache directory
/// (`$XDG_CACHE_HOME/cairn`, else `~/.cache/cairn`), the clock, and the host's apt
/// configuration ([`host_apt`]) for `mirror: host`.
fn package_options(offline: bool) -> Result<cairn::debian::PackageOptions> {
    let cache_dir = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => std::path::PathBuf::from(dir).join("cairn"),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => std::path::PathBuf::from(home).join(".cache/cairn"),
            None => anyhow::bail!("cannot find a cache directory: set XDG_CACHE_HOME or HOME"),
        },
    };
    let (host_sources, host_valid_until_off) = host_apt();
    Ok(cairn::debian::PackageOptions {
        cache_dir,
        now: wall_clock(),
        host_sources,
        host_valid_until_off,
        offline,
    })
}

/// The host's apt configuration, read as apt reads it: the file `$APT_CONFIG` names
/// (if any), then `apt.conf.d/` by file name, then `apt.conf`, in the directory
/// `Dir::Etc` names (`/etc/apt`); the last setting of an option wins. Returns the
/// `deb` sources and, if `Acquire::Check-Valid-Until` ends up false, the file that
/// said so.
fn host_apt() -> (
    Vec<cairn::debian::apt_sources::HostSource>,
    Option<std::path::PathBuf>,
) {
    use cairn::debian::apt_conf::{assignments, boolean, last, CHECK_VALID_UNTIL};
    use std::path::{Path, PathBuf};
    let read = |file: &Path| std::fs::read_to_string(file).ok().map(|t| assignments(&t));
    let from_env: Option<(PathBuf, Vec<(String, String)>)> = std::env::var_os("APT_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .and_then(|file| Some((file.clone(), read(&file)?)));
    let configured = |option: &str| {
        from_env
            .as_ref()
            .and_then(|(_, a)| last(a, option).map(str::to_string))
    };
    let root = PathBuf::from(configured("Dir").unwrap_or_else(|| "/".into()));
    let etc = root.join(configured("Dir::Etc").unwrap_or_else(|| "etc/apt".into()));

    let mut files = sorted_files(&etc.join("apt.conf.d"), |name| {
        // apt skips names with other characters and extensions other than `.conf`.
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            && name.rsplit_once('.').is_none_or(|(_, ext)| ext == "conf")
    });
    files.push(etc.join("apt.conf"));
    let configs = from_env.into_iter().chain(
        files
            .into_iter()
            .filter_map(|f| Some((f.clone(), read(&f)?))),
    );
    let mut valid_until_off = None;
    for (file, settings) in configs {
        match last(&settings, CHECK_VALID_UNTIL).and_then(boolean) {
            Some(false) => valid_until_off = Some(file),
            Some(true) => valid_until_off = None,
            None => {}
        }
    }
    (host_apt_sources(&etc), valid_until_off)
}

/// The files of `dir` whose names `wanted` accepts, sorted by name.
fn sorted_files(dir: &std::path::Path, wanted: impl Fn(&str) -> bool) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&wanted))
        .collect();
    files.sort();
    files
}

/// The `deb` sources of the host's apt configuration below `etc_apt`, in the order
/// apt reads them (sources.list, then sources.list.d/ by file name).
fn host_apt_sources(etc_apt: &std::path::Path) -> Vec<cairn::debian::apt_sources::HostSource> {
    use cairn::debian::apt_sources::parse;
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string(etc_apt.join("sources.list")) {
        out.extend(parse(&text, false));
    }
    for file in sorted_files(&etc_apt.join("sources.list.d"), |_| true) {
        let deb822 = match file.extension().and_then(|e| e.to_str()) {
            Some("sources") => true,
            Some("list") => false,
            _ => continue,
        };
        if let Ok(text) = std::fs::read_to_string(&file) {
            out.extend(parse(&text, deb822));
        }
    }
    out
}
