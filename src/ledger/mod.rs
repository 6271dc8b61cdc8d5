//! The audit ledger: an append-only, signed, hash-chained record of what was built,
//! pushed, verified and deployed, with a Merkle tree (RFC 6962) over its entries and
//! signed checkpoints (C2SP tlog-checkpoint / signed-note), verifiable offline by
//! anyone with the public keys.
//!
//! [`entry`] is one signed entry, [`store`] the file (locking, durable appends, torn
//! tails) and [`file_entries`] the file read as a stream, [`pg`] the PostgreSQL
//! database, [`backend`] the one interface over both, [`merkle`] the tree and its
//! proofs, [`frontier`] its root grown leaf by leaf, [`note`] the checkpoint text
//! formats, [`tiles`] the C2SP tlog-tiles publication, [`verify`] the verification of a
//! ledger streamed from any store, [`deployed`] what runs in an environment now, told
//! from trusted entries; this module puts them together for the commands.

pub mod backend;
pub mod deployed;
pub mod entry;
pub mod file_entries;
pub mod frontier;
pub mod merkle;
pub mod note;
pub mod pg;
pub mod store;
pub mod tiles;
pub mod verify;

pub use backend::{open, LedgerStore, StoreError};
pub use entry::{Action, Actor, Entry};
pub use file_entries::FileEntries;
pub use store::{Contents, Ledger, LedgerError, Stored};
pub use verify::verify_stream;

use crate::digest::Sha256Digest;
use crate::keys::{SigningKey, VerifyingKey};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The origin line of checkpoints (and the signed-note key name) unless one is given.
pub const DEFAULT_ORIGIN: &str = "cairn.local/ledger";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A proof's hashes as they travel in JSON: standard base64, like the checkpoint's root.
fn encode_path(path: &[merkle::Hash]) -> Vec<String> {
    path.iter().map(|h| b64(h)).collect()
}

fn decode_path(path: &[String]) -> Result<Vec<merkle::Hash>, ProofCheckError> {
    path.iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h)
                .ok()
                .and_then(|b| b.try_into().ok())
        })
        .collect::<Option<_>>()
        .ok_or(ProofCheckError::MalformedHash)
}

/// Why a proof, or the ledger itself, does not hold against a signed checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ProofCheckError {
    /// A checkpoint that does not verify or parse; `checkpoint` names which one
    /// ("the checkpoint", "the old checkpoint", "held checkpoint").
    #[error("{checkpoint}: {error}")]
    Checkpoint {
        checkpoint: &'static str,
        error: note::NoteError,
    },
    #[error("the checkpoint is for {checkpoint:?}, the proof for {proof:?}")]
    Origin { checkpoint: String, proof: String },
    #[error("the checkpoint covers {checkpoint} entries, the proof {proof}: ask for a proof at the checkpoint's size (`cairn ledger prove --size {checkpoint}`)")]
    Size { checkpoint: u64, proof: u64 },
    #[error(
        "the checkpoints cover {old} and {new} entries, the proof {proof_old} and {proof_new}"
    )]
    Sizes {
        old: u64,
        new: u64,
        proof_old: u64,
        proof_new: u64,
    },
    #[error("the proof has a malformed hash")]
    MalformedHash,
    #[error("the entry is not in the checkpointed tree: {0}")]
    NotIncluded(merkle::ProofError),
    #[error("the proven entry is not a ledger entry: {0}")]
    NotAnEntry(serde_json::Error),
    #[error("the newer tree does not extend the older one: {0}")]
    NotExtended(merkle::ProofError),
    #[error("held checkpoint: the ledger is shorter than the checkpoint, so it was truncated: the checkpoint covers {checkpoint} entries, the ledger has only {ledger}; restore the missing entries from a copy of the ledger (a backup, or `cairn ledger export` output) and verify again, and append nothing until then")]
    HeldBeyondLedger { checkpoint: u64, ledger: u64 },
    #[error("held checkpoint: the ledger is not an append-only extension of the {size} entries it checkpointed ({error}): earlier entries were changed")]
    HeldRewritten {
        size: u64,
        error: merkle::ProofError,
    },
}

/// The checkpoint in `note`, verified against `key` for `origin`; `which` names it in
/// an error.
fn read_checkpoint(
    note: &str,
    origin: &str,
    key: &VerifyingKey,
    which: &'static str,
) -> Result<note::Checkpoint, ProofCheckError> {
    let error = |error| ProofCheckError::Checkpoint {
        checkpoint: which,
        error,
    };
    let body = note::verify(note, origin, key).map_err(error)?;
    note::Checkpoint::parse(&body).map_err(error)
}

/// Appends one signed entry for `action`.
pub fn record(
    ledger: &dyn LedgerStore,
    action: Action,
    details: BTreeMap<String, serde_json::Value>,
    identity: &str,
    time: String,
    key: &SigningKey,
) -> Result<Entry, StoreError> {
    ledger.append(Entry::new(action, identity, time, details), key, true)
}

/// The Merkle leaf hashes of the entries (each over the stored line).
pub fn leaves(entries: &[Stored]) -> Vec<merkle::Hash> {
    entries.iter().map(|s| merkle::leaf_hash(&s.line)).collect()
}

/// A signed checkpoint (signed note text) for the whole ledger.
pub fn checkpoint(
    contents: &Contents,
    origin: &str,
    key: &SigningKey,
) -> Result<String, note::NoteError> {
    let leaves = leaves(&contents.entries);
    let body = note::Checkpoint {
        origin: origin.to_string(),
        size: leaves.len() as u64,
        root: merkle::root(&leaves),
        extensions: Vec::new(),
    }
    .body();
    note::sign(&body, origin, key)
}

/// An inclusion proof of one entry in the tree of the first `tree_size` entries, that
/// anyone holding a checkpoint of that size can check (`cairn ledger check-proof`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub origin: String,
    pub index: u64,
    pub tree_size: u64,
    /// Base64 root of the tree of `tree_size` entries.
    pub root: String,
    /// The entry's stored line (its leaf data).
    pub entry: String,
    /// Base64 hashes of the audit path, leaf to root.
    pub proof: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProveError {
    #[error("the ledger has {entries} entries; there is no entry {index} in a tree of {size}")]
    OutOfRange { index: u64, size: u64, entries: u64 },
    #[error("no entry mentions {0}")]
    NotFound(String),
}

/// Whether any detail of `entry` mentions `digest` (in any position: `REF@sha256:..`,
/// a layer list, a source map).
pub fn mentions(entry: &Entry, digest: &Sha256Digest) -> bool {
    let hex = digest.hex();
    entry.details.values().any(|v| v.to_string().contains(&hex))
}

/// The index of the latest entry among the first `within` (default: all) whose
/// details mention `digest`.
pub fn find(
    contents: &Contents,
    digest: &Sha256Digest,
    within: Option<u64>,
) -> Result<u64, ProveError> {
    let end = within.map_or(contents.entries.len(), |n| {
        (n as usize).min(contents.entries.len())
    });
    contents.entries[..end]
        .iter()
        .rposition(|s| mentions(&s.entry, digest))
        .map(|i| i as u64)
        .ok_or_else(|| ProveError::NotFound(digest.to_string()))
}

pub fn prove(
    contents: &Contents,
    origin: &str,
    index: u64,
    tree_size: Option<u64>,
) -> Result<InclusionProof, ProveError> {
    let entries = contents.entries.len() as u64;
    let size = tree_size.unwrap_or(entries);
    if index >= size || size > entries {
        return Err(ProveError::OutOfRange {
            index,
            size,
            entries,
        });
    }
    let leaves = leaves(&contents.entries[..size as usize]);
    Ok(InclusionProof {
        origin: origin.to_string(),
        index,
        tree_size: size,
        root: b64(&merkle::root(&leaves)),
        entry: String::from_utf8_lossy(&contents.entries[index as usize].line).into_owned(),
        proof: encode_path(
            &merkle::inclusion_proof(&leaves, index as usize).expect("index < size was checked"),
        ),
    })
}

/// Checks `proof` against a checkpoint the verifier holds, signed by `key`. Returns the
/// proven entry.
pub fn check_proof(
    proof: &InclusionProof,
    checkpoint_note: &str,
    key: &VerifyingKey,
) -> Result<Entry, ProofCheckError> {
    let cp = read_checkpoint(checkpoint_note, &proof.origin, key, "the checkpoint")?;
    if cp.origin != proof.origin {
        return Err(ProofCheckError::Origin {
            checkpoint: cp.origin,
            proof: proof.origin.clone(),
        });
    }
    if cp.size != proof.tree_size {
        return Err(ProofCheckError::Size {
            checkpoint: cp.size,
            proof: proof.tree_size,
        });
    }
    let path = decode_path(&proof.proof)?;
    merkle::verify_inclusion(
        &merkle::leaf_hash(proof.entry.as_bytes()),
        proof.index,
        proof.tree_size,
        &path,
        &cp.root,
    )
    .map_err(ProofCheckError::NotIncluded)?;
    serde_json::from_str(&proof.entry).map_err(ProofCheckError::NotAnEntry)
}

/// A consistency proof between the trees of the first `old_size` and `new_size`
/// entries: someone holding checkpoints of both sizes can check that the newer tree
/// only appends to the older one (`cairn ledger check-consistency`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub origin: String,
    pub old_size: u64,
    pub new_size: u64,
    /// Base64 hashes of the proof.
    pub proof: Vec<String>,
}

pub fn prove_consistency(
    contents: &Contents,
    origin: &str,
    old_size: u64,
    new_size: Option<u64>,
) -> Result<ConsistencyProof, ProveError> {
    let entries = contents.entries.len() as u64;
    let new_size = new_size.unwrap_or(entries);
    if old_size > new_size || new_size > entries {
        return Err(ProveError::OutOfRange {
            index: old_size,
            size: new_size,
            entries,
        });
    }
    let leaves = leaves(&contents.entries[..new_size as usize]);
    Ok(ConsistencyProof {
        origin: origin.to_string(),
        old_size,
        new_size,
        proof: encode_path(
            &merkle::consistency_proof(&leaves, old_size as usize)
                .expect("old_size <= new_size was checked"),
        ),
    })
}

/// Checks `proof` against two checkpoints the verifier holds, both signed by `key`.
pub fn check_consistency(
    proof: &ConsistencyProof,
    old_note: &str,
    new_note: &str,
    key: &VerifyingKey,
) -> Result<(), ProofCheckError> {
    let old = read_checkpoint(old_note, &proof.origin, key, "the old checkpoint")?;
    let new = read_checkpoint(new_note, &proof.origin, key, "the new checkpoint")?;
    if (old.size, new.size) != (proof.old_size, proof.new_size) {
        return Err(ProofCheckError::Sizes {
            old: old.size,
            new: new.size,
            proof_old: proof.old_size,
            proof_new: proof.new_size,
        });
    }
    let path = decode_path(&proof.proof)?;
    merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &path)
        .map_err(ProofCheckError::NotExtended)
}

/// What `cairn ledger verify` found.
#[derive(Debug, Serialize)]
pub struct LedgerVerdict {
    pub entries: u64,
    pub root: String,
    pub torn_tail_bytes: u64,
    /// Chain, signature and checkpoint problems; empty when the ledger verifies.
    pub problems: Vec<String>,
    /// Whether a held checkpoint was checked (and is consistent, if no problem names it).
    pub checkpoint_checked: bool,
}

impl LedgerVerdict {
    pub fn verified(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A checkpoint the verifier saved earlier, and the key that signed it.
pub struct HeldCheckpoint<'a> {
    pub note: &'a str,
    pub origin: &'a str,
    pub key: &'a VerifyingKey,
}

/// Verifies the chain, every signature and, against a held checkpoint, that the
/// ledger still contains exactly the tree it checkpointed (an append-only extension:
/// nothing edited, removed or reordered, even at the end).
pub fn verify(
    contents: &Contents,
    trusted: &[(String, VerifyingKey)],
    held: Option<HeldCheckpoint>,
) -> LedgerVerdict {
    let mut problems: Vec<String> = store::verify_chain(&contents.entries, trusted)
        .iter()
        .map(|p| p.to_string())
        .collect();
    let leaves = leaves(&contents.entries);
    let root = merkle::root(&leaves);
    if let Some(held) = &held {
        match held_checkpoint(held, &leaves, &root) {
            Ok(()) => {}
            Err(e) => problems.push(e.to_string()),
        }
    }
    LedgerVerdict {
        entries: leaves.len() as u64,
        root: b64(&root),
        torn_tail_bytes: contents.torn_tail_bytes,
        problems,
        checkpoint_checked: held.is_some(),
    }
}

/// What is wrong with each of `notes` (checkpoints kept in the store, signed by `key`
/// for `origin`) against `entries`, the ledger as it is now, read once more in one
/// streamed pass holding O(log n) hashes: each must cover a prefix of the ledger, with
/// the same root (else history was rewritten, even by a writer-key holder) and no more
/// entries than the ledger has (else entries were removed).
pub fn stored_checkpoint_problems<E>(
    entries: impl IntoIterator<Item = Result<Stored, E>>,
    notes: &[String],
    origin: &str,
    key: &VerifyingKey,
) -> Result<Vec<String>, E> {
    if notes.is_empty() {
        return Ok(Vec::new());
    }
    let mut problems: Vec<(usize, String)> = Vec::new();
    // (size, note number, root) of each readable checkpoint, smallest first.
    let mut pending: Vec<(u64, usize, merkle::Hash)> = Vec::new();
    for (n, note) in notes.iter().enumerate() {
        match read_checkpoint(note, origin, key, "held checkpoint") {
            Ok(cp) => pending.push((cp.size, n, cp.root)),
            Err(e) => problems.push((n, e.to_string())),
        }
    }
    pending.sort_unstable_by_key(|&(size, n, _)| (size, n));
    let mut frontier = frontier::Frontier::default();
    let mut next = pending.iter().peekable();
    let mut check = |frontier: &frontier::Frontier, problems: &mut Vec<(usize, String)>| {
        while let Some(&&(size, n, root)) = next.peek() {
            if size != frontier.size() {
                break;
            }
            let computed = frontier.root();
            if computed != root {
                let error = ProofCheckError::HeldRewritten {
                    size,
                    error: merkle::ProofError::OldRootMismatch {
                        size,
                        expected: root,
                        computed,
                    },
                };
                problems.push((n, error.to_string()));
            }
            next.next();
        }
    };
    check(&frontier, &mut problems);
    for stored in entries {
        frontier.push(merkle::leaf_hash(&stored?.line));
        check(&frontier, &mut problems);
    }
    let ledger = frontier.size();
    for &(size, n, _) in next {
        let error = ProofCheckError::HeldBeyondLedger {
            checkpoint: size,
            ledger,
        };
        problems.push((n, error.to_string()));
    }
    problems.sort_by_key(|(n, _)| *n);
    Ok(problems
        .into_iter()
        .map(|(n, e)| format!("stored checkpoint {}: {e}", n + 1))
        .collect())
}

fn held_checkpoint(
    held: &HeldCheckpoint,
    leaves: &[merkle::Hash],
    root: &merkle::Hash,
) -> Result<(), ProofCheckError> {
    let cp = read_checkpoint(held.note, held.origin, held.key, "held checkpoint")?;
    let size = leaves.len() as u64;
    if cp.size > size {
        return Err(ProofCheckError::HeldBeyondLedger {
            checkpoint: cp.size,
            ledger: size,
        });
    }
    // The proof a remote verifier would be sent, checked the way they would check it.
    let proof = merkle::consistency_proof(leaves, cp.size as usize)
        .expect("the checkpoint's size was checked against the ledger's");
    merkle::verify_consistency(cp.size, size, &cp.root, root, &proof).map_err(|error| {
        ProofCheckError::HeldRewritten {
            size: cp.size,
            error,
        }
    })
}

/// For each environment, the image deployed there now and since when: the time of
/// the first of the latest run of deploys of that same image.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Deployment {
    pub env: String,
    pub image: String,
    pub since: String,
    pub seq: u64,
    pub identity: String,
}

pub fn deployments(entries: &[Stored]) -> Vec<Deployment> {
    let mut current: BTreeMap<String, Deployment> = BTreeMap::new();
    for s in entries.iter().filter(|s| s.entry.action == Action::Deploy) {
        let e = &s.entry;
        let (Some(env), Some(image)) = (detail_str(e, "env"), detail_str(e, "image")) else {
            continue;
        };
        let unchanged = current.get(env).is_some_and(|d| d.image == image);
        if !unchanged {
            current.insert(
                env.to_string(),
                Deployment {
                    env: env.to_string(),
                    image: image.to_string(),
                    since: e.time.clone(),
                    seq: e.seq,
                    identity: e.actor.identity.clone(),
                },
            );
        }
    }
    current.into_values().collect()
}

pub fn detail_str<'a>(entry: &'a Entry, key: &str) -> Option<&'a str> {
    entry.details.get(key).and_then(|v| v.as_str())
}

#[cfg(test)]
mod tests;
