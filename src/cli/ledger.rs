//! `cairn ledger ...`: the audit ledger's commands (see `cairn::ledger`).

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use cairn::digest::Sha256Digest;
use cairn::keys;
use cairn::ledger::{self, tiles, Action, HeldCheckpoint, Ledger};
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct LedgerArgs {
    /// The ledger: a file, or a postgres:// URL (default:
    /// $XDG_DATA_HOME/cairn/ledger.jsonl).
    #[arg(long, env = "CAIRN_LEDGER", global = true, value_name = "LOCATION")]
    ledger: Option<String>,
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
        /// Only entries that mention this dm-verity root hash (a VM disk's build and
        /// deployments; the `roothash=` a running machine shows in /proc/cmdline).
        #[arg(long, value_name = "HEX", conflicts_with = "image")]
        roothash: Option<String>,
        /// Only deployments to this environment (and the current one first).
        #[arg(long)]
        env: Option<String>,
        /// With --env: what runs there now, per workload, since when, deployed by whom,
        /// and the build behind each image, told only from entries signed by these
        /// public keys (others are skipped and counted).
        #[arg(long = "key", value_name = "PUB", requires = "env")]
        keys: Vec<PathBuf>,
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
        /// Verify the log published by `cairn ledger tiles` from its tiles alone (a
        /// directory, an https:// URL prefix, or http:// on loopback) instead of the
        /// ledger; --checkpoint is then an older checkpoint the log must extend.
        #[arg(long, value_name = "DIR|URL")]
        tiles: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Publish the ledger as a C2SP tlog-tiles log in DIR (`checkpoint`, `tile/...`),
    /// for any static web server or object store to serve to auditors. Incremental:
    /// full tiles are written once and never change; the checkpoint is written last.
    Tiles {
        dir: PathBuf,
        /// Private key that signs the checkpoint.
        #[arg(long, env = "CAIRN_LEDGER_KEY", value_name = "KEY")]
        key: PathBuf,
        /// The log's origin line (C2SP suggests the URL prefix without scheme).
        #[arg(long, default_value = ledger::DEFAULT_ORIGIN)]
        origin: String,
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
        /// Also keep the checkpoint in the ledger's database, so that every later
        /// `verify` checks the ledger still extends it.
        #[arg(long)]
        store: bool,
    },
    /// Copy the ledger, line for line, to a new ledger file (its checkpoint root is the
    /// ledger's).
    Export {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Verify a ledger file, then load it into this ledger, which must be empty.
    Import {
        file: PathBuf,
        /// Public key(s) trusted to sign the file's entries.
        #[arg(long = "key", value_name = "PUB", required = true)]
        keys: Vec<PathBuf>,
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
    /// `cairn ledger record deploy --image REF@sha256:... --env prod --key KEY`, or
    /// `--disk sha256:...` / `--roothash HEX` for a VM disk.
    #[command(group(clap::ArgGroup::new("deployed").required(true).args(["image", "disk", "roothash"])))]
    Deploy {
        /// The deployed image, `REF@sha256:<hex>` or a bare digest.
        #[arg(long)]
        image: Option<String>,
        /// The deployed VM disk, by the SHA-256 of its raw or qcow2 file.
        #[arg(long, value_name = "sha256:HEX")]
        disk: Option<String>,
        /// The deployed VM disk, by its dm-verity root hash (`roothash=` in the
        /// machine's /proc/cmdline).
        #[arg(long, value_name = "HEX")]
        roothash: Option<String>,
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
    /// Record an entry with every field given: what `build`, `push` and `verify`
    /// print when they could not reach the ledger, to record their entry later.
    Entry {
        /// build, push, verify or deploy.
        #[arg(long)]
        action: String,
        /// When the action happened, RFC 3339 UTC (`2026-11-27T05:39:03Z`).
        #[arg(long)]
        time: String,
        /// The entry's details, a JSON object.
        #[arg(long, value_name = "JSON")]
        details: String,
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
/// `~/.local/share/cairn/ledger.jsonl`: a file path or a database URL.
pub fn ledger_location(flag: Option<String>) -> Result<String> {
    if let Some(location) = flag {
        return Ok(location);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .context("no --ledger given, and neither $XDG_DATA_HOME nor $HOME is set")?;
    Ok(data.join("cairn/ledger.jsonl").display().to_string())
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

/// A dm-verity root hash as `roothash=` carries it: 64 hex digits (SHA-256), either
/// case; held as a digest so that searches by it find every mention.
pub fn require_roothash(text: &str) -> Result<Sha256Digest> {
    let hex = text.strip_prefix("roothash=").unwrap_or(text);
    hex.to_ascii_lowercase().parse().map_err(|_| {
        anyhow::anyhow!("{text:?} is not a dm-verity root hash: give the 64 hex digits of `roothash=` (SHA-256)")
    })
}

/// The details naming what `record deploy` deployed: an image (`image`, `digest`), a
/// disk by digest (also `disk`), or a disk by root hash (`image` is then
/// `roothash=HEX`, and `roothash` the hex).
fn deployed(
    image: Option<String>,
    disk: Option<String>,
    roothash: Option<String>,
) -> Result<BTreeMap<String, serde_json::Value>> {
    let details = match (image, disk, roothash) {
        (Some(image), _, _) => {
            let Some(digest) = digest_of(&image) else {
                bail!("--image {image:?} is not pinned: give REF@sha256:<hex> or a digest, so the record says exactly what runs");
            };
            BTreeMap::from([
                ("image".to_string(), image.into()),
                ("digest".to_string(), digest.to_string().into()),
            ])
        }
        (None, Some(disk), _) => {
            let Some(digest) = digest_of(&disk) else {
                bail!("--disk {disk:?} is not a sha256 digest: give sha256:<hex> of the raw or qcow2 file (`sha256sum out/NAME.raw`)");
            };
            BTreeMap::from([
                ("image".to_string(), digest.to_string().into()),
                ("digest".to_string(), digest.to_string().into()),
                ("disk".to_string(), digest.to_string().into()),
            ])
        }
        (None, None, Some(roothash)) => {
            let hex = require_roothash(&roothash)?.hex();
            BTreeMap::from([
                ("image".to_string(), format!("roothash={hex}").into()),
                ("roothash".to_string(), hex.into()),
            ])
        }
        (None, None, None) => unreachable!("clap requires one of --image, --disk, --roothash"),
    };
    Ok(details)
}

/// One line about `entry` from the details it has. A detail it lacks is left out, never
/// shown as `?`; an entry with none of them says so.
fn summary(entry: &ledger::Entry) -> String {
    let d = |k| ledger::detail_str(entry, k);
    let parts: Vec<Option<String>> = match entry.action {
        Action::Build => vec![
            d("image").map(str::to_string),
            d("manifest_digest").map(str::to_string),
            d("recipe").map(|r| format!("(recipe {r})")),
        ],
        Action::Push => {
            // `cairn push` records `manifest_digest`, the registry hook `digest`.
            let digest = d("manifest_digest").or_else(|| d("digest"));
            let reference = d("reference");
            vec![
                reference.map(str::to_string),
                digest
                    .filter(|digest| !reference.is_some_and(|r| r.ends_with(digest)))
                    .map(str::to_string),
            ]
        }
        Action::Verify => vec![
            d("image").map(str::to_string),
            Some(
                if entry.details.get("verified") == Some(&serde_json::Value::Bool(true)) {
                    "verified"
                } else {
                    "REFUSED"
                }
                .to_string(),
            ),
        ],
        Action::Deploy => vec![
            d("image").map(str::to_string),
            d("env").map(|env| format!("to {env}")),
        ],
    };
    let known: Vec<String> = parts.into_iter().flatten().collect();
    if known.is_empty() {
        "(no image or reference recorded)".to_string()
    } else {
        known.join(" ")
    }
}

/// The action and details of `record entry`, checked to be what an entry holds.
fn entry_fields(
    action: &str,
    time: &str,
    details: &str,
) -> Result<(Action, BTreeMap<String, serde_json::Value>)> {
    let action: Action = serde_json::from_value(action.into())
        .map_err(|_| anyhow::anyhow!("--action {action:?}: give build, push, verify or deploy"))?;
    // The shape `now_rfc3339` writes, so every entry's time reads and sorts alike.
    let shape_ok = time.len() == 20
        && time.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        bail!("--time {time:?} is not an RFC 3339 UTC time like 2026-11-27T05:39:03Z");
    }
    let details = serde_json::from_str(details)
        .context("--details is not a JSON object (quote it for the shell as printed)")?;
    Ok((action, details))
}

/// Runs a ledger command; returns the exit code.
pub fn run(args: LedgerArgs, now: String) -> Result<i32> {
    let location = ledger_location(args.ledger)?;
    // Opened only by the commands that read or write it (a database is connected to).
    let open = || ledger::open(&location);
    match args.command {
        LedgerCommand::Record { what } => {
            let mut time = now;
            let (action, details, signer) = match what {
                RecordCommand::Deploy {
                    image,
                    disk,
                    roothash,
                    env,
                    signer,
                } => {
                    let mut details = deployed(image, disk, roothash)?;
                    details.insert("env".to_string(), env.into());
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
                RecordCommand::Entry {
                    action,
                    time: at,
                    details,
                    signer,
                } => {
                    time = at;
                    entry_fields(&action, &time, &details)
                        .map(|(action, details)| (action, details, signer))?
                }
            };
            let key = keys::read_private(&signer.key)?;
            let ledger = open()?;
            let entry = ledger::record(&*ledger, action, details, &signer.identity, time, &key)?;
            eprintln!("recorded entry {} in {}", entry.seq, ledger.location());
            println!("{}", ledger::entry::line_hash(&entry.line()));
            Ok(0)
        }
        LedgerCommand::Show {
            env: Some(env),
            keys: key_paths,
            json,
            ..
        } if !key_paths.is_empty() => {
            let trusted: Vec<(String, keys::VerifyingKey)> = key_paths
                .iter()
                .map(|p| keys::read_public(p).map(|k| (keys::key_id(&k), k)))
                .collect::<Result<_, _>>()?;
            let contents = open()?.read()?;
            let running = ledger::deployed::running(&contents.entries, &env, &trusted);
            if json {
                return crate::print_json(&running);
            }
            print_running(&running);
            Ok(0)
        }
        LedgerCommand::Show {
            image,
            roothash,
            env,
            json,
            ..
        } => {
            let contents = open()?.read()?;
            let image = match (image, roothash) {
                (Some(image), _) => Some(require_digest(&image)?),
                (None, Some(roothash)) => Some(require_roothash(&roothash)?),
                (None, None) => None,
            };
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
                    serde_json::to_string_pretty(&serde_json::json!({
                        "deployed": deployed,
                        "entries": entries,
                        "signatures_checked": false,
                    }))?
                );
                return Ok(0);
            }
            // Without --key no signature is checked: what the entries claim is shown
            // as their claim, never as what runs there.
            for d in &deployed {
                println!(
                    "unverified: entries say {} is deployed to {} since {} (entry {}{}); pass --key PUB to tell what runs there",
                    d.image,
                    d.env,
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
            tiles,
            json,
        } => {
            let trusted: Vec<(String, keys::VerifyingKey)> = key_paths
                .iter()
                .map(|p| keys::read_public(p).map(|k| (keys::key_id(&k), k)))
                .collect::<Result<_, _>>()?;
            if let Some(location) = tiles {
                let checkpoint_key = match &checkpoint_key {
                    Some(p) => keys::read_public(p)?,
                    None => trusted[0].1,
                };
                let old = checkpoint
                    .as_deref()
                    .map(std::fs::read_to_string)
                    .transpose()
                    .context("reading the old checkpoint")?;
                let source = tiles::TileSource::new(
                    &location,
                    &format!("cairn/{}", env!("CARGO_PKG_VERSION")),
                )?;
                let trust = tiles::TilesTrust {
                    trusted: &trusted,
                    checkpoint_key: &checkpoint_key,
                    origin: &origin,
                    old_checkpoint: old.as_deref(),
                };
                let verdict = tiles::verify(&source, &trust)
                    .with_context(|| format!("verifying the tiles at {location}"))?;
                return report(&verdict, json, 0);
            }
            let ledger = open()?;
            // An audit of a mistyped path must not pass as an empty, valid ledger.
            if !ledger.exists()? {
                bail!("no ledger at {}", ledger.location());
            }
            let mut entries = ledger.entries()?;
            let stored = ledger.checkpoints()?;
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
            verdict.torn_tail_bytes = ledger.torn_tail_bytes()?;
            // A second pass, holding O(log n) hashes: each stored checkpoint must be a
            // prefix of the ledger as it is now.
            verdict.problems.extend(ledger::stored_checkpoint_problems(
                ledger.entries()?,
                &stored,
                &origin,
                &checkpoint_key,
            )?);
            verdict.checkpoint_checked |= !stored.is_empty();
            report(&verdict, json, stored.len())
        }
        LedgerCommand::Tiles { dir, key, origin } => {
            let key = keys::read_private(&key)?;
            let ledger = open()?;
            let lines = ledger.entries()?.map(|stored| stored.map(|s| s.line));
            let written = tiles::write(&dir, lines, &origin, &key)?;
            eprintln!(
                "published {} entries in {}: {} files written, {} tiles already published and unchanged",
                written.entries,
                dir.display(),
                written.written,
                written.unchanged
            );
            eprintln!(
                "verifier key: {}",
                ledger::note::verifier_key(&origin, &key.verifying_key())?
            );
            print!("{}", written.checkpoint);
            Ok(0)
        }
        LedgerCommand::Checkpoint { key, origin, store } => {
            let key = keys::read_private(&key)?;
            let ledger = open()?;
            let contents = ledger.read()?;
            let note = ledger::checkpoint(&contents, &origin, &key)?;
            if store {
                ledger.store_checkpoint(contents.entries.len() as u64, &note)?;
                eprintln!(
                    "stored the checkpoint of {} entries in {}",
                    contents.entries.len(),
                    ledger.location()
                );
            }
            print!("{note}");
            eprintln!(
                "verifier key: {}",
                ledger::note::verifier_key(&origin, &key.verifying_key())?
            );
            Ok(0)
        }
        LedgerCommand::Export { out } => {
            let contents = open()?.read()?;
            export(&contents, &out)?;
            let root = ledger::merkle::root(&ledger::leaves(&contents.entries));
            println!(
                "exported {} entries to {}, root {}",
                contents.entries.len(),
                out.display(),
                base64::engine::general_purpose::STANDARD.encode(root)
            );
            Ok(0)
        }
        LedgerCommand::Import {
            file,
            keys: key_paths,
        } => {
            let trusted: Vec<(String, keys::VerifyingKey)> = key_paths
                .iter()
                .map(|p| keys::read_public(p).map(|k| (keys::key_id(&k), k)))
                .collect::<Result<_, _>>()?;
            if !file.exists() {
                bail!("no ledger file at {}", file.display());
            }
            let contents = Ledger::open(&file).read()?;
            let verdict = ledger::verify(&contents, &trusted, None);
            if !verdict.verified() || contents.torn_tail_bytes > 0 {
                for p in &verdict.problems {
                    eprintln!("FAIL {p}");
                }
                bail!(
                    "{} does not verify{}: nothing was imported",
                    file.display(),
                    if contents.torn_tail_bytes > 0 {
                        " (it ends in a torn write; `cairn ledger --ledger FILE record` or an append repairs it)"
                    } else {
                        ""
                    }
                );
            }
            let ledger = open()?;
            ledger.import(&contents.entries)?;
            println!(
                "imported {} entries into {}, root {}",
                contents.entries.len(),
                ledger.location(),
                verdict.root
            );
            Ok(0)
        }
        LedgerCommand::Prove {
            digest,
            seq,
            size,
            origin,
        } => {
            let contents = open()?.read()?;
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
            let contents = open()?.read()?;
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

/// Prints what runs in an environment, workload by workload.
fn print_running(running: &ledger::deployed::Running) {
    println!(
        "{}: {} image{} running",
        running.env,
        running.images.len(),
        if running.images.len() == 1 { "" } else { "s" }
    );
    if running.skipped > 0 {
        println!(
            "skipped {} entr{} not signed by a --key key (not taken as fact)",
            running.skipped,
            if running.skipped == 1 { "y" } else { "ies" }
        );
    }
    let mut workload = None;
    for row in &running.images {
        if workload != Some(&row.workload) {
            workload = Some(&row.workload);
            println!();
            println!(
                "{}",
                if row.workload.is_empty() {
                    "(recorded by hand)"
                } else {
                    &row.workload
                }
            );
        }
        println!("  image   {}", row.image);
        println!(
            "  since   {} (entry {}){}",
            row.since,
            row.seq,
            if row.by.is_empty() {
                String::new()
            } else {
                format!(", deployed by {}", row.by)
            }
        );
        match &row.build {
            None => println!("  build   none: no trusted build entry has this digest"),
            Some(b) => {
                println!(
                    "  build   entry {} at {}: recipe {} {}",
                    b.seq,
                    b.time,
                    b.recipe.as_deref().unwrap_or("(not recorded)"),
                    b.recipe_sha256.as_deref().unwrap_or_default()
                );
                println!(
                    "  signer  {}{}",
                    b.signer_key_id,
                    if b.signer_identity.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", b.signer_identity)
                    }
                );
                for (name, digest) in &b.sources {
                    println!("  source  {name} {digest}");
                }
            }
        }
    }
}

/// Prints what `ledger verify` found, `stored` checkpoints checked among it; returns the
/// exit code.
fn report(verdict: &ledger::LedgerVerdict, json: bool, stored: usize) -> Result<i32> {
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
            match (verdict.checkpoint_checked, stored) {
                (false, _) => String::new(),
                (true, 0) if verdict.verified() => {
                    ", consistent with the held checkpoint".to_string()
                }
                (true, 0) => ", checked against the held checkpoint".to_string(),
                (_, n) => format!(", checked against {n} stored checkpoint(s)"),
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

/// Writes `contents`' lines to a new ledger file at `out` (refusing to overwrite one),
/// made complete before it appears under its name.
fn export(contents: &ledger::Contents, out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{} exists: export writes a new file", out.display());
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let staged = tempfile::Builder::new()
        .prefix(".cairn-export")
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    Ledger::open(staged.path()).append_lines(&contents.entries)?;
    staged
        .persist_noclobber(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Records `action` with `details` in the ledger given by `--ledger`/`$CAIRN_LEDGER`.
pub fn record_action(
    ledger: &str,
    action: Action,
    details: BTreeMap<String, serde_json::Value>,
    key: &keys::SigningKey,
    identity: &str,
    now: String,
) -> Result<ledger::Entry> {
    Ok(ledger::record(
        &*ledger::open(ledger)?,
        action,
        details,
        identity,
        now,
        key,
    )?)
}
