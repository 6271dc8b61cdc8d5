//! `cairn verify`: check what a layout claims (digests, signatures, provenance, SBOM,
//! policy, optionally a rebuild), print each check, and optionally record the verdict
//! in the ledger.

use super::ledger;
use crate::{now_rfc3339, print_json, source_date_epoch};
use anyhow::Result;
use cairn::attest::keys;
use cairn::build::{self, BuildOptions, Quiet};
use cairn::digest::Sha256Digest;
use cairn::recipe;
use cairn::resolve::LockMode;
use cairn::verify::Policy;
use clap::Args;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Args)]
pub struct VerifyArgs {
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
}

/// Verifies; exit code 0 only if every check passes.
pub fn run(args: VerifyArgs, cancel: Arc<AtomicBool>) -> Result<i32> {
    let VerifyArgs {
        layout,
        keys: key_paths,
        policy,
        rebuild,
        ledger,
        ledger_key,
        identity,
        json,
    } = args;
    let trusted = key_paths
        .iter()
        .map(|p| keys::read_public(p))
        .collect::<Result<Vec<_>, _>>()?;
    let policy_sha256 = policy
        .as_deref()
        .map(std::fs::read)
        .transpose()?
        .map(|b| Sha256Digest::of(&b).to_string());
    let policy = match policy {
        Some(p) => Policy::read(&p)?,
        None => Policy {
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
                packages: crate::package_options(false)?,
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
                let failed: Vec<&str> = verdict
                    .checks
                    .iter()
                    .filter(|c| !c.ok)
                    .map(|c| c.name)
                    .collect();
                let details = BTreeMap::from([
                    ("image".to_string(), verdict.manifest_digest.clone().into()),
                    ("layout".to_string(), layout.display().to_string().into()),
                    ("verified".to_string(), verdict.verified.into()),
                    ("failed_checks".to_string(), failed.into()),
                    ("policy_sha256".to_string(), policy_sha256.into()),
                ]);
                let entry = ledger::record_action(
                    ledger,
                    cairn::ledger::Action::Verify,
                    details,
                    &keys::read_private(key)?,
                    &identity,
                    now_rfc3339(),
                )?;
                eprintln!(
                    "ledger: recorded the verdict as entry {} in {}",
                    entry.seq,
                    ledger.display()
                );
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
    Ok(i32::from(!verdict.verified))
}
