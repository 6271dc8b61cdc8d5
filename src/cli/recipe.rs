//! `cairn lock` and `cairn validate`: work on a recipe without building it.

use super::registry::RegistryArgs;
use crate::print_json;
use anyhow::Result;
use cairn::{build, recipe};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct LockArgs {
    recipe: PathBuf,
    /// Resolve the base image's reference and the Debian packages afresh, taking the
    /// newest versions the mirror offers now (a security rebuild), instead of keeping
    /// the lock's pins while they still match the recipe. Prints what changed.
    #[arg(long)]
    update: bool,
    #[arg(long)]
    json: bool,
    /// For a `ref:` base image: how to reach its registry.
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    source_roots: super::source_roots::SourceRootArgs,
}

#[derive(Args)]
pub struct ValidateArgs {
    recipe: PathBuf,
    #[arg(long)]
    json: bool,
}

/// Pins every source into <recipe>.lock; prints each source's kind and SHA-256, then
/// (on stderr) what changed from the lock as it was.
pub fn lock(args: LockArgs) -> Result<i32> {
    let recipe = recipe::load(&args.recipe)?;
    let client =
        super::registry::base_client(&recipe, &args.registry, super::registry::WRITE_TIMEOUT)?;
    let report = build::lock(
        &recipe,
        args.update,
        client.as_ref(),
        &crate::package_options(false)?,
        &args.source_roots.roots()?,
    )?;
    if args.json {
        return print_json(&report);
    }
    for (name, s) in &report.sources.sources {
        println!("{name}\t{}\t{}", s.kind, s.sha256);
    }
    if let Some(base) = &report.sources.base {
        println!("base\t{}\t{}", base.reference, base.digest);
    }
    for (platform, section) in report.sources.packages.iter().flat_map(|p| p.sections()) {
        let at = platform.map(|p| format!("@{p}")).unwrap_or_default();
        for (name, p) in &section.packages {
            println!(
                "deb:{name}{at}\t{} {}\t{}",
                p.version, p.architecture, p.sha256
            );
        }
    }
    for c in &report.changes {
        eprintln!("changed {}: {} -> {}", c.what, c.old, c.new);
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
    Ok(0)
}

/// Parses and checks the recipe; says how many sources and layers it has.
pub fn validate(args: ValidateArgs) -> Result<i32> {
    let recipe = recipe::load(&args.recipe)?;
    if args.json {
        return print_json(&serde_json::json!({
            "valid": true,
            "name": recipe.name,
            "layers": recipe.layers.iter().map(|l| &l.name).collect::<Vec<_>>(),
            "sources": recipe.sources.keys().collect::<Vec<_>>(),
            "platforms": recipe.platforms.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "base": recipe.base.as_ref().map(|b| b.source.reference()),
        }));
    }
    eprintln!(
        "{}: ok ({} sources, {} layers)",
        recipe.file.path.display(),
        recipe.sources.len(),
        recipe.layers.len()
    );
    Ok(0)
}
