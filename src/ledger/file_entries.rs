//! A ledger file read as a stream of entries, a block of lines at a time, so that a
//! ledger of any size can be verified holding one block ([`super::verify_stream`]).
//!
//! Takes a [`Ledger`]. Gives its complete entries in file order, each with the exact
//! line it was read from, then the size of a torn tail, the same as [`Ledger::read`]
//! (and the same error naming the first complete line that is not an entry). What is
//! read is fixed when the stream opens, under the shared lock: the bytes up to the last
//! `\n`, which appends never change (they only add lines after it, or cut a torn tail
//! after it). The lock is then released, so appends are not held up for as long as a
//! large ledger takes to verify.

use super::store::{last_newline_before, Ledger, LedgerError, Stored};
use rayon::prelude::*;
use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Read as _};
use std::path::PathBuf;

/// Lines read, then parsed in parallel, at a time.
const BLOCK_LINES: usize = 8192;

/// The read buffer: large reads of a file read from start to end.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// The complete entries of a ledger file, in file order; [`Ledger::entries`].
pub struct FileEntries {
    path: PathBuf,
    /// The complete lines not read yet; `None` once they are all read or reading failed.
    reader: Option<io::Take<BufReader<File>>>,
    /// The 1-based number of the next line to read.
    next_line: u64,
    /// Parsed entries of the block being handed out.
    parsed: std::vec::IntoIter<Result<Stored, LedgerError>>,
    torn_tail_bytes: u64,
}

impl Ledger {
    /// Streams every complete entry (a missing file has none). A torn tail is reported
    /// by [`FileEntries::torn_tail_bytes`], not repaired.
    pub fn entries(&self) -> Result<FileEntries, LedgerError> {
        let io_error = |action| {
            move |source| LedgerError::Io {
                action,
                path: self.path().to_path_buf(),
                source,
            }
        };
        let mut entries = FileEntries {
            path: self.path().to_path_buf(),
            reader: None,
            next_line: 1,
            parsed: Vec::new().into_iter(),
            torn_tail_bytes: 0,
        };
        let file = match File::open(self.path()) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(entries),
            Err(e) => return Err(io_error("open")(e)),
        };
        file.lock_shared().map_err(io_error("lock"))?;
        let len = file.metadata().map_err(io_error("read"))?.len();
        let complete = last_newline_before(&file, len)
            .map_err(io_error("read"))?
            .map_or(0, |p| p + 1);
        file.unlock().map_err(io_error("unlock"))?;
        entries.torn_tail_bytes = len - complete;
        entries.reader = Some(BufReader::with_capacity(READ_BUFFER_BYTES, file).take(complete));
        Ok(entries)
    }
}

impl FileEntries {
    /// Bytes after the last `\n` when the stream was opened: what a write interrupted
    /// by a crash left behind.
    pub fn torn_tail_bytes(&self) -> u64 {
        self.torn_tail_bytes
    }

    /// Reads and parses the next block of lines; an error ends the stream after it.
    fn read_block(&mut self) -> Vec<Result<Stored, LedgerError>> {
        let Some(reader) = self.reader.as_mut() else {
            return Vec::new();
        };
        let mut lines = Vec::with_capacity(BLOCK_LINES);
        let mut read_error = None;
        while lines.len() < BLOCK_LINES {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    // Only complete lines are read, so every one ends in `\n`.
                    line.pop();
                    lines.push(line);
                }
                Err(source) => {
                    read_error = Some(LedgerError::Io {
                        action: "read",
                        path: self.path.clone(),
                        source,
                    });
                    break;
                }
            }
        }
        if lines.len() < BLOCK_LINES {
            self.reader = None;
        }
        let first_line = self.next_line;
        self.next_line += lines.len() as u64;
        let path = &self.path;
        let mut parsed: Vec<Result<Stored, LedgerError>> = lines
            .into_par_iter()
            .enumerate()
            .map(|(index, line)| match serde_json::from_slice(&line) {
                Ok(entry) => Ok(Stored { entry, line }),
                Err(e) => Err(LedgerError::BadLine {
                    path: path.clone(),
                    line: first_line + index as u64,
                    reason: e.to_string(),
                }),
            })
            .collect();
        if let Some(bad) = parsed.iter().position(Result::is_err) {
            // Nothing after the first bad line is handed out.
            parsed.truncate(bad + 1);
            self.reader = None;
        } else {
            parsed.extend(read_error.map(Err));
        }
        parsed
    }
}

impl Iterator for FileEntries {
    type Item = Result<Stored, LedgerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(next) = self.parsed.next() {
            return Some(next);
        }
        self.parsed = self.read_block().into_iter();
        self.parsed.next()
    }
}
