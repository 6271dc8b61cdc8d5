//! What every registry command shares: the `--insecure` flag, credentials from the
//! environment (`CAIRN_REGISTRY_USERNAME` / `CAIRN_REGISTRY_PASSWORD`) and the Docker
//! config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`), and
//! progress bars for blob uploads.

use anyhow::{Context, Result};
use cairn::digest::Sha256Digest;
use cairn::registry::push::PushObserver;
use cairn::registry::{BlobPush, Client, ClientOptions, Credentials, Login};
use clap::Args;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Args, Clone)]
pub struct RegistryArgs {
    /// Talk plain HTTP to the registry. Allowed only for loopback hosts (localhost,
    /// 127.0.0.0/8, ::1), e.g. a local test registry.
    #[arg(long)]
    pub insecure: bool,
}

/// A client with the credentials the environment and the Docker config file give.
pub fn client(args: &RegistryArgs) -> Result<Client> {
    Ok(Client::new(ClientOptions {
        credentials: credentials()?,
        insecure: args.insecure,
        ..Default::default()
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

/// A progress bar per uploaded blob of 1 MiB or more, on stderr.
pub struct UploadBars {
    current: Mutex<Option<ProgressBar>>,
}

impl UploadBars {
    pub fn new() -> Self {
        UploadBars {
            current: Mutex::new(None),
        }
    }
}

impl PushObserver for UploadBars {
    fn blob_started(&self, digest: &Sha256Digest, size: u64) {
        if size < BAR_THRESHOLD {
            return;
        }
        let bar = ProgressBar::new(size);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12.bold} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(digest.hex()[..12].to_string());
        *self.current.lock().expect("progress lock") = Some(bar);
    }

    fn bytes_sent(&self, n: u64) {
        if let Some(bar) = &*self.current.lock().expect("progress lock") {
            bar.inc(n);
        }
    }

    fn blob_finished(&self, _digest: &Sha256Digest, outcome: BlobPush) {
        if let Some(bar) = self.current.lock().expect("progress lock").take() {
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
