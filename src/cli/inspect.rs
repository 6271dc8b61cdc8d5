//! `cairn inspect`, `cairn trace` and `cairn diff`: read layouts back and print what
//! they hold, where a file came from, and what differs between two of them.

use crate::print_json;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct InspectArgs {
    /// The layout directory, e.g. out/hello.
    layout: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TraceArgs {
    /// The layout directory or disk image, or, when no such path exists, a registry
    /// reference (e.g. registry.example.com/team/hello:v1), pulled with its referrers
    /// as `cairn verify REF` does.
    #[arg(required_unless_present = "roothash")]
    layout: Option<PathBuf>,
    /// A path in the image, or a file's sha256:... digest.
    #[arg(required_unless_present = "roothash")]
    what: Option<String>,
    /// Instead: the build behind a VM disk's dm-verity root hash (`roothash=` in a
    /// running machine's /proc/cmdline), its image, recipe and signer, and where it was
    /// deployed, from the ledger.
    #[arg(long, value_name = "HEX", conflicts_with_all = ["layout", "what"])]
    roothash: Option<String>,
    /// With --roothash: the ledger (default as for `cairn ledger`).
    #[arg(long, env = "CAIRN_LEDGER", value_name = "LOCATION")]
    ledger: Option<String>,
    /// With --roothash: count only ledger entries signed by these public keys.
    #[arg(long = "key", value_name = "PUB", requires = "roothash")]
    keys: Vec<PathBuf>,
    #[command(flatten)]
    registry: super::registry::RegistryArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DiffArgs {
    a: PathBuf,
    b: PathBuf,
    /// For multi-platform layouts: compare this platform's images (os/arch[/variant];
    /// default: the first platform).
    #[arg(long)]
    platform: Option<String>,
    #[arg(long)]
    json: bool,
}

/// Prints each image in the layout: manifest, config, referrers, layers and files.
pub fn inspect(args: InspectArgs) -> Result<i32> {
    let report = cairn::inspect::inspect(&args.layout)?;
    if args.json {
        return print_json(&report);
    }
    if let Some(index) = &report.index_digest {
        println!("index {index}");
    }
    for image in &report.images {
        println!(
            "image {}",
            image.ref_name.as_deref().unwrap_or("(untagged)")
        );
        if let Some(platform) = &image.platform {
            println!("platform {platform}");
        }
        println!("manifest {}", image.manifest_digest);
        println!("config {}", serde_json::to_string_pretty(&image.config)?);
        for r in &image.referrers {
            println!("referrer {} {}", r.manifest_digest, r.artifact_type);
        }
        for layer in &image.layers {
            println!(
                "layer {} ({} bytes, {})",
                layer.digest, layer.size, layer.media_type
            );
            for f in &layer.files {
                println!("  {f}");
            }
        }
    }
    Ok(0)
}

/// Prints every regular file matching WHAT with its layer, source, signer and recipe
/// line; an error if none matches.
pub fn trace(args: TraceArgs) -> Result<i32> {
    let TraceArgs {
        layout,
        what,
        roothash,
        ledger,
        keys,
        registry: registry_args,
        json,
    } = args;
    let (Some(layout), Some(what)) = (layout, what) else {
        let roothash = roothash.expect("clap requires LAYOUT and WHAT without --roothash");
        return trace_roothash(&roothash, ledger, &keys, json);
    };
    let remote = super::registry::remote_reference(&layout);
    let pulled = match &remote {
        Some(reference) => {
            let client =
                super::registry::client(&registry_args, reference, super::registry::READ_TIMEOUT)?;
            let pulled =
                cairn::registry::pull::pull_to_temp(&client, reference).with_context(|| {
                    format!(
                        "fetching {reference} to trace it (no layout directory {} exists here)",
                        layout.display()
                    )
                })?;
            Some(pulled)
        }
        None => None,
    };
    let t = match &pulled {
        Some(pulled) => cairn::trace::trace(&pulled.report.layout, &what)?,
        None if layout.is_file() => cairn::trace::disk::trace(&layout, &what)?,
        None => cairn::trace::trace(&layout, &what)?,
    };
    if t.matches.is_empty() {
        let traced = match (&remote, &pulled) {
            (Some(reference), Some(pulled)) => {
                reference.with_digest(pulled.report.digest).to_string()
            }
            _ => layout.display().to_string(),
        };
        bail!("{what}: no regular file in {traced} matches");
    }
    if json {
        return print_json(&t);
    }
    for m in &t.matches {
        match &m.platform {
            Some(platform) => println!("{} ({platform})", m.path),
            None => println!("{}", m.path),
        }
        println!(
            "  file    {} ({} bytes, {:04o} {}:{})",
            m.sha256, m.size, m.mode, m.uid, m.gid
        );
        println!(
            "  layer   {} {} {}",
            m.layer.index.map_or("-".to_string(), |i| i.to_string()),
            m.layer.name.as_deref().unwrap_or("?"),
            m.layer.digest.as_deref().unwrap_or("")
        );
        match &m.source {
            Some(
                s @ cairn::trace::TracedSource {
                    package: Some(p), ..
                },
            ) => {
                let deb = s.digest.as_deref().unwrap_or("?");
                let signer = s.signer.as_deref().unwrap_or("?");
                println!(
                    "  package {} {} ({}) from repository {} ({})",
                    p.name, p.version, p.architecture, p.repository, p.suite
                );
                if m.origin.as_deref() == Some("generated") {
                    println!(
                        "  made    by cairn in place of the package's maintainer scripts, from {} files:",
                        m.generated_from.len()
                    );
                    for input in &m.generated_from {
                        println!("  input   {} {}", input.sha256, input.path);
                    }
                } else {
                    println!("  deb     {deb} {}", s.path.as_deref().unwrap_or("?"));
                    println!("  index   {} {}", p.index_digest, p.index);
                    println!(
                        "  release InRelease {} signed by key {signer}",
                        p.inrelease_digest
                    );
                    if let Some(member) = &m.member {
                        println!("  member  {member}");
                    }
                    println!(
                        "  chain   {} -> package {} {} -> .deb {deb} -> Packages index {} -> InRelease {} signed by key {signer}",
                        m.sha256, p.name, p.version, p.index_digest, p.inrelease_digest
                    );
                }
            }
            Some(s) => {
                println!(
                    "  source  {} ({} {}) {}",
                    s.name,
                    s.kind.as_deref().unwrap_or("?"),
                    s.path.as_deref().unwrap_or("?"),
                    s.digest.as_deref().unwrap_or("?")
                );
                if let Some(member) = &m.member {
                    println!("  member  {member}");
                }
                println!(
                    "  signer  {}",
                    s.signer.as_deref().unwrap_or("none (unsigned source)")
                );
            }
            None => println!(
                "  source  {} (no source file)",
                m.origin.as_deref().unwrap_or("unknown")
            ),
        }
        if let Some(line) = m.recipe_line {
            println!(
                "  recipe  {} line {line}",
                m.recipe.as_deref().unwrap_or("the recipe")
            );
        }
    }
    Ok(0)
}

/// Prints what differs between layouts A and B, or lock files A and B; exit code as
/// diff(1): 0 identical, 1 different (errors, 2, are `main`'s to give).
pub fn diff(args: DiffArgs) -> Result<i32> {
    if args.a.is_file() && args.b.is_file() {
        return diff_locks(&args);
    }
    let d = cairn::diff::diff(&args.a, &args.b, args.platform.as_deref())?;
    let code = i32::from(!d.identical());
    if args.json {
        print_json(&d)?;
        return Ok(code);
    }
    if d.identical() {
        println!("identical: {}", d.manifest.0);
        return Ok(0);
    }
    println!("manifest {} -> {}", d.manifest.0, d.manifest.1);
    // Layer and source changes name themselves ("layer 0", "source app").
    let sections = [
        ("config ", &d.config),
        ("", &d.layers),
        ("changed ", &d.files_changed),
        ("", &d.sources),
    ];
    for (label, changes) in sections {
        for c in changes {
            println!("{label}{}: {} -> {}", c.what, c.a, c.b);
        }
    }
    for p in &d.files_added {
        println!("added {p}");
    }
    for p in &d.files_removed {
        println!("removed {p}");
    }
    Ok(code)
}

/// `cairn diff A.lock B.lock`: every pin that differs, as `cairn lock` reports them.
fn diff_locks(args: &DiffArgs) -> Result<i32> {
    let changes = cairn::diff::diff_locks(&args.a, &args.b)?;
    let code = i32::from(!changes.is_empty());
    if args.json {
        print_json(&serde_json::json!({ "identical": changes.is_empty(), "changes": changes }))?;
        return Ok(code);
    }
    if changes.is_empty() {
        println!("identical pins");
    }
    for c in &changes {
        println!("{}: {} -> {}", c.what, c.old, c.new);
    }
    Ok(code)
}

/// `cairn trace --roothash HEX`: the ledger's builds and deployments of that root hash;
/// an error if no build recorded it.
fn trace_roothash(
    roothash: &str,
    ledger: Option<String>,
    key_paths: &[PathBuf],
    json: bool,
) -> Result<i32> {
    let hex = super::ledger::require_roothash(roothash)?.hex();
    let location = super::ledger::ledger_location(ledger)?;
    let trusted: Vec<(String, cairn::keys::VerifyingKey)> = key_paths
        .iter()
        .map(|p| cairn::keys::read_public(p).map(|k| (cairn::keys::key_id(&k), k)))
        .collect::<Result<_, _>>()?;
    let store = cairn::ledger::open(&location)?;
    let contents = store.read()?;
    let t = cairn::trace::roothash::trace(&contents.entries, &hex, &trusted);
    if t.builds.is_empty() {
        let skipped = match t.skipped {
            0 => String::new(),
            n => format!(" ({n} entries naming it were skipped: not signed by a --key)"),
        };
        bail!(
            "roothash={hex}: no build entry in the ledger {} recorded a disk with this root hash{skipped}",
            store.location()
        );
    }
    if json {
        return print_json(&t);
    }
    println!("roothash={}", t.roothash);
    for b in &t.builds {
        println!(
            "  build   entry {} at {}: image {} {}",
            b.seq,
            b.time,
            b.image.as_deref().unwrap_or("?"),
            b.manifest_digest.as_deref().unwrap_or("")
        );
        println!(
            "  recipe  {} {}",
            b.recipe.as_deref().unwrap_or("?"),
            b.recipe_sha256.as_deref().unwrap_or("")
        );
        for (format, digest) in &b.disk_files {
            println!("  disk    {format} {digest}");
        }
        let identity = if b.signer_identity.is_empty() {
            String::new()
        } else {
            format!(" ({})", b.signer_identity)
        };
        println!(
            "  signer  key {}{identity}{}",
            b.signer_key_id,
            if t.signatures_checked {
                ", signature verified"
            } else {
                ", signature not checked (pass --key PUB)"
            }
        );
    }
    for d in &t.deployments {
        println!(
            "  deploy  entry {} at {}: {} to {}{}",
            d.seq,
            d.time,
            d.deployed,
            d.env.as_deref().unwrap_or("?"),
            if d.identity.is_empty() {
                String::new()
            } else {
                format!(" by {}", d.identity)
            }
        );
    }
    if t.skipped > 0 {
        eprintln!(
            "warning: {} entries naming this root hash were skipped: their signature does not verify with a --key",
            t.skipped
        );
    }
    Ok(0)
}
