//! What every registry command shares: the `--insecure` flag, the deadlines
//! (`--timeout`, `--stall-timeout`), credentials from the
//! environment (`CAIRN_REGISTRY_USERNAME` / `CAIRN_REGISTRY_PASSWORD`) and the Docker
//! config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`: `auths`,
//! else its credential helper), and progress bars for blob uploads.

use anyhow::{Context, Result};
use cairn::digest::Sha256Digest;
use cairn::registry::deadline::{self, Deadlines};
use cairn::registry::push::PushObserver;
use cairn::registry::{BlobPush, Client, ClientOptions, Credentials, Login, Reference};
use clap::Args;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Args, Clone)]
pub struct RegistryArgs {
    /// Talk plain HTTP to the registry. Allowed only for loopback hosts (localhost,
    /// 127.0.0.0/8, ::1), e.g. a local test registry.
    #[arg(long)]
    pub insecure: bool,
    /// The most time the command may spend waiting on registries, all requests
    /// together (e.g. 90s, 10m, 1h); time spent building does not count. Default:
    /// 10m for build, push, lock and audit; 5m for verify, trace and each of serve's
    /// verifications.
    #[arg(long, value_name = "DURATION", value_parser = deadline::parse_duration)]
    pub timeout: Option<Duration>,
    /// A request fails when it waits this long to connect, for any read or write, or
    /// for the answer's headers, or when it moves fewer than 1 KiB in this long.
    #[arg(long, value_name = "DURATION", value_parser = deadline::parse_duration, default_value = "30s")]
    pub stall_timeout: Duration,
}

/// The default `--timeout` of commands that write to a registry or walk it (build,
/// push, lock, audit).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(600);
/// The default `--timeout` of commands that read one image (verify, trace, and each
/// verification `cairn serve` makes).
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

impl RegistryArgs {
    /// The client options these flags ask for; `default_timeout` when no
    /// `--timeout` is given.
    fn options(&self, credentials: Credentials, default_timeout: Duration) -> ClientOptions {
        ClientOptions {
            credentials,
            insecure: self.insecure,
            deadlines: Deadlines {
                stall: self.stall_timeout,
                overall: Some(self.timeout.unwrap_or(default_timeout)),
                ..Deadlines::default()
            },
            ..Default::default()
        }
    }
}

/// A client for `image`'s registry with the credentials the environment, the Docker
/// config file or its credential helper give.
pub fn client(args: &RegistryArgs, image: &Reference, default_timeout: Duration) -> Result<Client> {
    let mut credentials = credentials()?;
    if let Some(helper) = credentials.helper_for(&image.registry) {
        if let Some(login) = run_helper(helper, &image.registry)? {
            credentials
                .per_registry
                .insert(image.registry.clone(), login);
        }
    }
    Ok(Client::new(args.options(credentials, default_timeout)))
}

/// A client for whatever registry a long-running service is asked about (`cairn
/// serve`), with the credentials the environment and the Docker config file's `auths`
/// give; a credential helper is not run, as the registry is not known in advance.
/// Its overall deadline is per verification ([`Client::for_one_operation`]).
pub fn service_client(args: &RegistryArgs) -> Result<Client> {
    Ok(Client::new(args.options(credentials()?, READ_TIMEOUT)))
}

/// A client for the recipe's `ref:` base image, if it has one.
pub fn base_client(
    recipe: &cairn::recipe::Recipe,
    args: &RegistryArgs,
    default_timeout: Duration,
) -> Result<Option<Client>> {
    match &recipe.base {
        Some(cairn::recipe::BaseSpec {
            source: cairn::recipe::BaseSource::Registry(image),
            ..
        }) => {
            let reference = Reference {
                registry: image.registry.clone(),
                repository: image.repository.clone(),
                tag: image.tag.clone(),
                digest: None,
            };
            client(args, &reference, default_timeout).map(Some)
        }
        _ => Ok(None),
    }
}

/// The argument as a registry reference, if it is not an existing path and parses as
/// one (`cairn verify` and `cairn trace` take either).
pub fn remote_reference(arg: &std::path::Path) -> Option<Reference> {
    if arg.exists() {
        return None;
    }
    arg.to_str()?.parse().ok()
}

/// `docker-credential-<helper> get` with the server URL on stdin, as docker runs it:
/// `{"Username": ..., "Secret": ...}`, or no login if the helper has none.
fn run_helper(helper: &str, registry: &str) -> Result<Option<Login>> {
    use std::io::Write;
    let program = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| {
            format!(
                "running the Docker credential helper {program} (named by the Docker config file) for {registry}; install it, or set CAIRN_REGISTRY_USERNAME and CAIRN_REGISTRY_PASSWORD"
            )
        })?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(Credentials::helper_server_url(registry).as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout);
        // The helpers' protocol: "credentials not found in native keychain" on stdout.
        if said.contains("credentials not found") {
            return Ok(None);
        }
        anyhow::bail!(
            "the Docker credential helper {program} failed for {registry}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    #[derive(serde::Deserialize)]
    struct HelperAnswer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{program} did not answer with credentials JSON"))?;
    if answer.username == "<token>" {
        anyhow::bail!(
            "{program} gave an identity token for {registry}, which cairn does not support yet; set CAIRN_REGISTRY_USERNAME and CAIRN_REGISTRY_PASSWORD"
        );
    }
    Ok(Some(Login {
        username: answer.username,
        password: answer.secret,
    }))
}

/// `CAIRN_REGISTRY_USERNAME`/`_PASSWORD` (for any registry), then the Docker config
/// file's `auths`.
fn credentials() -> Result<Credentials> {
    let config_path = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir).join("config.json")),
        _ => std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json")),
    };
    let mut credentials = match config_path {
        Some(path) => match std::fs::read(&path) {
            Ok(bytes) => Credentials::from_docker_config(&bytes)
                .with_context(|| format!("reading registry credentials from {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Credentials::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        },
        None => Credentials::default(),
    };
    match (
        std::env::var("CAIRN_REGISTRY_USERNAME"),
        std::env::var("CAIRN_REGISTRY_PASSWORD"),
    ) {
        (Ok(username), Ok(password)) if !username.is_empty() => {
            credentials.any_registry = Some(Login { username, password });
        }
        (Ok(u), Err(_)) if !u.is_empty() => {
            anyhow::bail!("CAIRN_REGISTRY_USERNAME is set but CAIRN_REGISTRY_PASSWORD is not")
        }
        _ => {}
    }
    Ok(credentials)
}

/// Blobs smaller than this get no progress bar.
const BAR_THRESHOLD: u64 = 1 << 20;

/// A progress bar per uploaded blob of 1 MiB or more, on stderr (several at once:
/// blobs upload concurrently), when `show`; stops the push on Ctrl-C either way.
pub struct PushProgress {
    show: bool,
    cancel: Arc<AtomicBool>,
    multi: MultiProgress,
    bars: Mutex<HashMap<Sha256Digest, ProgressBar>>,
}

impl PushProgress {
    pub fn new(show: bool, cancel: Arc<AtomicBool>) -> Self {
        PushProgress {
            show,
            cancel,
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl PushObserver for PushProgress {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    fn blob_started(&self, digest: &Sha256Digest, size: u64) {
        if !self.show || size < BAR_THRESHOLD {
            return;
        }
        let bar = self.multi.add(ProgressBar::new(size));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(digest.hex()[..12].to_string());
        self.bars
            .lock()
            .expect("progress lock")
            .insert(*digest, bar);
    }

    fn bytes_sent(&self, digest: &Sha256Digest, n: u64) {
        if let Some(bar) = self.bars.lock().expect("progress lock").get(digest) {
            bar.inc(n);
        }
    }

    fn blob_finished(&self, digest: &Sha256Digest, outcome: BlobPush) {
        if let Some(bar) = self.bars.lock().expect("progress lock").remove(digest) {
            bar.finish_with_message(format!(
                "{} {}",
                HumanBytes(bar.length().unwrap_or(0)),
                match outcome {
                    BlobPush::Uploaded => "uploaded",
                    BlobPush::Mounted => "mounted",
                    BlobPush::Present => "present",
                }
            ));
        }
    }
}
