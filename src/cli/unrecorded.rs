//! Ledger entries that `build`, `push` and `verify` were asked to record and could not.
//!
//! The contract when the ledger is unreachable (unwritable file, database down): the
//! image is still built, pushed and published, because the work is done and correct;
//! the command then exits 1, naming the ledger (a URL without its password) and its
//! error, and prints for each entry not recorded the `cairn ledger record entry ...`
//! command that records it later with every field it would have had (action, time,
//! identity, signing key, details). `--json` output carries the same as `ledger_error`.
//! After the first failure the command tries no further entries, so the commands
//! record them in the order they happened.

use super::ledger;
use cairn::keys::SigningKey;
use cairn::ledger::Action;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Records a command's entries in one ledger, signed with one key, and keeps what it
/// could not record.
pub struct Recorder<'a> {
    ledger: &'a str,
    key: &'a SigningKey,
    /// Where `key` was read from, for the record command.
    key_path: &'a Path,
    identity: &'a str,
    unrecorded: Option<Unrecorded>,
}

/// Why the ledger recorded nothing more, and the commands that record what is missing.
#[derive(Debug, Serialize)]
pub struct Unrecorded {
    /// The ledger location (a database URL without its password).
    pub ledger: String,
    pub error: String,
    /// One shell command line per entry not recorded, in the order to run them.
    pub record_commands: Vec<String>,
}

impl<'a> Recorder<'a> {
    pub fn new(
        ledger: &'a str,
        key: &'a SigningKey,
        key_path: &'a Path,
        identity: &'a str,
    ) -> Recorder<'a> {
        Recorder {
            ledger,
            key,
            key_path,
            identity,
            unrecorded: None,
        }
    }

    /// Records `action` at `time`, returning the stored entry; `None` when it was not
    /// recorded, with its record command kept in [`Recorder::unrecorded`].
    pub fn record(
        &mut self,
        action: Action,
        details: BTreeMap<String, serde_json::Value>,
        time: String,
    ) -> Option<cairn::ledger::Entry> {
        if self.unrecorded.is_none() {
            match ledger::record_action(
                self.ledger,
                action,
                details.clone(),
                self.key,
                self.identity,
                time.clone(),
            ) {
                Ok(entry) => return Some(entry),
                Err(e) => {
                    self.unrecorded = Some(Unrecorded {
                        ledger: shown_location(self.ledger),
                        error: chain_text(&e),
                        record_commands: Vec::new(),
                    })
                }
            }
        }
        let command = record_command(
            self.ledger,
            action,
            &time,
            self.identity,
            self.key_path,
            &details,
        );
        if let Some(unrecorded) = &mut self.unrecorded {
            unrecorded.record_commands.push(command);
        }
        None
    }

    pub fn ledger(&self) -> &str {
        self.ledger
    }

    /// What was not recorded, if anything: print it with [`Unrecorded::report`] and
    /// exit 1.
    pub fn unrecorded(self) -> Option<Unrecorded> {
        self.unrecorded
    }
}

impl Unrecorded {
    /// The error and the record commands on stderr, as `cairn` prints errors.
    pub fn report(&self) {
        let n = self.record_commands.len();
        eprintln!(
            "error: not recorded in the ledger {}: {}\n = help: once the ledger is reachable, record {} with:",
            self.ledger,
            self.error,
            if n == 1 { "the entry".to_string() } else { format!("the {n} entries, in this order,") }
        );
        for command in &self.record_commands {
            eprintln!("   {command}");
        }
    }
}

/// `error` and its causes, each cause only if the text so far does not already say it
/// (a library error often prints its source in its own message).
fn chain_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

/// The ledger location as shown to people: a file as an absolute path (the command may
/// be run elsewhere), a database URL without its password (which `$PGPASSWORD` or
/// `~/.pgpass` then supplies).
fn shown_location(ledger: &str) -> String {
    if cairn::ledger::backend::is_database(ledger) {
        return cairn::ledger::backend::shown(ledger);
    }
    std::path::absolute(ledger)
        .unwrap_or_else(|_| PathBuf::from(ledger))
        .display()
        .to_string()
}

/// The `cairn ledger record entry` command line that appends the entry later. Every
/// value is given explicitly, so `$CAIRN_LEDGER`, `$CAIRN_LEDGER_KEY` and
/// `$CAIRN_IDENTITY` where it runs cannot change what it records.
fn record_command(
    ledger: &str,
    action: Action,
    time: &str,
    identity: &str,
    key_path: &Path,
    details: &BTreeMap<String, serde_json::Value>,
) -> String {
    let key_path: PathBuf = std::path::absolute(key_path).unwrap_or_else(|_| key_path.into());
    let details = serde_json::to_string(details).expect("JSON values serialise");
    let args = [
        "cairn".to_string(),
        "ledger".to_string(),
        "--ledger".to_string(),
        shown_location(ledger),
        "record".to_string(),
        "entry".to_string(),
        "--action".to_string(),
        action.to_string(),
        "--time".to_string(),
        time.to_string(),
        "--identity".to_string(),
        identity.to_string(),
        "--key".to_string(),
        key_path.display().to_string(),
        "--details".to_string(),
        details,
    ];
    args.iter()
        .map(|a| shell_quoted(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `arg` as one POSIX shell word: unchanged if it has only characters no shell treats
/// specially, else in single quotes (a `'` inside written as `'\''`).
fn shell_quoted(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_survive_quotes_spaces_and_json() {
        assert_eq!(shell_quoted("ci/job-7"), "ci/job-7");
        assert_eq!(shell_quoted(""), "''");
        assert_eq!(shell_quoted("a b"), "'a b'");
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
        assert_eq!(shell_quoted(r#"{"a":"$HOME"}"#), r#"'{"a":"$HOME"}'"#);
    }

    #[test]
    fn a_database_url_is_shown_without_its_password() {
        assert_eq!(
            cairn::ledger::backend::shown(
                "postgres://cairn:s3cret@db.example:5432/ledger?sslmode=verify-full"
            ),
            "postgres://cairn@db.example:5432/ledger?sslmode=verify-full"
        );
        assert_eq!(
            cairn::ledger::backend::shown("postgresql://db/ledger?password=s3cret&sslmode=require"),
            "postgresql://db/ledger?sslmode=require"
        );
        assert_eq!(
            cairn::ledger::backend::shown("postgres://db/ledger?password=s3cret"),
            "postgres://db/ledger"
        );
        assert_eq!(shown_location("postgres://u:p@h/l"), "postgres://u@h/l");
    }
}
