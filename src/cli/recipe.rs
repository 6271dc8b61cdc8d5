//! `cairn lock` and `cairn validate`: work on a recipe without building it.

use crate::print_json;
use anyhow::Result;
use cairn::{build, recipe};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct LockArgs {
    recipe: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ValidateArgs {
    recipe: PathBuf,
    #[arg(long)]
    json: bool,
}

/// Pins every source into <recipe>.lock; prints each source's kind and SHA-256.
pub fn lock(args: LockArgs) -> Result<i32> {
    let recipe = recipe::load(&args.recipe)?;
    let report = build::lock(&recipe, &crate::package_options(false)?)?;
    if args.json {
        return print_json(&report);
    }
    for (name, s) in &report.sources.sources {
        println!("{name}\t{}\t{}", s.kind, s.sha256);
    }
    for (name, p) in report.sources.packages.iter().flat_map(|p| &p.packages) {
        println!("deb:{name}\t{} {}\t{}", p.version, p.architecture, p.sha256);
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
