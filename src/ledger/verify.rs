//! `cairn ledger verify` over a stream of stored entries, so that verifying a ledger
//! of any size holds one block of entries and O(log n) tree hashes, not the ledger.
//!
//! Takes the entries in ledger order from any store (the file's [`FileEntries`], or
//! rows read from a database), the trusted keys and optionally a held checkpoint.
//! Gives the same verdict as [`super::verify`] over all entries in memory: the same
//! chain, canonical-form and signature problems (line and seq, in line order, capped at
//! [`MAX_PROBLEMS`](super::store::MAX_PROBLEMS)), the same Merkle root, and the same held-checkpoint problems.
//!
//! [`FileEntries`]: super::FileEntries

use super::frontier::Frontier;
use super::store::{ChainCheck, CheckedChunk, Stored};
use super::{b64, merkle, note, read_checkpoint, HeldCheckpoint, LedgerVerdict, ProofCheckError};
use crate::keys::VerifyingKey;

/// Chunks being checked at once, per thread: enough that no core waits for the
/// slowest chunk, few enough that memory stays a few chunks of entries.
const CHUNKS_PER_THREAD: usize = 2;

/// More threads than this do not add chunks in flight, so that memory stays bounded on
/// large machines (17 chunks of 2048 entries hold about 60 MB).
const MAX_THREADS: usize = 8;

/// Verifies the chain, every signature and the Merkle root of the entries `entries`
/// yields, and, against a held checkpoint, that they still contain exactly the tree it
/// checkpointed. The first error the stream yields (an unreadable store, a line that is
/// not an entry) is returned instead of a verdict. The verdict's `torn_tail_bytes` is 0:
/// a store that can have a torn tail reports it once the stream has ended
/// ([`FileEntries::torn_tail_bytes`]).
///
/// [`FileEntries::torn_tail_bytes`]: super::FileEntries::torn_tail_bytes
pub fn verify_stream<E: Send>(
    entries: impl IntoIterator<Item = Result<Stored, E>, IntoIter: Send>,
    trusted: &[(String, VerifyingKey)],
    held: Option<HeldCheckpoint>,
) -> Result<LedgerVerdict, E> {
    verify_in_chunks(entries, trusted, held, super::store::SIGNATURE_BATCH)
}

/// [`verify_stream`], in chunks of `chunk_len` entries: a reader thread reads and
/// parses them, each is checked as a task of its own on the thread pool as soon as it
/// is read, and their findings are taken in ledger order. No chunk waits for another
/// to finish, so every core stays busy; a few chunks are in flight at a time.
fn verify_in_chunks<E: Send>(
    entries: impl IntoIterator<Item = Result<Stored, E>, IntoIter: Send>,
    trusted: &[(String, VerifyingKey)],
    held: Option<HeldCheckpoint>,
    chunk_len: usize,
) -> Result<LedgerVerdict, E> {
    let held_checkpoint = held
        .as_ref()
        .map(|h| read_checkpoint(h.note, h.origin, h.key, "held checkpoint"));
    let mut held_prefix = match &held_checkpoint {
        Some(Ok(cp)) => Some(HeldPrefix::new(cp)),
        _ => None,
    };
    let mut chain = ChainCheck::new(trusted);
    let mut tree = Frontier::default();
    let mut take_in = |checked: CheckedChunk| {
        for leaf in chain.add(checked) {
            tree.push(leaf);
            if let Some(held) = held_prefix.as_mut() {
                held.push(&tree, leaf);
            }
        }
    };
    let in_flight = CHUNKS_PER_THREAD * rayon::current_num_threads().clamp(1, MAX_THREADS) + 1;
    let entries = entries.into_iter();
    std::thread::scope(|scope| {
        // One chunk in the channel: the reader stays one chunk ahead, no more.
        let (chunks, read_chunks) = std::sync::mpsc::sync_channel(1);
        scope.spawn(move || read_in_chunks(entries, chunk_len, chunks));
        let (done, checked) = std::sync::mpsc::channel::<(usize, CheckedChunk)>();
        // Findings that arrived before an earlier chunk's, by chunk number.
        let mut early = std::collections::BTreeMap::new();
        let (mut started, mut taken) = (0, 0);
        let mut wait_for_one = |taken: &mut usize| {
            let (n, findings) = checked.recv().expect("a started chunk sends its findings");
            early.insert(n, findings);
            while let Some(findings) = early.remove(taken) {
                take_in(findings);
                *taken += 1;
            }
        };
        rayon::in_place_scope(|tasks| {
            let mut before: Option<Stored> = None;
            let mut first = 0;
            for chunk in read_chunks {
                let chunk: Vec<Stored> = chunk?;
                let chunk_before = std::mem::replace(&mut before, chunk.last().cloned());
                let (n, start, done) = (started, first, done.clone());
                tasks.spawn(move |_| {
                    let findings =
                        CheckedChunk::check(chunk_before.as_ref(), start, &chunk, trusted);
                    // The receiver outlives every task of this scope.
                    let _ = done.send((n, findings));
                });
                started += 1;
                first += chunk_len;
                while started - taken >= in_flight {
                    wait_for_one(&mut taken);
                }
            }
            while taken < started {
                wait_for_one(&mut taken);
            }
            Ok(())
        })
    })?;
    let root = tree.root();
    let mut problems: Vec<String> = chain.finish().iter().map(|p| p.to_string()).collect();
    let held_problem = match (held_checkpoint, held_prefix) {
        (Some(Err(e)), _) => Some(e),
        (Some(Ok(_)), Some(held)) => held.finish(tree.size(), &root).err(),
        _ => None,
    };
    problems.extend(held_problem.map(|e| e.to_string()));
    Ok(LedgerVerdict {
        entries: tree.size(),
        root: b64(&root),
        torn_tail_bytes: 0,
        problems,
        checkpoint_checked: held.is_some(),
    })
}

/// Sends `entries` to `chunks` `chunk_len` at a time, until they end, one is an error
/// (sent in place of its chunk) or the receiver hangs up.
fn read_in_chunks<E>(
    mut entries: impl Iterator<Item = Result<Stored, E>>,
    chunk_len: usize,
    chunks: std::sync::mpsc::SyncSender<Result<Vec<Stored>, E>>,
) {
    loop {
        let chunk: Result<Vec<Stored>, E> = entries.by_ref().take(chunk_len).collect();
        let last = !matches!(&chunk, Ok(c) if c.len() == chunk_len);
        if matches!(&chunk, Ok(c) if c.is_empty()) || chunks.send(chunk).is_err() || last {
            return;
        }
    }
}

/// What the entries streaming past tell about a held checkpoint: whether the tree of
/// its first `size` entries has its root.
///
/// Equal roots are exactly what the consistency proof that [`super::verify`] builds
/// from all leaves and checks establishes, as that proof is computed from the same
/// leaves as the ledger's root. A mismatch is reported with the error that check gives,
/// so both verifiers name a rewrite alike.
struct HeldPrefix {
    size: u64,
    root: merkle::Hash,
    /// The root of the first `size` entries, once they have streamed past.
    prefix_root: Option<merkle::Hash>,
    /// When `size` is a power of two and its root differs: the tree with the
    /// checkpoint's root in place of the first `size` entries. The consistency check
    /// takes that root as given and reports the root this tree leads to.
    with_held_prefix: Option<Frontier>,
}

impl HeldPrefix {
    fn new(cp: &note::Checkpoint) -> HeldPrefix {
        HeldPrefix {
            size: cp.size,
            root: cp.root,
            prefix_root: (cp.size == 0).then(merkle::empty_root),
            with_held_prefix: None,
        }
    }

    /// Takes note of `leaf`, just pushed to `tree`.
    fn push(&mut self, tree: &Frontier, leaf: merkle::Hash) {
        if let Some(with_held_prefix) = self.with_held_prefix.as_mut() {
            with_held_prefix.push(leaf);
        }
        if tree.size() == self.size {
            let prefix_root = tree.root();
            if prefix_root != self.root && self.size.is_power_of_two() {
                self.with_held_prefix = Some(Frontier::with_perfect_subtree(self.size, self.root));
            }
            self.prefix_root = Some(prefix_root);
        }
    }

    /// The verdict once all `size` entries, with root `root`, have streamed past.
    fn finish(self, size: u64, root: &merkle::Hash) -> Result<(), ProofCheckError> {
        let Some(prefix_root) = self.prefix_root.filter(|_| self.size <= size) else {
            return Err(ProofCheckError::HeldBeyondLedger {
                checkpoint: self.size,
                ledger: size,
            });
        };
        if prefix_root == self.root {
            return Ok(());
        }
        let error = match self.with_held_prefix {
            _ if self.size == size && size > 0 => merkle::ProofError::NewRootMismatch {
                size,
                expected: *root,
                computed: self.root,
            },
            Some(tree) => merkle::ProofError::NewRootMismatch {
                size,
                expected: *root,
                computed: tree.root(),
            },
            None => merkle::ProofError::OldRootMismatch {
                size: self.size,
                expected: self.root,
                computed: prefix_root,
            },
        };
        Err(ProofCheckError::HeldRewritten {
            size: self.size,
            error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{self, SigningKey};
    use crate::ledger::store::{MAX_PROBLEMS, SIGNATURE_BATCH};
    use crate::ledger::{self, Action, Entry, Ledger, DEFAULT_ORIGIN};

    fn entry(n: u64) -> Entry {
        let details = [("n".to_string(), serde_json::json!(n))].into();
        Entry::new(Action::Build, "ci", "2026-12-06T08:00:00Z".into(), details)
    }

    fn trust(key: &SigningKey) -> Vec<(String, VerifyingKey)> {
        vec![(keys::key_id(&key.verifying_key()), key.verifying_key())]
    }

    /// A ledger file of entries `from..to`, signed by `key`.
    struct Fixture {
        _dir: tempfile::TempDir,
        ledger: Ledger,
        key: SigningKey,
    }

    impl Fixture {
        fn new(entries: std::ops::Range<u64>, key: &SigningKey) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let ledger = Ledger::open(dir.path().join("ledger.jsonl"));
            for n in entries {
                ledger.append(entry(n), key, false).unwrap();
            }
            Fixture {
                _dir: dir,
                ledger,
                key: key.clone(),
            }
        }

        fn edit_lines(&self, edit: impl FnOnce(&mut Vec<String>)) {
            let text = std::fs::read_to_string(self.ledger.path()).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            edit(&mut lines);
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(self.ledger.path(), text).unwrap();
        }

        /// A checkpoint of the first `size` entries, signed by the ledger's key.
        fn checkpoint_of_first(&self, size: usize) -> String {
            let mut contents = self.ledger.read().unwrap();
            contents.entries.truncate(size);
            ledger::checkpoint(&contents, DEFAULT_ORIGIN, &self.key).unwrap()
        }

        /// The verdict of the all-in-memory [`ledger::verify`], after checking that the
        /// stream gives the same one in blocks of every size around the ledger's.
        fn verdict(&self, trusted: &[(String, VerifyingKey)], held: Option<&str>) -> LedgerVerdict {
            let key = self.key.verifying_key();
            let held = || {
                held.map(|note| HeldCheckpoint {
                    note,
                    origin: DEFAULT_ORIGIN,
                    key: &key,
                })
            };
            let in_memory = ledger::verify(&self.ledger.read().unwrap(), trusted, held());
            for block_len in [1, 2, 3, 7, SIGNATURE_BATCH] {
                let mut entries = self.ledger.entries().unwrap();
                let mut streamed = verify_in_chunks(&mut entries, trusted, held(), block_len)
                    .expect("every line is an entry");
                streamed.torn_tail_bytes = entries.torn_tail_bytes();
                assert_eq!(
                    serde_json::to_value(&streamed).unwrap(),
                    serde_json::to_value(&in_memory).unwrap(),
                    "blocks of {block_len}"
                );
            }
            in_memory
        }
    }

    fn problems(verdict: &LedgerVerdict) -> Vec<&str> {
        verdict.problems.iter().map(String::as_str).collect()
    }

    #[test]
    fn an_untouched_ledger_verifies_alike_with_and_without_held_checkpoints() {
        let fx = Fixture::new(0..9, &keys::generate());
        let trusted = trust(&fx.key);
        let verdict = fx.verdict(&trusted, None);
        assert!(verdict.verified());
        assert_eq!(verdict.entries, 9);
        for size in [0, 1, 4, 8, 9] {
            let note = fx.checkpoint_of_first(size);
            let verdict = fx.verdict(&trusted, Some(&note));
            assert!(verdict.verified() && verdict.checkpoint_checked, "{size}");
        }
        let empty = Fixture::new(0..0, &fx.key);
        assert_eq!(empty.verdict(&trusted, None).entries, 0);
    }

    #[test]
    fn edited_dropped_swapped_and_duplicated_entries_give_the_same_problems() {
        let key = keys::generate();
        let trusted = trust(&key);
        type Edit = fn(&mut Vec<String>);
        let edits: [(&str, Edit); 5] = [
            ("edit", |l| l[4] = l[4].replace("\"n\":4", "\"n\":40")),
            ("drop", |l| drop(l.remove(3))),
            ("swap", |l| l.swap(2, 6)),
            ("duplicate", |l| l.insert(5, l[4].clone())),
            ("first dropped", |l| drop(l.remove(0))),
        ];
        for (name, edit) in edits {
            let fx = Fixture::new(0..8, &key);
            fx.edit_lines(edit);
            let verdict = fx.verdict(&trusted, None);
            assert!(!verdict.verified(), "{name}");
        }
    }

    #[test]
    fn an_untrusted_key_and_a_torn_tail_are_reported_alike() {
        let fx = Fixture::new(0..4, &keys::generate());
        let stranger = keys::generate();
        fx.ledger.append(entry(4), &stranger, false).unwrap();
        fx.ledger.append(entry(5), &fx.key, false).unwrap();
        let mut bytes = std::fs::read(fx.ledger.path()).unwrap();
        bytes.extend_from_slice(b"{\"action\":\"bu");
        std::fs::write(fx.ledger.path(), bytes).unwrap();
        let verdict = fx.verdict(&trust(&fx.key), None);
        assert_eq!(verdict.torn_tail_bytes, 13);
        assert_eq!(
            problems(&verdict),
            [format!(
                "line 5, entry 4: signed by key {}, which is not a trusted key",
                keys::key_id(&stranger.verifying_key())
            )]
        );
    }

    #[test]
    fn problems_past_the_cap_are_counted_across_blocks() {
        let fx = Fixture::new(0..MAX_PROBLEMS as u64 + 30, &keys::generate());
        let verdict = fx.verdict(&trust(&keys::generate()), None);
        assert_eq!(verdict.problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(
            verdict.problems[MAX_PROBLEMS],
            "line 101, entry 100: 30 more problems from here on are not listed"
        );
    }

    #[test]
    fn a_rewrite_by_the_key_holder_fails_a_held_checkpoint_alike_at_every_size() {
        let key = keys::generate();
        let honest = Fixture::new(0..6, &key);
        let forged = Fixture::new(100..106, &key);
        for size in [1, 3, 4, 6] {
            let note = forged.checkpoint_of_first(size);
            let verdict = honest.verdict(&trust(&key), Some(&note));
            assert!(
                problems(&verdict)[0].contains("earlier entries were changed"),
                "{size}: {:?}",
                verdict.problems
            );
        }
        // A checkpoint of the empty tree with any other root.
        let bogus = note::Checkpoint {
            origin: DEFAULT_ORIGIN.into(),
            size: 0,
            root: [7; 32],
            extensions: Vec::new(),
        };
        let note = note::sign(&bogus.body(), DEFAULT_ORIGIN, &key).unwrap();
        assert!(!honest.verdict(&trust(&key), Some(&note)).verified());
        let empty = Fixture::new(0..0, &key);
        assert!(!empty.verdict(&trust(&key), Some(&note)).verified());
    }

    #[test]
    fn a_truncated_ledger_or_a_foreign_checkpoint_fails_alike() {
        let fx = Fixture::new(0..5, &keys::generate());
        let note = fx.checkpoint_of_first(5);
        fx.edit_lines(|l| l.truncate(3));
        let verdict = fx.verdict(&trust(&fx.key), Some(&note));
        assert_eq!(
            problems(&verdict),
            ["held checkpoint: the ledger is shorter than the checkpoint, so it was truncated: the checkpoint covers 5 entries, the ledger has only 3; restore the missing entries from a copy of the ledger (a backup, or `cairn ledger export` output) and verify again, and append nothing until then"]
        );
        let other = Fixture::new(0..5, &keys::generate());
        let foreign = other.checkpoint_of_first(2);
        let verdict = fx.verdict(&trust(&fx.key), Some(&foreign));
        assert!(problems(&verdict)[0].starts_with("held checkpoint: "));
    }

    #[test]
    fn a_line_that_is_not_an_entry_is_the_error_read_gives() {
        let fx = Fixture::new(0..5, &keys::generate());
        fx.edit_lines(|l| l[3].truncate(10));
        let read = fx.ledger.read().unwrap_err().to_string();
        let streamed = verify_stream(fx.ledger.entries().unwrap(), &trust(&fx.key), None)
            .unwrap_err()
            .to_string();
        assert_eq!(streamed, read);
        assert!(
            streamed.contains("line 4: not a valid ledger entry"),
            "{streamed}"
        );
    }
}
