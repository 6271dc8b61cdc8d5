//! `cairn verify`: check what a layout claims (digests, signatures, provenance, SBOM,
//! policy, optionally a rebuild), print each check, and optionally record the verdict
//! in the ledger.

use super::registry::{self, RegistryArgs};
use super::unrecorded::Recorder;
use crate::{now_rfc3339, print_json, source_date_epoch};
use anyhow::{Context, Result};
use cairn::build::{
    self,
    context::{BuildHandles, BuildSettings, Quiet},
};
use cairn::digest::Sha256Digest;
use cairn::keys;
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
    /// The layout directory (e.g. out/hello), or, when no such path exists, a
    /// registry reference (e.g. registry.example.com/team/hello:v1 or ...@sha256:...).
    layout: PathBuf,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Trusted public key(s) (SPKI PEM or OpenSSH ssh-ed25519 line).
    #[arg(long = "key", value_name = "PUB", required = true)]
    keys: Vec<PathBuf>,
    /// A policy file (see the README: trusted signers, source digests and signers).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Rebuild this recipe and require the same manifest digest.
    #[arg(long, value_name = "RECIPE")]
    rebuild: Option<PathBuf>,
    #[command(flatten)]
    source_roots: super::source_roots::SourceRootArgs,
    /// Record the verdict in this audit ledger (signed with --ledger-key).
    #[arg(long, env = "CAIRN_LEDGER", value_name = "LOCATION")]
    ledger: Option<String>,
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
        source_roots,
        ledger,
        ledger_key,
        identity,
        json,
        registry: registry_args,
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
            let handles = BuildHandles {
                registry: registry::base_client(&recipe, &registry_args, registry::READ_TIMEOUT)?,
                cancel,
                sign_key: None,
                // An independent rebuild: nothing from earlier builds.
                cache: None,
                // The recipe's own `vm.secure_boot` key, if it names one.
                secure_boot: None,
            };
            let settings = BuildSettings {
                out_dir: scratch.path().to_path_buf(),
                format: Default::default(),
                docker_tags: Vec::new(),
                lock_mode: LockMode::Locked,
                jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
                source_date_epoch: source_date_epoch()?,
                clock: None,
                packages: crate::package_options(false)?,
                source_roots: source_roots.roots()?,
                strict: false,
            };
            let report = build::build(&recipe, &settings, &handles, &Quiet)?;
            if layout.is_file() {
                // A disk: compare the rebuilt disk of the same format.
                let ext = layout.extension().map(|e| e.to_string_lossy().into_owned());
                report
                    .disk
                    .and_then(|d| {
                        d.files
                            .into_iter()
                            .find(|f| Some(f.format) == ext.as_deref())
                            .map(|f| f.sha256.to_string())
                    })
                    .or_else(|| Some("none: the recipe builds no disk of this format".into()))
            } else {
                Some(report.manifest_digest.to_string())
            }
        }
        None => None,
    };
    // A registry reference: pulled with its referrers into a temporary layout.
    let (verdict, layout, reference) = match registry::remote_reference(&layout) {
        Some(reference) => {
            let client = registry::client(&registry_args, &reference, registry::READ_TIMEOUT)?;
            let remote = cairn::verify::verify_reference(
                &client,
                &reference,
                &trusted,
                &policy,
                rebuilt.as_deref(),
            )
            .with_context(|| {
                format!(
                    "fetching {reference} to verify it (no layout directory {} exists here)",
                    layout.display()
                )
            })?;
            let named = reference.with_digest(remote.digest);
            if !json {
                println!(
                    "image: {named} ({} referrer{} fetched)",
                    remote.referrers,
                    if remote.referrers == 1 { "" } else { "s" }
                );
            }
            (remote.verdict, layout, Some(named.to_string()))
        }
        None if layout.is_file() => (
            cairn::verify::disk::verify(&layout, &trusted, &policy, rebuilt.as_deref()),
            layout,
            None,
        ),
        None => (
            cairn::verify::verify(&layout, &trusted, &policy, rebuilt.as_deref()),
            layout,
            None,
        ),
    };
    // Read only when there is a ledger to sign for, as `$CAIRN_LEDGER_KEY` may be set
    // for other commands.
    let ledger_key = ledger_key
        .filter(|_| ledger.is_some())
        .map(|path| keys::read_private(&path).map(|key| (key, path)))
        .transpose()?;
    let unrecorded = match (&ledger, &ledger_key) {
        (Some(ledger), Some((key, key_path))) => {
            let failed: Vec<&str> = verdict
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name)
                .collect();
            let details = BTreeMap::from([
                ("image".to_string(), verdict.manifest_digest.clone().into()),
                match &reference {
                    Some(r) => ("reference".to_string(), r.clone().into()),
                    None => ("layout".to_string(), layout.display().to_string().into()),
                },
                ("verified".to_string(), verdict.verified.into()),
                ("failed_checks".to_string(), failed.into()),
                ("policy_sha256".to_string(), policy_sha256.into()),
            ]);
            let mut recorder = Recorder::new(ledger, key, key_path, &identity);
            if let Some(entry) =
                recorder.record(cairn::ledger::Action::Verify, details, now_rfc3339())
            {
                eprintln!(
                    "ledger: recorded the verdict as entry {} in {}",
                    entry.seq,
                    cairn::ledger::backend::shown(ledger)
                );
            }
            recorder.unrecorded()
        }
        (Some(ledger), None) => {
            eprintln!(
                "warning: not recorded in the ledger {}: entries are signed; pass --ledger-key",
                cairn::ledger::backend::shown(ledger)
            );
            None
        }
        (None, _) => None,
    };
    if json {
        let mut value = serde_json::to_value(&verdict)?;
        if let (Some(r), Some(map)) = (&reference, value.as_object_mut()) {
            map.insert("reference".to_string(), r.clone().into());
        }
        if let (Some(unrecorded), Some(map)) = (&unrecorded, value.as_object_mut()) {
            map.insert(
                "ledger_error".to_string(),
                serde_json::to_value(unrecorded)?,
            );
        }
        print_json(&value)?;
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
    if let Some(unrecorded) = &unrecorded {
        unrecorded.report();
    }
    Ok(i32::from(!verdict.verified || unrecorded.is_some()))
}
