//! `cairn audit registry`: lists every manifest of a registry (or one repository)
//! that the ledger cannot explain, and every tag whose last verdict failed; exit 0
//! only if there is none. Meant for cron, behind the push hook.

use super::ledger::ledger_location;
use super::registry::{self, RegistryArgs};
use crate::print_json;
use anyhow::{Context, Result};
use cairn::audit::{self, LedgerFacts, Scope};
use cairn::keys;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check that the ledger explains every image in a registry: every manifest
    /// (each platform of an index) needs a build entry signed by a --key key, and no
    /// tag's last verdict may have failed. Referrers (SBOMs, attestations, the
    /// `sha256-<hex>` index, cosign `.att` and `.sig` tags) of an explained image
    /// count as explained. Exit 0 if everything is explained, 1 otherwise.
    Registry(RegistryAuditArgs),
}

#[derive(Args)]
struct RegistryAuditArgs {
    /// The registry, or one repository: HOST[:PORT][/REPOSITORY].
    #[arg(value_name = "HOST[:PORT][/REPO]")]
    scope: String,
    /// The audit ledger (a file or a postgres:// URL).
    #[arg(long, env = "CAIRN_LEDGER", value_name = "LOCATION")]
    ledger: Option<String>,
    /// Public key(s) whose ledger entries are trusted; others are skipped.
    #[arg(long = "key", value_name = "PUB", required = true)]
    keys: Vec<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
    #[arg(long)]
    json: bool,
}

/// Runs an audit; the exit code is 0 only if the ledger explains everything.
pub fn run(args: AuditArgs) -> Result<i32> {
    let AuditCommand::Registry(args) = args.command;
    let scope: Scope = args.scope.parse()?;
    let trusted = args
        .keys
        .iter()
        .map(|p| keys::read_public(p))
        .collect::<Result<Vec<_>, _>>()?;
    let location = ledger_location(args.ledger)?;
    let ledger = cairn::ledger::open(&location)?;
    let facts = LedgerFacts::read(&*ledger, &trusted)
        .with_context(|| format!("reading the ledger {}", ledger.location()))?;
    let reference = cairn::registry::Reference {
        registry: scope.registry.clone(),
        repository: scope.repository.clone().unwrap_or_default(),
        tag: None,
        digest: None,
    };
    let client = registry::client(&args.registry, &reference, registry::WRITE_TIMEOUT)?;
    let report = audit::audit(&client, &scope, &facts)
        .with_context(|| format!("walking the registry {}", scope.registry))?;
    if args.json {
        print_json(&report)?;
    } else {
        for f in &report.findings {
            let platform = f
                .platform_of
                .map(|index| format!(" (a platform of {index})"))
                .unwrap_or_default();
            println!(
                "unexplained: {}/{}:{}@{}{platform}: {}",
                report.registry, f.repository, f.tag, f.digest, f.reason
            );
        }
        if report.untrusted_entries > 0 {
            eprintln!(
                "note: {} ledger entr{} not signed by a --key key {} skipped",
                report.untrusted_entries,
                if report.untrusted_entries == 1 {
                    "y"
                } else {
                    "ies"
                },
                if report.untrusted_entries == 1 {
                    "was"
                } else {
                    "were"
                },
            );
        }
        let walked = format!(
            "{} manifest{} under {} tag{} in {} repositor{}",
            report.manifests,
            if report.manifests == 1 { "" } else { "s" },
            report.tags,
            if report.tags == 1 { "" } else { "s" },
            report.repositories,
            if report.repositories == 1 { "y" } else { "ies" },
        );
        if report.explained() {
            println!("explained: the ledger explains all {walked}");
        } else {
            println!(
                "NOT explained: {} finding{} among {walked}",
                report.findings.len(),
                if report.findings.len() == 1 { "" } else { "s" }
            );
        }
    }
    Ok(i32::from(!report.explained()))
}
