//! `cairn ledger ...`: the audit ledger's commands (see `cairn::ledger`).

use anyhow::{bail, Context, Result};
use cairn::digest::Sha256Digest;
use cairn::keys;
use cairn::ledger::{self, Action, HeldCheckpoint, Ledger};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct LedgerArgs {
    /// The ledger file (default: $XDG_DATA_HOME/cairn/ledger.jsonl).
    #[arg(long, env = "CAIRN_LEDGER", global = true, value_name = "PATH")]
    ledger: Option<PathBuf>,
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Record an action done outside cairn (a deployment, a push).
    Record {
        #[command(subcommand)]
        what: RecordCommand,
    },
    /// List entries; with --env, what is deployed there now and since when.
    Show {
        /// Only entries that mention this image digest.
        #[arg(long)]
        image: Option<String>,
        /// Only deployments to this environment (and the current one first).
        #[arg(long)]
        env: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check the chain, every signature and the Merkle tree; with --checkpoint, also
    /// that the ledger is an append-only extension of a checkpoint you saved earlier.
    Verify {
        /// Public key(s) trusted to sign entries (SPKI PEM or ssh-ed25519).
        #[arg(long = "key", value_name = "PUB", required = true)]
        keys: Vec<PathBuf>,
        /// A signed checkpoint saved earlier (`cairn ledger checkpoint > FILE`).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The key that signed the checkpoint (default: the first --key).
        #[arg(long, value_name = "PUB")]
        checkpoint_key: Option<PathBuf>,
        #[arg(long, default_value = ledger::DEFAULT_ORIGIN)]
        origin: String,
        #[arg(long)]
        json: bool,
    },
    /// Print a signed checkpoint (C2SP tlog-checkpoint in a signed note) of the
    /// ledger's Merkle tree. Save it: later `verify --checkpoint` proves nothing before
    /// it was changed, and `check-proof` checks inclusion proofs against it.
    Checkpoint {
        /// Private key that signs the checkpoint.
        #[arg(long, env = "CAIRN_LEDGER_KEY", value_name = "KEY")]
        key: PathBuf,
        #[arg(long, default_value = ledger::DEFAULT_ORIGIN)]
        origin: String,
    },
    /// Print an inclusion proof (JSON) of the latest entry that mentions DIGEST, or
    /// of entry --seq, that others can check against a checkpoint they hold.
    Prove {
        digest: Option<String>,
        #[arg(long, conflicts_with = "digest")]
        seq: Option<u64>,
        /// Prove against the tree of the first N entries (the size of the holder's
        /// checkpoint); default: the whole ledger.
        #[arg(long)]
        size: Option<u64>,
        #[arg(long, default_value = ledger::DEFAULT_ORIGIN)]
        origin: String,
    },
    /// Print a consistency proof (JSON) between the trees of the first OLD_SIZE
    /// entries and of the whole ledger (or --size entries), for someone holding
    /// checkpoints of both sizes.
    ProveConsistency {
        old_size: u64,
        #[arg(long)]
        size: Option<u64>,
        #[arg(long, default_value = ledger::DEFAULT_ORIGIN)]
        origin: String,
    },
    /// Check a consistency proof against two checkpoints you hold: the newer ledger
    /// only appended to the older one.
    CheckConsistency {
        proof: PathBuf,
        #[arg(long)]
        old: PathBuf,
        #[arg(long)]
        new: PathBuf,
        /// The key that signed the checkpoints.
        #[arg(long = "key", value_name = "PUB")]
        key: PathBuf,
    },
    /// Check an inclusion proof against a checkpoint you hold.
    CheckProof {
        proof: PathBuf,
        #[arg(long)]
        checkpoint: PathBuf,
        /// The key that signed the checkpoint.
        #[arg(long = "key", value_name = "PUB")]
        key: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum RecordCommand {
    /// `cairn ledger record deploy --image REF@sha256:... --env prod --key KEY`
    Deploy {
        /// The deployed image, `REF@sha256:<hex>` or a bare digest.
        #[arg(long)]
        image: String,
        #[arg(long)]
        env: String,
        #[command(flatten)]
        signer: Signer,
    },
    /// Record a push done by another tool.
    Push {
        /// The pushed reference, e.g. registry.example/app:1.2.
        #[arg(long)]
        reference: String,
        /// The pushed manifest digest.
        #[arg(long)]
        digest: String,
        #[command(flatten)]
        signer: Signer,
    },
}

#[derive(Args)]
pub struct Signer {
    /// Private key that signs the entry.
    #[arg(long, env = "CAIRN_LEDGER_KEY", value_name = "KEY")]
    key: PathBuf,
    /// Who acts (e.g. the CI job); recorded with the key id.
    #[arg(long, env = "CAIRN_IDENTITY", default_value = "")]
    identity: String,
}

/// `--ledger`, else `$CAIRN_LEDGER`, else `$XDG_DATA_HOME/cairn/ledger.jsonl`, else
/// `~/.local/share/cairn/ledger.jsonl`.
pub fn ledger_path(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context("no --ledger given, and neither $XDG_DATA_HOME nor $HOME is set")?;
    Ok(data.join("cairn/ledger.jsonl"))
}

/// The digest in `REF@sha256:<hex>`, `sha256:<hex>` or bare `<hex>` (lower case, 64
/// digits: one spelling per digest, so searches by digest find every mention).
fn digest_of(image: &str) -> Option<Sha256Digest> {
    let hex = image.rsplit_once("sha256:").map_or(image, |(_, h)| h);
    hex.parse().ok()
}

fn require_digest(text: &str) -> Result<Sha256Digest> {
    digest_of(text).with_context(|| {
        format!("{text:?} is not a sha256 digest: give sha256:<64 lower-case hex digits>")
    })
}

fn summary(entry: &ledger::Entry) -> String {
    let d = |k| ledger::detail_str(entry, k).unwrap_or("?");
    match entry.action {
        Action::Build => format!(
            "{} {} (recipe {})",
            d("image"),
            d("manifest_digest"),
            d("recipe")
        ),
        Action::Push => format!("{} {}", d("reference"), d("digest")),
        Action::Verify => format!(
            "{} {}",
            d("image"),
            if entry.details.get("verified") == Some(&serde_json::Value::Bool(true)) {
                "verified"
            } else {
                "REFUSED"
            }
        ),
        Action::Deploy => format!("{} to {}", d("image"), d("env")),
    }
}

/// Runs a ledger command; returns the exit code.
pub fn run(args: LedgerArgs, now: String) -> Result<i32> {
    let ledger = Ledger::open(ledger_path(args.ledger)?);
    match args.command {
        LedgerCommand::Record { what } => {
            let (action, details, signer) = match what {
                RecordCommand::Deploy { image, env, signer } => {
                    let Some(digest) = digest_of(&image) else {
                        bail!("--image {image:?} is not pinned: give REF@sha256:<hex> or a digest, so the record says exactly what runs");
                    };
                    let details = BTreeMap::from([
                        ("image".to_string(), image.into()),
                        ("digest".to_string(), digest.to_string().into()),
                        ("env".to_string(), env.into()),
                    ]);
                    (Action::Deploy, details, signer)
                }
                RecordCommand::Push {
                    reference,
                    digest,
                    signer,
                } => {
                    let Some(digest) = digest_of(&digest) else {
                        bail!("--digest {digest:?} is not a sha256 digest");
                    };
                    let registry = reference.split('/').next().unwrap_or_default().to_string();
                    let details = BTreeMap::from([
                        ("reference".to_string(), reference.into()),
                        ("digest".to_string(), digest.to_string().into()),
                        ("registry".to_string(), registry.into()),
                    ]);
                    (Action::Push, details, signer)
                }
            };
            let key = keys::read_private(&signer.key)?;
            let entry = ledger::record(&ledger, action, details, &signer.identity, now, &key)?;
            eprintln!(
                "recorded entry {} in {}",
                entry.seq,
                ledger.path().display()
            );
            println!("{}", ledger::entry::line_hash(&entry.line()));
            Ok(0)
        }
        LedgerCommand::Show { image, env, json } => {
            let contents = ledger.read()?;
            let image = image.as_deref().map(require_digest).transpose()?;
            let shown: Vec<&ledger::Stored> = contents
                .entries
                .iter()
                .filter(|s| image.as_ref().is_none_or(|d| ledger::mentions(&s.entry, d)))
                .filter(|s| {
                    env.as_ref().is_none_or(|e| {
                        s.entry.action == Action::Deploy
                            && ledger::detail_str(&s.entry, "env") == Some(e)
                    })
                })
                .collect();
            let deployed: Vec<ledger::Deployment> = ledger::deployments(&contents.entries)
                .into_iter()
                .filter(|d| env.as_ref().is_none_or(|e| &d.env == e))
                .collect();
            if json {
                let entries: Vec<&ledger::Entry> = shown.iter().map(|s| &s.entry).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"deployed": deployed, "entries": entries})
                    )?
                );
                return Ok(0);
            }
            for d in &deployed {
                println!(
                    "deployed {}: {} since {} (entry {}{})",
                    d.env,
                    d.image,
                    d.since,
                    d.seq,
                    if d.identity.is_empty() {
                        String::new()
                    } else {
                        format!(", by {}", d.identity)
                    }
                );
            }
            for s in shown {
                let e = &s.entry;
                let who = if e.actor.identity.is_empty() {
                    &e.actor.key_id[..16]
                } else {
                    e.actor.identity.as_str()
                };
                println!(
                    "{:>6} {} {:<6} {:<20} {}",
                    e.seq,
                    e.time,
                    e.action,
                    who,
                    summary(e)
                );
            }
            if contents.torn_tail_bytes > 0 {
                eprintln!("warning: the ledger ends in a torn write of {} bytes (an interrupted append); the next append repairs it", contents.torn_tail_bytes);
            }
            Ok(0)
        }
        LedgerCommand::Verify {
            keys: key_paths,
            checkpoint,
            checkpoint_key,
            origin,
            json,
        } => {
            let trusted: Vec<(String, keys::VerifyingKey)> = key_paths
                .iter()
                .map(|p| keys::read_public(p).map(|k| (keys::key_id(&k), k)))
                .collect::<Result<_, _>>()?;
            // An audit of a mistyped path must not pass as an empty, valid ledger.
            if !ledger.path().exists() {
                bail!("no ledger at {}", ledger.path().display());
            }
            let mut entries = ledger.entries()?;
            let held_note = checkpoint
                .as_deref()
                .map(std::fs::read_to_string)
                .transpose()
                .context("reading the held checkpoint")?;
            let checkpoint_key = match &checkpoint_key {
                Some(p) => keys::read_public(p)?,
                None => trusted[0].1,
            };
            let held = held_note.as_deref().map(|note| HeldCheckpoint {
                note,
                origin: &origin,
                key: &checkpoint_key,
            });
            let mut verdict = ledger::verify_stream(&mut entries, &trusted, held)?;
            verdict.torn_tail_bytes = entries.torn_tail_bytes();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"verified": verdict.verified(), "verdict": verdict})
                    )?
                );
            } else {
                for p in &verdict.problems {
                    println!("FAIL {p}");
                }
                if verdict.torn_tail_bytes > 0 {
                    println!("note: {} bytes of a torn last write follow the last complete entry (repaired by the next append)", verdict.torn_tail_bytes);
                }
                println!(
                    "{} entries, root {}{}: {}",
                    verdict.entries,
                    verdict.root,
                    if verdict.checkpoint_checked {
                        ", consistent with the held checkpoint"
                    } else {
                        ""
                    },
                    if verdict.verified() {
                        "verified"
                    } else {
                        "NOT verified"
                    }
                );
            }
            Ok(i32::from(!verdict.verified()))
        }
        LedgerCommand::Checkpoint { key, origin } => {
            let key = keys::read_private(&key)?;
            let contents = ledger.read()?;
            print!("{}", ledger::checkpoint(&contents, &origin, &key)?);
            eprintln!(
                "verifier key: {}",
                ledger::note::verifier_key(&origin, &key.verifying_key())?
            );
            Ok(0)
        }
        LedgerCommand::Prove {
            digest,
            seq,
            size,
            origin,
        } => {
            let contents = ledger.read()?;
            let index = match (digest, seq) {
                (_, Some(seq)) => seq,
                (Some(d), None) => ledger::find(&contents, &require_digest(&d)?, size)?,
                (None, None) => bail!("give a DIGEST or --seq N"),
            };
            let proof = ledger::prove(&contents, &origin, index, size)?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(0)
        }
        LedgerCommand::ProveConsistency {
            old_size,
            size,
            origin,
        } => {
            let contents = ledger.read()?;
            let proof = ledger::prove_consistency(&contents, &origin, old_size, size)?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(0)
        }
        LedgerCommand::CheckConsistency {
            proof,
            old,
            new,
            key,
        } => {
            let proof: ledger::ConsistencyProof = serde_json::from_slice(
                &std::fs::read(&proof).with_context(|| format!("reading {}", proof.display()))?,
            )
            .context("the proof is not a cairn consistency proof")?;
            let read = |p: &Path| {
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
            };
            let key = keys::read_public(&key)?;
            match ledger::check_consistency(&proof, &read(&old)?, &read(&new)?, &key) {
                Ok(()) => {
                    println!(
                        "consistent: the tree of {} entries only appends to the tree of {}",
                        proof.new_size, proof.old_size
                    );
                    Ok(0)
                }
                Err(e) => {
                    println!("NOT consistent: {e}");
                    Ok(1)
                }
            }
        }
        LedgerCommand::CheckProof {
            proof,
            checkpoint,
            key,
        } => {
            let proof: ledger::InclusionProof = serde_json::from_slice(
                &std::fs::read(&proof).with_context(|| format!("reading {}", proof.display()))?,
            )
            .context("the proof is not a cairn inclusion proof")?;
            let note = std::fs::read_to_string(&checkpoint)
                .with_context(|| format!("reading {}", checkpoint.display()))?;
            let key = keys::read_public(&key)?;
            match ledger::check_proof(&proof, &note, &key) {
                Ok(entry) => {
                    println!(
                        "included: entry {} ({} {}) is in the checkpointed tree of {} entries",
                        entry.seq,
                        entry.action,
                        summary(&entry),
                        proof.tree_size
                    );
                    Ok(0)
                }
                Err(e) => {
                    println!("NOT included: {e}");
                    Ok(1)
                }
            }
        }
    }
}

/// Records `action` with `details` in the ledger given by `--ledger`/`$CAIRN_LEDGER`.
pub fn record_action(
    ledger: &Path,
    action: Action,
    details: BTreeMap<String, serde_json::Value>,
    key: &keys::SigningKey,
    identity: &str,
    now: String,
) -> Result<ledger::Entry> {
    Ok(ledger::record(
        &Ledger::open(ledger),
        action,
        details,
        identity,
        now,
        key,
    )?)
}
