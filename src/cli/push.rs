//! `cairn push DIR REF`: upload an OCI layout (image, SBOMs, attestations) to a
//! registry; also the `--push` of `cairn build`. Prints `REF@sha256:...`.

use super::registry::{self, PushProgress, RegistryArgs};
use super::unrecorded::Recorder;
use crate::{now_rfc3339, print_json};
use anyhow::{Context, Result};
use cairn::keys;
use cairn::registry::push::{push_layout, PushReport};
use cairn::registry::Reference;
use clap::Args;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Args)]
pub struct PushArgs {
    /// The OCI layout directory, e.g. out/hello.
    layout: PathBuf,
    /// Where to push: [HOST[:PORT]/]NAME[:TAG][@sha256:...], e.g.
    /// registry.example.com/team/hello:v1.
    reference: String,
    #[command(flatten)]
    push: PushFlags,
    /// Record the push in this audit ledger (signed with --ledger-key).
    #[arg(long, env = "CAIRN_LEDGER", value_name = "LOCATION")]
    ledger: Option<String>,
    /// Private key that signs the ledger entry.
    #[arg(long, env = "CAIRN_LEDGER_KEY", value_name = "KEY")]
    ledger_key: Option<PathBuf>,
    /// Who pushes (e.g. the CI job), recorded in the ledger.
    #[arg(long, env = "CAIRN_IDENTITY", default_value = "")]
    identity: String,
    /// Print one JSON object describing the push.
    #[arg(long)]
    json: bool,
    /// No progress or summary on stderr.
    #[arg(short, long)]
    quiet: bool,
}

/// Registry flags shared by `push` and `build --push`.
#[derive(Args, Clone)]
pub struct PushFlags {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Mount blobs the registry has in this repository (same registry) instead of
    /// uploading them, e.g. team/base.
    #[arg(long, value_name = "REPOSITORY")]
    pub mount_from: Option<String>,
}

pub fn run(args: PushArgs, cancel: Arc<AtomicBool>) -> Result<i32> {
    let key = args
        .ledger_key
        .as_deref()
        .map(keys::read_private)
        .transpose()?;
    let report = push(
        &args.layout,
        &args.reference,
        &args.push,
        args.quiet || args.json,
        cancel,
    )?;
    let unrecorded = match (&args.ledger, &key, &args.ledger_key) {
        (Some(ledger), Some(key), Some(key_path)) => {
            let mut recorder = Recorder::new(ledger, key, key_path, &args.identity);
            record(
                &mut recorder,
                &args.layout,
                &report,
                args.quiet || args.json,
            )?;
            recorder.unrecorded()
        }
        (Some(ledger), _, _) => {
            eprintln!(
                "warning: not recorded in the ledger {}: entries are signed; pass a signing key",
                cairn::ledger::backend::shown(ledger)
            );
            None
        }
        (None, _, _) => None,
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let (Some(unrecorded), Some(map)) = (&unrecorded, value.as_object_mut()) {
            map.insert(
                "ledger_error".to_string(),
                serde_json::to_value(unrecorded)?,
            );
        }
        print_json(&value)?;
    } else {
        println!("{}", report.reference);
    }
    Ok(match unrecorded {
        Some(unrecorded) => {
            unrecorded.report();
            1
        }
        None => 0,
    })
}

/// Pushes `layout` to `reference`; a summary on stderr unless `quiet`.
pub fn push(
    layout: &Path,
    reference: &str,
    flags: &PushFlags,
    quiet: bool,
    cancel: Arc<AtomicBool>,
) -> Result<PushReport> {
    let target: Reference = reference.parse()?;
    let client = registry::client(&flags.registry, &target, registry::WRITE_TIMEOUT)?;
    let observer = PushProgress::new(!quiet && std::io::stderr().is_terminal(), cancel);
    let report = push_layout(
        &client,
        layout,
        &target,
        flags.mount_from.as_deref(),
        &observer,
    )
    .with_context(|| format!("pushing {} to {target}", layout.display()))?;
    if !quiet {
        eprintln!(
            "pushed {} to {}: {} blob{} uploaded ({} bytes), {} already there, {} mounted",
            report.digest,
            target.repository_name(),
            report.blobs_uploaded,
            if report.blobs_uploaded == 1 { "" } else { "s" },
            report.bytes_uploaded,
            report.blobs_present,
            report.blobs_mounted
        );
        if !report.referrers.is_empty() {
            let mut how = match report.referrers_via {
                "referrers-api" => "the Referrers API".to_string(),
                _ => format!("the referrers tag {}", report.referrers_tags.join(", ")),
            };
            if !report.attestation_tags.is_empty() {
                how.push_str(&format!(
                    "; attestations also under cosign's {}",
                    report.attestation_tags.join(", ")
                ));
            }
            eprintln!("referrers: {} via {how}", report.referrers.len());
        }
    }
    Ok(report)
}

/// Records a `push` entry with `recorder` (kept there as a record command if the
/// ledger cannot take it).
pub fn record(
    recorder: &mut Recorder,
    layout: &Path,
    report: &PushReport,
    quiet: bool,
) -> Result<()> {
    let referrers: Vec<String> = report.referrers.iter().map(|d| d.to_string()).collect();
    let details = BTreeMap::from([
        ("reference".to_string(), report.reference.clone().into()),
        (
            "manifest_digest".to_string(),
            report.digest.to_string().into(),
        ),
        ("layout".to_string(), layout.display().to_string().into()),
        ("referrers".to_string(), serde_json::to_value(referrers)?),
        ("referrers_via".to_string(), report.referrers_via.into()),
    ]);
    if let Some(entry) = recorder.record(cairn::ledger::Action::Push, details, now_rfc3339()) {
        if !quiet {
            eprintln!(
                "ledger: recorded the push as entry {} in {}",
                entry.seq,
                cairn::ledger::backend::shown(recorder.ledger())
            );
        }
    }
    Ok(())
}
