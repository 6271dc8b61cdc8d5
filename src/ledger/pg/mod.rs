//! The ledger in a PostgreSQL database: the same entry lines as the file store, one
//! row each, appended by any number of writers on any number of machines.
//!
//! Takes a `postgres://` or `postgresql://` URL ([`connect`] says how credentials and
//! TLS are found). Guarantees:
//! - a row holds the exact line bytes the file store would write; reading never
//!   re-serialises, so the chain, signatures and Merkle leaves are the file's;
//! - `seq` is unique and dense: an append locks the head row (next seq and `prev`),
//!   signs, inserts the row and moves the head in one transaction, so concurrent
//!   writers take turns and none signs twice;
//! - an append retried after a dropped connection is recorded once: each row carries an
//!   append key, the SHA-256 of the signed entry without `seq` and `prev`, unique, and
//!   looked up before every attempt;
//! - the schema is versioned ([`SCHEMA_VERSION`]); a database holding tables that are
//!   not ours, or a newer version, is refused before anything is written.

pub mod connect;

use super::entry::{line_hash, Entry, GENESIS_PREV};
use super::store::Stored;
use crate::digest::Sha256Digest;
use crate::keys::{self, SigningKey};
use connect::{Connection, Target};
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The schema this cairn writes and understands.
pub const SCHEMA_VERSION: i32 = 1;

/// Rows fetched per query when reading the ledger in order.
const PAGE: i64 = 10_000;

/// How long an append keeps reconnecting after the connection dropped (a restarting
/// server refuses connections for a few seconds).
const RECONNECT_FOR: Duration = Duration::from_secs(30);

const TABLES: [&str; 4] = [
    "cairn_schema",
    "cairn_ledger_entries",
    "cairn_ledger_head",
    "cairn_ledger_checkpoints",
];

/// Migrations from version N-1 to N, index N-1; each runs in the transaction that
/// records the new version.
const MIGRATIONS: [&str; 1] = ["
    CREATE TABLE cairn_schema (version integer NOT NULL);
    CREATE TABLE cairn_ledger_entries (
        seq bigint PRIMARY KEY CHECK (seq >= 0),
        line bytea NOT NULL,
        append_key bytea NOT NULL UNIQUE
    );
    CREATE TABLE cairn_ledger_head (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        next_seq bigint NOT NULL,
        prev text NOT NULL
    );
    CREATE TABLE cairn_ledger_checkpoints (
        id bigserial PRIMARY KEY,
        size bigint NOT NULL,
        note text NOT NULL
    );
"];

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("ledger {location}: not a usable PostgreSQL URL: {reason}")]
    Url { location: String, reason: String },
    #[error("sslrootcert {path}: {reason}")]
    RootCert { path: PathBuf, reason: String },
    #[error(
        "cannot connect to the ledger database {location}: {}",
        describe(cause)
    )]
    Connect {
        location: String,
        /// Shown in the message with its causes ([`describe`]), so not a `source`.
        cause: tokio_postgres::Error,
    },
    #[error("ledger database {location}: {}", describe(cause))]
    Query {
        location: String,
        cause: tokio_postgres::Error,
    },
    #[error("ledger database {location} holds tables that are not a cairn ledger ({tables}); refusing to touch them")]
    ForeignSchema { location: String, tables: String },
    #[error("ledger database {location} has cairn schema version {found}; this cairn knows up to {SCHEMA_VERSION}")]
    NewerSchema { location: String, found: i32 },
    #[error("ledger database {location}: row {seq} is not a ledger entry ({reason}); the row was edited")]
    BadRow {
        location: String,
        seq: i64,
        reason: String,
    },
    #[error("ledger database {location}: no answer after {seconds} s {what}")]
    Timeout {
        location: String,
        what: &'static str,
        seconds: u64,
    },
    #[error("ledger database {location}: cannot start the client: {reason}")]
    Runtime { location: String, reason: String },
    #[error("ledger database {location} already holds {entries} entries; import only loads into an empty ledger")]
    NotEmpty { location: String, entries: u64 },
}

/// A driver error as a user reads it: the server's message and SQLSTATE, or the
/// client's (connection) error with its cause.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut text = error.to_string();
            let mut cause = std::error::Error::source(error);
            while let Some(c) = cause {
                // Some errors already show their cause in their own message.
                let c_text = c.to_string();
                if !text.contains(&c_text) {
                    text = format!("{text}: {c_text}");
                }
                cause = c.source();
            }
            text
        }
    }
}

impl crate::diag::Diagnose for DatabaseError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        let code = |e: &tokio_postgres::Error| e.code().map(|c| c.code().to_string());
        let text = match self {
            DatabaseError::Connect { cause, .. } => match code(cause).as_deref() {
                Some("28P01" | "28000") => "check the user and password: in the URL, $PGPASSWORD or ~/.pgpass (host:port:database:user:password)",
                Some("3D000") => "create the database first (createdb), or fix its name in the URL",
                _ if describe(cause).contains("password missing") => "the server asks for a password: give it in the URL, $PGPASSWORD or ~/.pgpass (host:port:database:user:password)",
                _ => "check the host and port in the URL and that the server accepts connections from here (connect_timeout=SECONDS sets how long to wait)",
            },
            DatabaseError::Query { cause, .. } if code(cause).as_deref() == Some("42501") => {
                "the database role may not write the ledger: use a role with INSERT and UPDATE on the cairn_ledger_* tables (a read-only role can verify, export and show)"
            }
            DatabaseError::ForeignSchema { .. } => "give cairn its own database, or its own schema: add options=-csearch_path%3Dcairn to the URL after CREATE SCHEMA cairn",
            DatabaseError::NewerSchema { .. } => "a newer cairn migrated this database: use that version",
            DatabaseError::RootCert { .. } => "sslrootcert names a PEM file of the CA certificates that sign the server's certificate",
            DatabaseError::NotEmpty { .. } => "import into a new database; `cairn ledger export` copies a database ledger to a file",
            _ => return None,
        };
        Some(text.into())
    }
}

/// Whether another attempt on a new connection may succeed: the connection dropped or
/// the server is shutting down or starting up.
fn is_transient(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
        }
        None => error.as_db_error().is_none(),
    }
}

/// The key that makes a retried append idempotent: what was signed, without the
/// position (`seq`, `prev`) that a retry may assign differently.
pub fn append_key(entry: &Entry) -> [u8; 32] {
    let mut positionless = entry.clone();
    positionless.seq = 0;
    positionless.prev.clear();
    positionless.signature.clear();
    *Sha256Digest::of(&positionless.line()).as_bytes()
}

/// A ledger in a PostgreSQL database; one connection, reconnected when it drops.
pub struct PgLedger {
    target: Target,
    client: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgLedger({})", self.target.shown())
    }
}

/// What the database holds, schema-wise.
enum Schema {
    /// No tables at all: a new ledger, created by the first write.
    Absent,
    Current,
}

impl PgLedger {
    /// Connects and checks the schema (refusing foreign or newer ones).
    pub fn open(url: &str) -> Result<PgLedger, DatabaseError> {
        let target = Target::parse(url)?;
        let client = target.connect()?;
        let ledger = PgLedger {
            target,
            client: Mutex::new(Some(client)),
        };
        ledger.with_client(|c| ledger.schema(c).map(|_| ()))?;
        Ok(ledger)
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        self.target.shown()
    }

    /// Runs `work` on the connection (connecting first if it dropped), once.
    fn with_client<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, DatabaseError>,
    ) -> Result<T, DatabaseError> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = Some(self.target.connect()?);
        }
        let client = slot.as_mut().expect("connected above");
        let result = work(client);
        if let Err(DatabaseError::Query { cause, .. }) = &result {
            if is_transient(cause) {
                *slot = None;
            }
        }
        result
    }

    fn schema(&self, client: &mut Connection) -> Result<Schema, DatabaseError> {
        let rows = client.query(
            "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() ORDER BY 1",
            &[],
        )?;
        let tables: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        if tables.is_empty() {
            return Ok(Schema::Absent);
        }
        let foreign: Vec<&str> = tables
            .iter()
            .map(String::as_str)
            .filter(|t| !TABLES.contains(t))
            .collect();
        if !foreign.is_empty() || !tables.iter().any(|t| t == "cairn_schema") {
            return Err(DatabaseError::ForeignSchema {
                location: self.shown().to_string(),
                tables: if foreign.is_empty() {
                    tables.join(", ")
                } else {
                    foreign.join(", ")
                },
            });
        }
        let version: Option<i32> = client
            .query_one("SELECT max(version) FROM cairn_schema", &[])?
            .get(0);
        match version {
            Some(v) if v > SCHEMA_VERSION => Err(DatabaseError::NewerSchema {
                location: self.shown().to_string(),
                found: v,
            }),
            Some(v) if v == SCHEMA_VERSION => Ok(Schema::Current),
            _ => self
                .migrate(client, version.unwrap_or(0))
                .map(|()| Schema::Current),
        }
    }

    /// Brings the schema from `from` to [`SCHEMA_VERSION`] in one transaction, under an
    /// advisory lock so that writers starting together migrate once.
    fn migrate(&self, client: &mut Connection, from: i32) -> Result<(), DatabaseError> {
        client.transaction(|tx| {
            tx.execute("SELECT pg_advisory_xact_lock(7233918011146921472)", &[])?;
            let current: i32 = if from == 0 {
                let exists: bool = tx
                    .query_one("SELECT to_regclass('cairn_schema') IS NOT NULL", &[])?
                    .get(0);
                if exists {
                    tx.query_one("SELECT coalesce(max(version), 0) FROM cairn_schema", &[])?
                        .get(0)
                } else {
                    0
                }
            } else {
                from
            };
            for version in current + 1..=SCHEMA_VERSION {
                tx.batch_execute(MIGRATIONS[version as usize - 1])?;
                if version == 1 {
                    tx.execute(
                        "INSERT INTO cairn_ledger_head (next_seq, prev) VALUES (0, $1)",
                        &[&GENESIS_PREV],
                    )?;
                }
                tx.execute("DELETE FROM cairn_schema", &[])?;
                tx.execute(
                    "INSERT INTO cairn_schema (version) VALUES ($1)",
                    &[&version],
                )?;
            }
            Ok(())
        })
    }

    /// Creates the schema if the database has none yet (before a write).
    fn ensure_schema(&self, client: &mut Connection) -> Result<(), DatabaseError> {
        match self.schema(client)? {
            Schema::Absent => self.migrate(client, 0),
            Schema::Current => Ok(()),
        }
    }

    /// Whether the database holds a ledger (the schema exists).
    pub fn exists(&self) -> Result<bool, DatabaseError> {
        self.with_client(|c| Ok(matches!(self.schema(c)?, Schema::Current)))
    }

    /// The number of entries (the head's next seq).
    pub fn size(&self) -> Result<u64, DatabaseError> {
        self.with_client(|c| match self.schema(c)? {
            Schema::Absent => Ok(0),
            Schema::Current => {
                let next: i64 = c
                    .query_one("SELECT next_seq FROM cairn_ledger_head", &[])?
                    .get(0);
                Ok(next as u64)
            }
        })
    }

    /// Appends `entry` as the next one (see the module doc); returns it as stored. An
    /// entry already recorded by an earlier attempt is returned as it was stored.
    pub fn append(&self, mut entry: Entry, key: &SigningKey) -> Result<Entry, DatabaseError> {
        entry.actor.key_id = keys::key_id(&key.verifying_key());
        let append_key = append_key(&entry).to_vec();
        let deadline = Instant::now() + RECONNECT_FOR;
        let mut schema_checked = false;
        loop {
            let attempt = self.with_client(|c| {
                if !schema_checked {
                    self.ensure_schema(c)?;
                    schema_checked = true;
                }
                self.try_append(c, &mut entry, &append_key, key)
            });
            match attempt {
                Ok(Some(stored)) => return Ok(stored),
                Ok(None) => continue,
                Err(DatabaseError::Query { cause, .. } | DatabaseError::Connect { cause, .. })
                    if is_transient(&cause) && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt, in one transaction holding the head row's lock from reading it to
    /// the commit, so writers queue on the lock instead of signing for a head someone
    /// else moved. Two round trips (`BEGIN` + the locking read, then the insert +
    /// `COMMIT`), so the lock is held for one round trip, the signing and the commit. An entry an earlier attempt recorded is returned as it was stored;
    /// `None` when that attempt committed while this one waited for the lock (the
    /// lookup's snapshot predates it): look again.
    fn try_append(
        &self,
        client: &mut Connection,
        entry: &mut Entry,
        append_key: &[u8],
        key: &SigningKey,
    ) -> Result<Option<Entry>, DatabaseError> {
        let head = client
            .begin_query_one(
                "SELECT h.next_seq, h.prev, \
                 (SELECT line FROM cairn_ledger_entries WHERE append_key = $1) \
                 FROM cairn_ledger_head h FOR UPDATE OF h",
                &[&append_key],
            )
            .inspect_err(|_| client.rollback())?;
        let recorded: Option<Vec<u8>> = head.get(2);
        if let Some(line) = recorded {
            client.rollback();
            return serde_json::from_slice(&line)
                .map(Some)
                .map_err(|e| DatabaseError::BadRow {
                    location: self.shown().to_string(),
                    seq: head.get(0),
                    reason: e.to_string(),
                });
        }
        let next: i64 = head.get(0);
        entry.seq = next as u64;
        entry.prev = head.get(1);
        entry.sign(key);
        let line = entry.line();
        let inserted = client.execute_commit(
            "WITH inserted AS (INSERT INTO cairn_ledger_entries (seq, line, append_key) \
                               VALUES ($1, $2, $4) RETURNING seq) \
             UPDATE cairn_ledger_head SET next_seq = (SELECT seq FROM inserted) + 1, prev = $3",
            &[&next, &line, &line_hash(&line), &append_key],
        );
        match inserted {
            Ok(_) => Ok(Some(entry.clone())),
            Err(DatabaseError::Query { cause, .. })
                if cause.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
                    && cause
                        .as_db_error()
                        .and_then(|d| d.constraint())
                        .is_some_and(|c| c.contains("append_key")) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Entries in `seq` order, fetched a page at a time.
    pub fn entries(&self) -> Entries<'_> {
        Entries {
            ledger: self,
            next: 0,
            page: std::collections::VecDeque::new(),
            done: false,
        }
    }

    fn page(&self, from: i64) -> Result<Vec<(i64, Vec<u8>)>, DatabaseError> {
        self.with_client(|c| {
            if matches!(self.schema(c)?, Schema::Absent) {
                return Ok(Vec::new());
            }
            let rows = c.query(
                "SELECT seq, line FROM cairn_ledger_entries WHERE seq >= $1 \
                     ORDER BY seq LIMIT $2",
                &[&from, &PAGE],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// Keeps a signed checkpoint of `size` entries.
    pub fn store_checkpoint(&self, size: u64, note: &str) -> Result<(), DatabaseError> {
        self.with_client(|c| {
            self.ensure_schema(c)?;
            c.execute(
                "INSERT INTO cairn_ledger_checkpoints (size, note) VALUES ($1, $2)",
                &[&(size as i64), &note],
            )
            .map(|_| ())
        })
    }

    /// Every stored checkpoint note, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<String>, DatabaseError> {
        self.with_client(|c| {
            if matches!(self.schema(c)?, Schema::Absent) {
                return Ok(Vec::new());
            }
            let rows = c.query("SELECT note FROM cairn_ledger_checkpoints ORDER BY id", &[])?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Loads `entries` (already verified by the caller) into this ledger, which must be
    /// empty, in one transaction.
    pub fn import(&self, entries: &[Stored]) -> Result<(), DatabaseError> {
        self.with_client(|c| {
            self.ensure_schema(c)?;
            c.transaction(|tx| {
                let next: i64 = tx
                    .query_one("SELECT next_seq FROM cairn_ledger_head FOR UPDATE", &[])?
                    .get(0);
                if next != 0 {
                    return Err(DatabaseError::NotEmpty {
                        location: self.shown().to_string(),
                        entries: next as u64,
                    });
                }
                for chunk in entries.chunks(PAGE as usize) {
                    let seqs: Vec<i64> = chunk.iter().map(|s| s.entry.seq as i64).collect();
                    let lines: Vec<&[u8]> = chunk.iter().map(|s| s.line.as_slice()).collect();
                    let keys: Vec<Vec<u8>> = chunk
                        .iter()
                        .map(|s| append_key(&s.entry).to_vec())
                        .collect();
                    tx.execute(
                        "INSERT INTO cairn_ledger_entries (seq, line, append_key) \
                         SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[])",
                        &[&seqs, &lines, &keys],
                    )?;
                }
                let prev = entries
                    .last()
                    .map_or(GENESIS_PREV.to_string(), |s| line_hash(&s.line));
                tx.execute(
                    "UPDATE cairn_ledger_head SET next_seq = $1, prev = $2",
                    &[&(entries.len() as i64), &prev],
                )?;
                Ok(())
            })
        })
    }
}

/// The rows of a database ledger in `seq` order, each parsed into its entry with the
/// exact stored bytes; a page's rows are parsed on all cores.
pub struct Entries<'a> {
    ledger: &'a PgLedger,
    next: i64,
    page: std::collections::VecDeque<Result<Stored, DatabaseError>>,
    done: bool,
}

impl Entries<'_> {
    /// The next page, parsed; an error ends the stream after it.
    fn fetch(&mut self) -> std::collections::VecDeque<Result<Stored, DatabaseError>> {
        let rows = match self.ledger.page(self.next) {
            Ok(rows) => rows,
            Err(e) => {
                self.done = true;
                return [Err(e)].into();
            }
        };
        self.done = (rows.len() as i64) < PAGE;
        self.next = rows.last().map_or(self.next, |(seq, _)| seq + 1);
        let location = self.ledger.shown();
        let mut parsed: Vec<Result<Stored, DatabaseError>> = rows
            .into_par_iter()
            .map(|(seq, line)| {
                serde_json::from_slice(&line)
                    .map(|entry| Stored { entry, line })
                    .map_err(|e| DatabaseError::BadRow {
                        location: location.to_string(),
                        seq,
                        reason: e.to_string(),
                    })
            })
            .collect();
        if let Some(bad) = parsed.iter().position(Result::is_err) {
            parsed.truncate(bad + 1);
            self.done = true;
        }
        parsed.into()
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<Stored, DatabaseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            self.page = self.fetch();
        }
        self.page.pop_front()
    }
}
