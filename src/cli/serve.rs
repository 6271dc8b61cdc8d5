//! `cairn serve`: reads the keys, policy and certificates, opens the ledger, and runs
//! the service (`cairn::serve`) with its endpoints.

use super::ledger::ledger_location;
use super::registry::RegistryArgs;
use anyhow::{Context, Result};
use cairn::digest::Sha256Digest;
use cairn::keys;
use cairn::serve::events::{HookOptions, OnFail, PushHook};
use cairn::serve::{self, Clock, Routes, ServerOptions, Settings, TlsFiles};
use cairn::verify::Policy;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// Address and port to listen on, e.g. 0.0.0.0:8443 (TLS required) or
    /// 127.0.0.1:8080 (plain HTTP allowed); port 0 picks a free port (logged).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The ledger every entry is recorded in: a file, or a postgres:// URL.
    #[arg(long, env = "CAIRN_LEDGER", value_name = "LOCATION")]
    ledger: Option<String>,
    /// Private key that signs the entries.
    #[arg(long, env = "CAIRN_LEDGER_KEY", value_name = "KEY")]
    ledger_key: PathBuf,
    /// Public key(s) trusted to sign images' attestations (SPKI PEM or ssh-ed25519).
    #[arg(long = "key", value_name = "PUB", required = true)]
    keys: Vec<PathBuf>,
    /// The verification policy (as for `cairn verify`), with `require_digest` for
    /// admission.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The server's certificate chain (PEM); with --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The server's private key (PEM); with --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A file holding the shared secret registry notifications carry as
    /// `Authorization: Bearer <secret>`.
    #[arg(long, value_name = "FILE")]
    hook_secret_file: Option<PathBuf>,
    /// The environment admitted deployments are recorded for (e.g. prod).
    #[arg(long, value_name = "NAME")]
    env: Option<String>,
    /// The cluster admitted deployments are recorded for.
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Who records (recorded with the key id in every entry).
    #[arg(long, env = "CAIRN_IDENTITY", default_value = "cairn-serve")]
    identity: String,
    /// Seconds a client may take to send a request's header, to finish the TLS
    /// handshake, and to send the body.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    request_timeout: u64,
    /// What the push hook does with a pushed manifest that fails verification:
    /// `record` the verdict, or also `delete` the manifest (the registry must allow
    /// deletes).
    #[arg(long, value_name = "WHAT", default_value = "record", value_parser = ["record", "delete"])]
    on_fail: String,
    /// Pushes the hook holds for verification at most; a delivery beyond them is
    /// answered 503 and the registry sends it again.
    #[arg(long, value_name = "N", default_value_t = 256)]
    hook_queue: usize,
    /// Threads verifying and recording pushes.
    #[arg(long, value_name = "N", default_value_t = 2)]
    hook_workers: usize,
    /// Seconds an admission verdict on an image digest is reused before the image is
    /// verified again.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    verdict_ttl: u64,
}

/// Runs the service until SIGTERM; returns the exit code.
pub fn run(args: ServeArgs, clock: Clock) -> Result<i32> {
    let trusted = args
        .keys
        .iter()
        .map(|p| keys::read_public(p))
        .collect::<Result<Vec<_>, _>>()?;
    let ledger_key = keys::read_private(&args.ledger_key)?;
    let (policy, policy_sha256) = match &args.policy {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            (
                Policy::read(path)?,
                Some(Sha256Digest::of(&bytes).to_string()),
            )
        }
        None => (
            Policy {
                cairn_policy: 1,
                require_sbom: true,
                require_digest: true,
                ..Default::default()
            },
            None,
        ),
    };
    let hook_secret = args
        .hook_secret_file
        .as_deref()
        .map(|path| -> Result<String> {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the hook secret from {}", path.display()))?;
            let secret = text.trim().to_string();
            anyhow::ensure!(!secret.is_empty(), "{} is empty", path.display());
            Ok(secret)
        })
        .transpose()?;
    let location = ledger_location(args.ledger)?;
    let ledger = cairn::ledger::open(&location)?;
    let settings = Arc::new(Settings {
        ledger,
        ledger_key,
        identity: args.identity,
        trusted,
        policy,
        policy_sha256,
        env: args.env,
        cluster: args.cluster,
        registry: super::registry::service_client(&args.registry)?,
        hook_secret,
        clock,
    });
    let mut routes = Routes::new();
    let hook = PushHook::start(
        settings.clone(),
        HookOptions {
            queue: args.hook_queue,
            workers: args.hook_workers,
            on_fail: match args.on_fail.as_str() {
                "delete" => OnFail::Delete,
                _ => OnFail::Record,
            },
        },
    )
    .context("reading the event ids the push hook recorded")?;
    routes.insert((http::Method::POST, "/registry/events"), Arc::new(hook));
    routes.insert(
        (http::Method::GET, "/healthz"),
        Arc::new(serve::Healthz {
            settings: settings.clone(),
        }),
    );
    routes.insert(
        (http::Method::POST, "/admit"),
        Arc::new(serve::admit::Admit::new(settings.clone(), args.verdict_ttl)),
    );
    let options = ServerOptions {
        listen: args.listen,
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| TlsFiles { cert, key }),
        request_timeout: Duration::from_secs(args.request_timeout),
    };
    serve::run(options, routes)?;
    Ok(0)
}
