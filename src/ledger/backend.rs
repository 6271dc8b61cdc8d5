//! One interface over where a ledger lives: a file ([`Ledger`]) or a PostgreSQL
//! database ([`PgLedger`]), chosen by the location's form ([`open`]).
//!
//! Either store appends with `seq = head + 1` and `prev` = the hash of the last line,
//! signs, and stores the entry's canonical line byte for byte; either reads the entries
//! back in `seq` order as the exact stored lines ([`LedgerStore::entries`]), so the
//! chain, signatures and Merkle tree are the same whichever store holds them.

use super::entry::Entry;
use super::pg::{DatabaseError, PgLedger};
use super::store::{Contents, Ledger, LedgerError, Stored};
use crate::keys::SigningKey;

/// Why a store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    File(#[from] LedgerError),
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error("ledger {location} keeps no checkpoints: save the output of `cairn ledger checkpoint` to a file and pass it to `cairn ledger verify --checkpoint FILE`")]
    NoCheckpointStore { location: String },
    #[error(
        "ledger {location} already holds {entries} entries; import only loads into an empty ledger"
    )]
    NotEmpty { location: String, entries: u64 },
}

impl crate::diag::Diagnose for StoreError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            StoreError::Database(e) => e.hint(),
            _ => None,
        }
    }
}

/// The stored lines in `seq` order, each parsed into its entry.
pub type EntryStream<'a> = Box<dyn Iterator<Item = Result<Stored, StoreError>> + 'a>;

/// A ledger, wherever it is kept. Shared between threads; each call locks (a file) or
/// runs in its own statement or transaction (a database).
pub trait LedgerStore: Send + Sync {
    /// Where the ledger is, as messages may show it (never a password).
    fn location(&self) -> String;

    /// Appends `entry` after the last one (filling `seq`, `prev`, the key id and the
    /// signature) and returns it as stored. `durable` = on stable storage on return;
    /// a database commit always is.
    fn append(&self, entry: Entry, key: &SigningKey, durable: bool) -> Result<Entry, StoreError>;

    /// Appends `entries` in order, durably. A file writes them all or none, with one
    /// fsync; a database commits each in turn, so an error may follow some appends.
    fn append_group(&self, entries: Vec<Entry>, key: &SigningKey) -> Result<(), StoreError> {
        for entry in entries {
            self.append(entry, key, true)?;
        }
        Ok(())
    }

    /// Every entry in `seq` order, as stored.
    fn entries(&self) -> Result<EntryStream<'_>, StoreError>;

    /// Every entry at once, with what a file's interrupted write left behind.
    fn read(&self) -> Result<Contents, StoreError> {
        let entries = self.entries()?.collect::<Result<_, _>>()?;
        Ok(Contents {
            entries,
            torn_tail_bytes: 0,
        })
    }

    /// Bytes an interrupted write left after the last complete entry (a file's torn
    /// tail, cut off by the next append); a database has none.
    fn torn_tail_bytes(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// The number of entries.
    fn size(&self) -> Result<u64, StoreError>;

    /// Whether there is a ledger there at all (a missing file, a database without the
    /// schema: no).
    fn exists(&self) -> Result<bool, StoreError>;

    /// Keeps a signed checkpoint of the first `size` entries with the ledger.
    fn store_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError>;

    /// The checkpoints kept with the ledger, oldest first.
    fn checkpoints(&self) -> Result<Vec<String>, StoreError>;

    /// Loads `entries`, verified by the caller, into this ledger, which must be empty.
    fn import(&self, entries: &[Stored]) -> Result<(), StoreError>;
}

impl LedgerStore for Ledger {
    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn append(&self, entry: Entry, key: &SigningKey, durable: bool) -> Result<Entry, StoreError> {
        Ok(Ledger::append(self, entry, key, durable)?)
    }

    fn append_group(&self, entries: Vec<Entry>, key: &SigningKey) -> Result<(), StoreError> {
        Ledger::append_group(self, entries, key, true)?;
        Ok(())
    }

    fn entries(&self) -> Result<EntryStream<'_>, StoreError> {
        Ok(Box::new(
            Ledger::entries(self)?.map(|entry| entry.map_err(StoreError::from)),
        ))
    }

    fn torn_tail_bytes(&self) -> Result<u64, StoreError> {
        Ok(Ledger::torn_tail_bytes(self)?)
    }

    fn read(&self) -> Result<Contents, StoreError> {
        Ok(Ledger::read(self)?)
    }

    fn size(&self) -> Result<u64, StoreError> {
        // Counted as the entries stream past: one block in memory, not the whole file.
        Ok(Ledger::entries(self)?.try_fold(0, |n, entry| entry.map(|_| n + 1))?)
    }

    fn exists(&self) -> Result<bool, StoreError> {
        Ok(self.path().exists())
    }

    fn store_checkpoint(&self, _size: u64, _note: &str) -> Result<(), StoreError> {
        Err(StoreError::NoCheckpointStore {
            location: self.location(),
        })
    }

    fn checkpoints(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    fn import(&self, entries: &[Stored]) -> Result<(), StoreError> {
        let present = LedgerStore::size(self)?;
        if present > 0 {
            return Err(StoreError::NotEmpty {
                location: self.location(),
                entries: present,
            });
        }
        self.append_lines(entries)?;
        Ok(())
    }
}

impl LedgerStore for PgLedger {
    fn location(&self) -> String {
        self.shown().to_string()
    }

    fn append(&self, entry: Entry, key: &SigningKey, _durable: bool) -> Result<Entry, StoreError> {
        Ok(PgLedger::append(self, entry, key)?)
    }

    fn entries(&self) -> Result<EntryStream<'_>, StoreError> {
        Ok(Box::new(
            PgLedger::entries(self).map(|r| r.map_err(StoreError::from)),
        ))
    }

    fn size(&self) -> Result<u64, StoreError> {
        Ok(PgLedger::size(self)?)
    }

    fn exists(&self) -> Result<bool, StoreError> {
        Ok(PgLedger::exists(self)?)
    }

    fn store_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        Ok(PgLedger::store_checkpoint(self, size, note)?)
    }

    fn checkpoints(&self) -> Result<Vec<String>, StoreError> {
        Ok(PgLedger::checkpoints(self)?)
    }

    fn import(&self, entries: &[Stored]) -> Result<(), StoreError> {
        Ok(PgLedger::import(self, entries)?)
    }
}

/// Whether `location` names a database rather than a file.
pub fn is_database(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// `location` as messages may show it: a database URL without its password.
pub fn shown(location: &str) -> String {
    if is_database(location) {
        super::pg::connect::without_password(location)
    } else {
        location.to_string()
    }
}

/// The store at `location`: a `postgres://` or `postgresql://` URL (connected, its
/// schema checked), else a file path.
pub fn open(location: &str) -> Result<Box<dyn LedgerStore>, StoreError> {
    if is_database(location) {
        Ok(Box::new(PgLedger::open(location)?))
    } else {
        Ok(Box::new(Ledger::open(location)))
    }
}
