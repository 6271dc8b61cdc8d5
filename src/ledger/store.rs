//! The ledger file: JSON Lines, one entry's canonical line plus `\n` per entry, and the
//! check of the hash chain and signatures over what it holds.
//!
//! Takes a path (a missing file is an empty ledger) and signing keys. Guarantees:
//! an append is one `write` of a whole line at the end of the file, fsynced when asked,
//! made under an exclusive `flock` on the ledger file itself, so concurrent writers on
//! one machine (threads or processes) are serialised and each entry chains to the one
//! before it. A write torn by a crash can only leave bytes after the last `\n`; those
//! are reported by [`Ledger::read`] and cut off by [`Ledger::repair`] and by the next
//! append, and every line before them is intact. Appends read only the tail of the
//! file, so their cost does not grow with the ledger. [`verify_chain`] finds any edit,
//! removal, insertion or reordering of entries.

use super::entry::{line_hash, Entry, EntryError, GENESIS_PREV};
use super::merkle;
use crate::keys::{Signature, SigningKey, Verifier as _, VerifyingKey};
use rayon::prelude::*;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// [`verify_chain`] lists at most this many problems, then says how many more it found.
pub const MAX_PROBLEMS: usize = 100;

/// Entries verified together in one `verify_batch` call: large enough that the batch's
/// multi-scalar multiplication pays off (10.6 µs a signature at 2048 against 11.7 at 512
/// and 30 one by one), small enough to spread a big ledger over all cores.
pub(super) const SIGNATURE_BATCH: usize = 2048;

/// How far back the tail is read per step when looking for the last line.
const TAIL_BLOCK: u64 = 4096;

/// A ledger file. Every operation opens the file anew and locks it for its duration, so a
/// `Ledger` can be shared between threads and used alongside other processes.
#[derive(Debug, Clone)]
pub struct Ledger {
    path: PathBuf,
}

/// Every complete entry of a ledger, in file order.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub entries: Vec<Stored>,
    /// Bytes after the last `\n`: what a write interrupted by a crash left behind.
    pub torn_tail_bytes: u64,
}

/// An entry and the exact line it was read from (without the `\n`): the hash chain and
/// the Merkle tree are over these bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub entry: Entry,
    pub line: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot {action} ledger {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("ledger {path}, line {line}: not a valid ledger entry ({reason}); the file was edited or corrupted (an interrupted write only ever leaves an unterminated last line)")]
    BadLine {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("ledger {path}: the last entry {reason}, so no entry can be chained after it; the file was edited or corrupted")]
    BadLastEntry { path: PathBuf, reason: String },
}

/// One thing wrong with the chain, at `line` (1-based) holding entry `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainProblem {
    pub line: u64,
    pub seq: u64,
    pub kind: ProblemKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProblemKind {
    #[error("seq {found}, expected {expected} (an entry was removed, duplicated or reordered)")]
    Seq { found: u64, expected: u64 },
    #[error("prev is not the genesis value, yet this is the first entry (entries before it were removed, or it comes from another ledger)")]
    NotGenesis,
    #[error("prev does not match the hash of entry {previous_seq} on line {previous_line} (an entry was removed, reordered or inserted, or the line before was edited)")]
    Prev {
        previous_seq: u64,
        previous_line: u64,
    },
    #[error("the line is not the canonical JSON of its entry (it was edited: spacing, key order or escaping differ from what was written)")]
    NotCanonical,
    #[error("signed by key {key_id}, which is not a trusted key")]
    UntrustedKey { key_id: String },
    #[error("the signature is not 64 bytes of standard base64")]
    SignatureEncoding,
    #[error("signature does not match (the entry was modified after signing)")]
    BadSignature,
    #[error("{count} more problems from here on are not listed")]
    Omitted { count: u64 },
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, entry {}: {}", self.line, self.seq, self.kind)
    }
}

impl Ledger {
    pub fn open(path: impl Into<PathBuf>) -> Ledger {
        Ledger { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes after the last `\n`: what a write interrupted by a crash left behind (read
    /// from the end of the file; a missing file has none).
    pub fn torn_tail_bytes(&self) -> Result<u64, LedgerError> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io("open")(e)),
        };
        let len = file.metadata().map_err(self.io("read"))?.len();
        let complete = last_newline_before(&file, len)
            .map_err(self.io("read"))?
            .map_or(0, |newline| newline + 1);
        Ok(len - complete)
    }

    fn io(&self, action: &'static str) -> impl FnOnce(io::Error) -> LedgerError + '_ {
        move |source| LedgerError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }

    /// Opens the file for appending, creating it (mode 0644 before the umask) and its
    /// parent directories if missing.
    fn open_for_append(&self) -> Result<File, LedgerError> {
        let open = || {
            File::options()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o644)
                .open(&self.path)
        };
        match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(self.io("create the directory of"))?;
                }
                open().map_err(self.io("create"))
            }
            opened => opened.map_err(self.io("open")),
        }
    }

    /// Appends `entry` after the last one: fills its `seq`, `prev`, `actor.key_id` and
    /// `signature`, writes its line in one `write`, and returns it as stored. A torn tail
    /// left by an earlier crash is cut off first. `durable` fsyncs before returning (and
    /// the directory too when this is the first entry); `false` is for bulk imports and
    /// benchmarks, where losing the last entries to a power cut is acceptable.
    pub fn append(
        &self,
        entry: Entry,
        key: &SigningKey,
        durable: bool,
    ) -> Result<Entry, LedgerError> {
        let mut stored = self.append_group(vec![entry], key, durable)?;
        Ok(stored.remove(0))
    }

    /// Appends `entries` in order, as [`Ledger::append`] does one, under one lock, in
    /// one `write` and one fsync: all of them or none (a partial write is taken back).
    pub fn append_group(
        &self,
        mut entries: Vec<Entry>,
        key: &SigningKey,
        durable: bool,
    ) -> Result<Vec<Entry>, LedgerError> {
        let file = self.open_for_append()?;
        file.lock().map_err(self.io("lock"))?;
        let len = file.metadata().map_err(self.io("read"))?.len();
        let tail = Tail::find(&file, len, true).map_err(self.io("read"))?;
        if tail.complete_len < len {
            // Made durable by the fsync below, together with the new entries.
            file.set_len(tail.complete_len)
                .map_err(self.io("cut the torn tail of"))?;
        }
        let (mut seq, mut prev) = match tail.last_line {
            None => (0, GENESIS_PREV.to_string()),
            Some(line) => {
                let bad = |reason: String| LedgerError::BadLastEntry {
                    path: self.path.clone(),
                    reason,
                };
                let last: Entry = serde_json::from_slice(&line)
                    .map_err(|e| bad(format!("is not a valid ledger entry ({e})")))?;
                let seq = last
                    .seq
                    .checked_add(1)
                    .ok_or_else(|| bad(format!("has seq {}, the largest possible", last.seq)))?;
                (seq, line_hash(&line))
            }
        };
        let mut lines = Vec::new();
        for entry in &mut entries {
            (entry.seq, entry.prev) = (seq, prev);
            entry.sign(key);
            let line = entry.line();
            prev = line_hash(&line);
            seq += 1;
            lines.extend_from_slice(&line);
            lines.push(b'\n');
        }
        // One write of the whole group: O_APPEND puts it at the end, and a crash can only
        // leave a prefix of it, whose last line has no `\n` and so is recognised as torn.
        let written = (&file).write(&lines);
        if !matches!(written, Ok(n) if n == lines.len()) {
            // Take back a partial write now rather than leave it for the next append.
            let _ = file.set_len(tail.complete_len);
            let source = written.err().unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the entry was only partly written (is the disk full?)",
                )
            });
            return Err(self.io("write to")(source));
        }
        if durable {
            file.sync_data().map_err(self.io("sync"))?;
            if tail.complete_len == 0 {
                self.sync_directory()?;
            }
        }
        Ok(entries)
    }

    /// Makes the ledger's directory entry durable (once, with the first entry).
    fn sync_directory(&self) -> Result<(), LedgerError> {
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io("sync the directory of"))
    }

    /// Reads every complete entry under a shared lock. A torn tail is reported, not
    /// repaired; a complete line that is not an entry is an error naming its line.
    pub fn read(&self) -> Result<Contents, LedgerError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Contents::default()),
            Err(e) => return Err(self.io("open")(e)),
        };
        file.lock_shared().map_err(self.io("lock"))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(self.io("read"))?;
        drop(file);
        let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let torn_tail_bytes = (data.len() - complete) as u64;
        let lines: Vec<&[u8]> = match complete {
            0 => Vec::new(),
            _ => {
                let mut start = 0;
                let mut lines: Vec<&[u8]> = memchr::memchr_iter(b'\n', &data[..complete])
                    .map(|end| {
                        let line = &data[start..end];
                        start = end + 1;
                        line
                    })
                    .collect();
                lines.shrink_to_fit();
                lines
            }
        };
        let parsed: Vec<Result<Stored, LedgerError>> = lines
            .par_iter()
            .enumerate()
            .map(|(index, line)| {
                serde_json::from_slice(line)
                    .map(|entry| Stored {
                        entry,
                        line: line.to_vec(),
                    })
                    .map_err(|e| LedgerError::BadLine {
                        path: self.path.clone(),
                        line: index as u64 + 1,
                        reason: e.to_string(),
                    })
            })
            .collect();
        // In file order, so the error names the first bad line.
        let entries = parsed.into_iter().collect::<Result<_, _>>()?;
        Ok(Contents {
            entries,
            torn_tail_bytes,
        })
    }

    /// Writes `entries`' stored lines as they are (a copy of another ledger, already
    /// verified), under the exclusive lock, and fsyncs.
    pub fn append_lines(&self, entries: &[Stored]) -> Result<(), LedgerError> {
        let file = self.open_for_append()?;
        file.lock().map_err(self.io("lock"))?;
        let mut out = io::BufWriter::new(&file);
        for stored in entries {
            out.write_all(&stored.line)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(self.io("write to"))?;
        }
        out.flush().map_err(self.io("write to"))?;
        drop(out);
        file.sync_data().map_err(self.io("sync"))?;
        self.sync_directory()
    }

    /// Cuts off a torn tail under the exclusive lock and fsyncs; returns the bytes dropped.
    pub fn repair(&self) -> Result<u64, LedgerError> {
        let file = match File::options().read(true).write(true).open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io("open")(e)),
        };
        file.lock().map_err(self.io("lock"))?;
        let len = file.metadata().map_err(self.io("read"))?.len();
        let tail = Tail::find(&file, len, false).map_err(self.io("read"))?;
        if tail.complete_len < len {
            file.set_len(tail.complete_len)
                .map_err(self.io("cut the torn tail of"))?;
            file.sync_data().map_err(self.io("sync"))?;
        }
        Ok(len - tail.complete_len)
    }
}

/// The end of the file as found by reading backwards from its end.
struct Tail {
    /// Length up to and including the last `\n`.
    complete_len: u64,
    /// The last complete line, without its `\n` (when asked for and there is one).
    last_line: Option<Vec<u8>>,
}

impl Tail {
    fn find(file: &File, len: u64, want_last_line: bool) -> io::Result<Tail> {
        let Some(last_newline) = last_newline_before(file, len)? else {
            return Ok(Tail {
                complete_len: 0,
                last_line: None,
            });
        };
        let last_line = if want_last_line {
            let start = last_newline_before(file, last_newline)?.map_or(0, |p| p + 1);
            let mut line = vec![0; (last_newline - start) as usize];
            file.read_exact_at(&mut line, start)?;
            Some(line)
        } else {
            None
        };
        Ok(Tail {
            complete_len: last_newline + 1,
            last_line,
        })
    }
}

/// Offset of the last `\n` before offset `end`, reading backwards block by block.
pub(super) fn last_newline_before(file: &File, end: u64) -> io::Result<Option<u64>> {
    let mut block = [0u8; TAIL_BLOCK as usize];
    let mut block_end = end;
    while block_end > 0 {
        let start = block_end.saturating_sub(TAIL_BLOCK);
        let buf = &mut block[..(block_end - start) as usize];
        file.read_exact_at(buf, start)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + i as u64));
        }
        block_end = start;
    }
    Ok(None)
}

/// Checks the chain: seq 0, 1, 2, ...; each `prev` the hash of the line before (the
/// genesis value for the first); each line exactly the canonical form of its entry; every
/// signature valid under a trusted key. Returns every problem in line order, the first
/// [`MAX_PROBLEMS`] of them and then an [`ProblemKind::Omitted`] count; empty means the
/// ledger is intact.
pub fn verify_chain(entries: &[Stored], trusted: &[(String, VerifyingKey)]) -> Vec<ChainProblem> {
    let mut check = ChainCheck::new(trusted);
    check.push(entries);
    check.finish()
}

/// The chain check of a ledger fed block by block ([`verify_chain`] is one block, a
/// streamed verify many): each entry is checked against the one before it, which for a
/// block's first entry is the last entry of the block before.
pub(super) struct ChainCheck<'k> {
    trusted: &'k [(String, VerifyingKey)],
    /// The last entry pushed, which the next block's first entry chains to.
    last: Option<Stored>,
    /// Entries pushed so far: the index of the next block's first entry.
    checked: usize,
    /// The first problems in line order, at most `MAX_PROBLEMS + 1` (the one past the
    /// cap names where the unlisted ones start).
    listed: Vec<ChainProblem>,
    /// Every problem found, listed or not.
    total: u64,
}

impl<'k> ChainCheck<'k> {
    pub(super) fn new(trusted: &'k [(String, VerifyingKey)]) -> ChainCheck<'k> {
        ChainCheck {
            trusted,
            last: None,
            checked: 0,
            listed: Vec::new(),
            total: 0,
        }
    }

    /// Checks the next `block` of entries, its signature batches in parallel; returns
    /// the entries' Merkle leaf hashes, computed in the same pass.
    pub(super) fn push(&mut self, block: &[Stored]) -> Vec<merkle::Hash> {
        let (before, first, trusted) = (self.last.as_ref(), self.checked, self.trusted);
        let chunks: Vec<CheckedChunk> = block
            .par_chunks(SIGNATURE_BATCH)
            .enumerate()
            .map(|(n, chunk)| {
                let start = n * SIGNATURE_BATCH;
                let before = start.checked_sub(1).map(|i| &block[i]).or(before);
                CheckedChunk::check(before, first + start, chunk, trusted)
            })
            .collect();
        let mut leaves = Vec::with_capacity(block.len());
        for chunk in chunks {
            leaves.extend(self.add(chunk));
        }
        self.checked += block.len();
        if let Some(last) = block.last() {
            self.last = Some(last.clone());
        }
        leaves
    }

    /// Takes in what checking the next chunk found, in ledger order; returns its
    /// leaves.
    pub(super) fn add(&mut self, chunk: CheckedChunk) -> Vec<merkle::Hash> {
        self.total += chunk.count;
        let room = MAX_PROBLEMS + 1 - self.listed.len();
        self.listed.extend(chunk.problems.into_iter().take(room));
        chunk.leaves
    }

    /// Every problem in line order, the first [`MAX_PROBLEMS`] of them and then an
    /// [`ProblemKind::Omitted`] count.
    pub(super) fn finish(self) -> Vec<ChainProblem> {
        let mut listed = self.listed;
        if self.total > MAX_PROBLEMS as u64 {
            let first_omitted = listed.pop().expect("more than MAX_PROBLEMS were listed");
            listed.truncate(MAX_PROBLEMS);
            listed.push(ChainProblem {
                kind: ProblemKind::Omitted {
                    count: self.total - MAX_PROBLEMS as u64,
                },
                ..first_omitted
            });
        }
        listed
    }
}

/// Whether `prev` is the hex SHA-256 of `line` ([`line_hash`], without allocating: verify
/// does this for every entry).
fn names_line(prev: &str, line: &[u8]) -> bool {
    let mut hex = [0u8; 64];
    hex::encode_to_slice(crate::digest::Sha256Digest::of(line).as_bytes(), &mut hex)
        .expect("64 hex digits for 32 bytes");
    prev.as_bytes() == hex
}

/// What checking one chunk of entries found.
pub(super) struct CheckedChunk {
    /// Its first problems in line order, at most `MAX_PROBLEMS + 1`.
    problems: Vec<ChainProblem>,
    /// How many problems it has in all.
    count: u64,
    /// Its entries' Merkle leaf hashes.
    leaves: Vec<merkle::Hash>,
}

impl CheckedChunk {
    /// Checks `chunk`, which starts at index `first` of the ledger, right after
    /// `before` (`None` at the start of the ledger), and hashes its leaves.
    pub(super) fn check(
        before: Option<&Stored>,
        first: usize,
        chunk: &[Stored],
        trusted: &[(String, VerifyingKey)],
    ) -> CheckedChunk {
        let mut problems = check_chunk(before, first, chunk, trusted);
        let count = problems.len() as u64;
        problems.truncate(MAX_PROBLEMS + 1);
        CheckedChunk {
            problems,
            count,
            leaves: chunk.iter().map(|s| merkle::leaf_hash(&s.line)).collect(),
        }
    }
}

/// The problems of `chunk`, which starts at index `first` of the ledger, right after
/// `before` (`None` at the start of the ledger), in line order.
fn check_chunk(
    before: Option<&Stored>,
    first: usize,
    chunk: &[Stored],
    trusted: &[(String, VerifyingKey)],
) -> Vec<ChainProblem> {
    let mut problems = Vec::new();
    let mut batch = SignatureBatch::default();
    let mut scratch = Vec::new();
    for (offset, stored) in chunk.iter().enumerate() {
        let index = first + offset;
        let entry = &stored.entry;
        let problem = |kind| ChainProblem {
            line: index as u64 + 1,
            seq: entry.seq,
            kind,
        };
        let previous = offset.checked_sub(1).map(|i| &chunk[i]).or(before);
        let expected = previous.map_or(0, |p| p.entry.seq.wrapping_add(1));
        if entry.seq != expected {
            problems.push(problem(ProblemKind::Seq {
                found: entry.seq,
                expected,
            }));
        }
        match previous {
            None if entry.prev != GENESIS_PREV => problems.push(problem(ProblemKind::NotGenesis)),
            Some(p) if !names_line(&entry.prev, &p.line) => {
                problems.push(problem(ProblemKind::Prev {
                    previous_seq: p.entry.seq,
                    previous_line: index as u64,
                }))
            }
            _ => {}
        }
        let canonical = is_line_of(entry, &stored.line, &mut scratch);
        if !canonical {
            problems.push(problem(ProblemKind::NotCanonical));
        }
        match entry.signature_parts(trusted) {
            Ok((signature, key)) => batch.push(
                problems.len(),
                problem(ProblemKind::BadSignature),
                SignedMessage::of(stored, canonical),
                signature,
                key,
            ),
            Err(EntryError::UntrustedKey { key_id, .. }) => {
                problems.push(problem(ProblemKind::UntrustedKey { key_id }))
            }
            Err(EntryError::SignatureEncoding { .. }) => {
                problems.push(problem(ProblemKind::SignatureEncoding))
            }
            Err(EntryError::BadSignature { .. }) => {
                problems.push(problem(ProblemKind::BadSignature))
            }
        }
    }
    batch.check(&mut problems);
    problems
}

/// Whether `line` is exactly the canonical JSON of `entry`. The entry is serialised into
/// `scratch`, which one chunk's entries share, so that verify allocates nothing for this
/// check and compares each line at once rather than piece by piece.
fn is_line_of(entry: &Entry, line: &[u8], scratch: &mut Vec<u8>) -> bool {
    scratch.clear();
    serde_json::to_writer(&mut *scratch, entry).is_ok() && scratch == line
}

/// The bytes the entry's signature covers ([`Entry::signed_bytes`]), as the pieces they
/// are made of. For a canonical line they are the line around its `,"signature":"..."`
/// member, found without serialising the entry again (a fifth of the cost of checking an
/// entry) and never copied together: in canonical JSON the top-level member is the last
/// such run of bytes, as only `time`, a string whose quotes would be escaped, follows it.
enum SignedMessage<'a> {
    AroundSignature([&'a [u8]; 2]),
    Serialised(Vec<u8>),
}

impl<'a> SignedMessage<'a> {
    fn of(stored: &'a Stored, canonical: bool) -> SignedMessage<'a> {
        let entry = &stored.entry;
        const MEMBER: &[u8] = b",\"signature\":\"";
        if canonical {
            if let Some(at) = memchr::memmem::rfind(&stored.line, MEMBER) {
                let value = &stored.line[at + MEMBER.len()..];
                let signature = entry.signature.as_bytes();
                if value.starts_with(signature) && value.get(signature.len()) == Some(&b'"') {
                    let end = at + MEMBER.len() + signature.len() + 1;
                    return SignedMessage::AroundSignature([
                        &stored.line[..at],
                        &stored.line[end..],
                    ]);
                }
            }
        }
        SignedMessage::Serialised(entry.signed_bytes())
    }

    fn pieces(&self) -> [&[u8]; 2] {
        match self {
            SignedMessage::AroundSignature(pieces) => *pieces,
            SignedMessage::Serialised(bytes) => [bytes, &[]],
        }
    }
}

#[derive(Default)]
struct SignatureBatch<'a> {
    messages: Vec<SignedMessage<'a>>,
    signatures: Vec<Signature>,
    keys: Vec<VerifyingKey>,
    /// (insert position in the problem list, the problem to report if it fails)
    failures: Vec<(usize, ChainProblem)>,
}

impl<'a> SignatureBatch<'a> {
    fn push(
        &mut self,
        position: usize,
        failure: ChainProblem,
        message: SignedMessage<'a>,
        signature: Signature,
        key: &VerifyingKey,
    ) {
        self.messages.push(message);
        self.signatures.push(signature);
        self.keys.push(*key);
        self.failures.push((position, failure));
    }

    fn check(self, problems: &mut Vec<ChainProblem>) {
        let pieces: Vec<[&[u8]; 2]> = self.messages.iter().map(SignedMessage::pieces).collect();
        let messages: Vec<&[&[u8]]> = pieces.iter().map(|p| p.as_slice()).collect();
        if messages.is_empty() || crate::keys::verify_batch(&messages, &self.signatures, &self.keys)
        {
            return;
        }
        // Some signature in the batch is bad: find which, one by one.
        let bad: Vec<(usize, ChainProblem)> = self
            .failures
            .into_iter()
            .enumerate()
            .filter(|(i, _)| {
                self.keys[*i]
                    .verify(&messages[*i].concat(), &self.signatures[*i])
                    .is_err()
            })
            .map(|(_, failure)| failure)
            .collect();
        // Insert from the back so earlier positions stay valid.
        for (position, problem) in bad.into_iter().rev() {
            problems.insert(position, problem);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::ledger::entry::Action;

    fn entry(n: u64) -> Entry {
        let details = [
            ("env".to_string(), serde_json::json!("prod")),
            ("n".to_string(), serde_json::json!(n)),
        ]
        .into();
        Entry::new(
            Action::Deploy,
            "ci/job/42",
            "2026-11-27T05:39:03Z".into(),
            details,
        )
    }

    fn trust(key: &SigningKey) -> Vec<(String, VerifyingKey)> {
        vec![(keys::key_id(&key.verifying_key()), key.verifying_key())]
    }

    /// A ledger of `n` entries in a fresh directory.
    struct Fixture {
        _dir: tempfile::TempDir,
        ledger: Ledger,
        key: SigningKey,
    }

    impl Fixture {
        fn new(n: u64) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let ledger = Ledger::open(dir.path().join("audit/ledger.jsonl"));
            let key = keys::generate();
            for i in 0..n {
                ledger.append(entry(i), &key, false).unwrap();
            }
            Fixture {
                _dir: dir,
                ledger,
                key,
            }
        }

        fn lines(&self) -> Vec<String> {
            let text = std::fs::read_to_string(self.ledger.path()).unwrap();
            text.lines().map(str::to_string).collect()
        }

        fn rewrite(&self, lines: &[String]) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            std::fs::write(self.ledger.path(), text).unwrap();
        }

        /// verify_chain's findings, as the user reads them.
        fn problems(&self) -> Vec<String> {
            self.problems_trusting(&trust(&self.key))
        }

        fn problems_trusting(&self, trusted: &[(String, VerifyingKey)]) -> Vec<String> {
            let contents = self.ledger.read().unwrap();
            verify_chain(&contents.entries, trusted)
                .iter()
                .map(ToString::to_string)
                .collect()
        }
    }

    const PREV: &str =
        "(an entry was removed, reordered or inserted, or the line before was edited)";
    const SEQ: &str = "(an entry was removed, duplicated or reordered)";

    #[test]
    fn appends_fill_seq_prev_and_signature_and_read_returns_them() {
        let fx = Fixture::new(0);
        assert!(fx.ledger.read().unwrap().entries.is_empty(), "missing file");
        let appended: Vec<Entry> = (0..5)
            .map(|i| fx.ledger.append(entry(i), &fx.key, true).unwrap())
            .collect();
        let contents = fx.ledger.read().unwrap();
        assert_eq!(contents.torn_tail_bytes, 0);
        let read: Vec<Entry> = contents.entries.iter().map(|s| s.entry.clone()).collect();
        assert_eq!(read, appended);
        let mut prev = GENESIS_PREV.to_string();
        for (i, stored) in contents.entries.iter().enumerate() {
            assert_eq!(stored.entry.seq, i as u64);
            assert_eq!(stored.entry.prev, prev);
            assert_eq!(stored.entry.details["n"], serde_json::json!(i));
            assert_eq!(stored.line, stored.entry.line());
            stored.entry.verify(&trust(&fx.key)).unwrap();
            prev = line_hash(&stored.line);
        }
        assert_eq!(verify_chain(&contents.entries, &trust(&fx.key)), vec![]);
    }

    #[test]
    fn an_edited_value_breaks_its_signature_and_the_next_prev() {
        let fx = Fixture::new(6);
        let mut lines = fx.lines();
        lines[3] = lines[3].replace("ci/job/42", "ci/job/43");
        fx.rewrite(&lines);
        assert_eq!(
            fx.problems(),
            [
                "line 4, entry 3: signature does not match (the entry was modified after signing)"
                    .to_string(),
                format!(
                    "line 5, entry 4: prev does not match the hash of entry 3 on line 4 {PREV}"
                ),
            ]
        );
    }

    #[test]
    fn a_flipped_signature_byte_is_a_bad_signature() {
        let fx = Fixture::new(3);
        let mut lines = fx.lines();
        let at = lines[1].find("\"signature\":\"").unwrap() + 13;
        let flipped = if &lines[1][at..at + 1] == "A" {
            "B"
        } else {
            "A"
        };
        lines[1].replace_range(at..at + 1, flipped);
        fx.rewrite(&lines);
        let problems = fx.problems();
        assert_eq!(
            problems[0],
            "line 2, entry 1: signature does not match (the entry was modified after signing)"
        );
        assert!(problems[1].starts_with("line 3, entry 2: prev does not match"));
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn a_formatting_edit_that_keeps_the_json_valid_is_not_canonical() {
        let fx = Fixture::new(3);
        let mut lines = fx.lines();
        lines[1] = lines[1].replacen("{\"action\"", "{ \"action\"", 1);
        fx.rewrite(&lines);
        assert_eq!(
            fx.problems(),
            [
                "line 2, entry 1: the line is not the canonical JSON of its entry (it was edited: spacing, key order or escaping differ from what was written)".to_string(),
                format!("line 3, entry 2: prev does not match the hash of entry 1 on line 2 {PREV}"),
            ]
        );
    }

    #[test]
    fn a_dropped_entry_is_found_where_the_gap_is() {
        let fx = Fixture::new(5);
        let mut lines = fx.lines();
        lines.remove(2);
        fx.rewrite(&lines);
        assert_eq!(
            fx.problems(),
            [
                format!("line 3, entry 3: seq 3, expected 2 {SEQ}"),
                format!(
                    "line 3, entry 3: prev does not match the hash of entry 1 on line 2 {PREV}"
                ),
            ]
        );
    }

    #[test]
    fn a_dropped_first_entry_is_not_genesis() {
        let fx = Fixture::new(3);
        let mut lines = fx.lines();
        lines.remove(0);
        fx.rewrite(&lines);
        assert_eq!(
            fx.problems(),
            [
                format!("line 1, entry 1: seq 1, expected 0 {SEQ}"),
                "line 1, entry 1: prev is not the genesis value, yet this is the first entry (entries before it were removed, or it comes from another ledger)".to_string(),
            ]
        );
    }

    #[test]
    fn swapped_entries_are_found() {
        let fx = Fixture::new(5);
        let mut lines = fx.lines();
        lines.swap(2, 3);
        fx.rewrite(&lines);
        assert_eq!(
            fx.problems(),
            [
                format!("line 3, entry 3: seq 3, expected 2 {SEQ}"),
                format!(
                    "line 3, entry 3: prev does not match the hash of entry 1 on line 2 {PREV}"
                ),
                format!("line 4, entry 2: seq 2, expected 4 {SEQ}"),
                format!(
                    "line 4, entry 2: prev does not match the hash of entry 3 on line 3 {PREV}"
                ),
                format!("line 5, entry 4: seq 4, expected 3 {SEQ}"),
                format!(
                    "line 5, entry 4: prev does not match the hash of entry 2 on line 4 {PREV}"
                ),
            ]
        );
    }

    #[test]
    fn a_duplicated_entry_is_found() {
        let fx = Fixture::new(4);
        let mut lines = fx.lines();
        lines.insert(3, lines[2].clone());
        fx.rewrite(&lines);
        assert_eq!(
            fx.problems(),
            [
                format!("line 4, entry 2: seq 2, expected 3 {SEQ}"),
                format!(
                    "line 4, entry 2: prev does not match the hash of entry 2 on line 3 {PREV}"
                ),
            ]
        );
    }

    #[test]
    fn an_entry_replayed_from_another_ledger_by_a_trusted_key_breaks_the_chain() {
        let fx = Fixture::new(4);
        let other = Fixture {
            key: fx.key.clone(),
            ..Fixture::new(0)
        };
        for i in 10..13 {
            other.ledger.append(entry(i), &other.key, false).unwrap();
        }
        let mut lines = fx.lines();
        lines[2] = other.lines()[2].clone();
        fx.rewrite(&lines);
        assert_eq!(
            fx.problems(),
            [
                format!(
                    "line 3, entry 2: prev does not match the hash of entry 1 on line 2 {PREV}"
                ),
                format!(
                    "line 4, entry 3: prev does not match the hash of entry 2 on line 3 {PREV}"
                ),
            ]
        );
    }

    #[test]
    fn entries_signed_by_an_untrusted_key_are_named() {
        let fx = Fixture::new(2);
        let stranger = keys::generate();
        fx.ledger.append(entry(2), &stranger, false).unwrap();
        fx.ledger.append(entry(3), &fx.key, false).unwrap();
        assert_eq!(
            fx.problems(),
            [format!(
                "line 3, entry 2: signed by key {}, which is not a trusted key",
                keys::key_id(&stranger.verifying_key())
            )]
        );
    }

    #[test]
    fn problems_past_the_cap_are_counted_not_listed() {
        let fx = Fixture::new(MAX_PROBLEMS as u64 + 30);
        let problems = fx.problems_trusting(&trust(&keys::generate()));
        assert_eq!(problems.len(), MAX_PROBLEMS + 1);
        assert!(problems[MAX_PROBLEMS - 1].starts_with("line 100, entry 99: signed by key"));
        assert_eq!(
            problems[MAX_PROBLEMS],
            "line 101, entry 100: 30 more problems from here on are not listed"
        );
    }

    #[test]
    fn bad_signatures_in_a_large_ledger_are_named_in_line_order() {
        // More than one signature batch, with bad entries in two batches.
        let fx = Fixture::new(SIGNATURE_BATCH as u64 + 10);
        let mut lines = fx.lines();
        let victims = [5, SIGNATURE_BATCH + 3];
        for &v in &victims {
            lines[v] = lines[v].replace("\"env\":\"prod\"", "\"env\":\"test\"");
        }
        fx.rewrite(&lines);
        let problems = fx.problems();
        let expected: Vec<String> = victims
            .iter()
            .flat_map(|&v| {
                [
                    format!("line {}, entry {v}: signature does not match (the entry was modified after signing)", v + 1),
                    format!("line {}, entry {}: prev does not match the hash of entry {v} on line {} {PREV}", v + 2, v + 1, v + 1),
                ]
            })
            .collect();
        assert_eq!(problems, expected);
    }

    #[test]
    fn the_signed_message_cut_from_a_canonical_line_is_what_was_signed() {
        let key = keys::generate();
        let mut tricky = entry(0);
        tricky.details.insert(
            "signature".into(),
            serde_json::json!({"signature": "x\",\"signature\":\"y", "z": 1}),
        );
        tricky.actor.identity = "a\",\"signature\":\"b".into();
        for mut e in [entry(7), tricky] {
            e.sign(&key);
            let stored = Stored {
                line: e.line(),
                entry: e,
            };
            assert_eq!(
                SignedMessage::of(&stored, true).pieces().concat(),
                stored.entry.signed_bytes()
            );
        }
    }

    #[test]
    fn a_complete_line_that_is_not_an_entry_is_an_error_naming_it() {
        let fx = Fixture::new(3);
        let mut lines = fx.lines();
        lines[1].truncate(20);
        fx.rewrite(&lines);
        let err = fx.ledger.read().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "ledger {}, line 2: not a valid ledger entry (EOF while parsing",
                fx.ledger.path().display()
            )),
            "{err}"
        );
        lines.truncate(2);
        fx.rewrite(&lines);
        let err = fx
            .ledger
            .append(entry(3), &fx.key, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the last entry is not a valid ledger entry (EOF while parsing"),
            "{err}"
        );
    }

    #[test]
    fn a_torn_tail_is_reported_then_repaired_by_append_without_losing_entries() {
        let fx = Fixture::new(4);
        let full = std::fs::read(fx.ledger.path()).unwrap();
        let last_start = full[..full.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        // A crash in the middle of writing entry 3.
        let cut = last_start + 40;
        std::fs::write(fx.ledger.path(), &full[..cut]).unwrap();
        let contents = fx.ledger.read().unwrap();
        assert_eq!(contents.torn_tail_bytes, 40);
        assert_eq!(contents.entries.len(), 3);
        let appended = fx.ledger.append(entry(3), &fx.key, true).unwrap();
        assert_eq!(appended.seq, 3);
        assert_eq!(appended.prev, line_hash(&contents.entries[2].line));
        let contents = fx.ledger.read().unwrap();
        assert_eq!(contents.torn_tail_bytes, 0);
        assert_eq!(contents.entries.len(), 4);
        assert_eq!(fx.problems(), Vec::<String>::new());
    }

    #[test]
    fn garbage_without_a_newline_is_a_torn_tail_that_repair_cuts_off() {
        let fx = Fixture::new(3);
        let before = std::fs::read(fx.ledger.path()).unwrap();
        let mut torn = before.clone();
        torn.extend_from_slice(&[0u8; 5000]);
        torn.extend_from_slice(b"{\"action\":");
        std::fs::write(fx.ledger.path(), &torn).unwrap();
        let contents = fx.ledger.read().unwrap();
        assert_eq!(contents.torn_tail_bytes, 5010);
        assert_eq!(contents.entries.len(), 3);
        assert_eq!(fx.ledger.repair().unwrap(), 5010);
        assert_eq!(std::fs::read(fx.ledger.path()).unwrap(), before);
        assert_eq!(fx.ledger.repair().unwrap(), 0);
        assert_eq!(fx.ledger.append(entry(3), &fx.key, false).unwrap().seq, 3);
        assert_eq!(fx.problems(), Vec::<String>::new());
    }

    #[test]
    fn a_torn_first_entry_leaves_an_empty_ledger_that_restarts_at_genesis() {
        let fx = Fixture::new(0);
        std::fs::create_dir_all(fx.ledger.path().parent().unwrap()).unwrap();
        std::fs::write(fx.ledger.path(), b"{\"action\":\"build\",\"ac").unwrap();
        let contents = fx.ledger.read().unwrap();
        assert_eq!((contents.entries.len(), contents.torn_tail_bytes), (0, 21));
        let first = fx.ledger.append(entry(0), &fx.key, true).unwrap();
        assert_eq!((first.seq, first.prev.as_str()), (0, GENESIS_PREV));
        assert_eq!(fx.problems(), Vec::<String>::new());
    }

    #[test]
    fn the_last_line_is_found_across_tail_blocks() {
        // An entry longer than the block the tail is read in.
        let fx = Fixture::new(2);
        let mut big = entry(2);
        big.details.insert(
            "blob".into(),
            serde_json::json!("x".repeat(3 * TAIL_BLOCK as usize)),
        );
        fx.ledger.append(big, &fx.key, false).unwrap();
        let next = fx.ledger.append(entry(3), &fx.key, false).unwrap();
        assert_eq!(next.seq, 3);
        assert_eq!(fx.problems(), Vec::<String>::new());
    }
}
