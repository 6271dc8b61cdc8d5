//! The ledger file under concurrent writers and crashes, through the library: threads
//! and separate processes appending to one ledger give one gapless, valid chain, and
//! an appender killed with SIGKILL at a random moment loses no entry it reported done.
//!
//! Child processes are this test binary run again on `ledger_child`, told what to do
//! by `CAIRN_TEST_LEDGER_CHILD`.

use crate::common::ledger_entry;
use cairn::keys::{self, SigningKey, VerifyingKey};
use cairn::ledger::entry::Entry;
use cairn::ledger::store::{verify_chain, Ledger};
use rand_core::RngCore as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "CAIRN_TEST_LEDGER_CHILD";

/// A ledger path and a signing key saved where child processes can read it.
struct Setup {
    dir: tempfile::TempDir,
    key: SigningKey,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let key = keys::generate();
        keys::write_pair(&key, &dir.path().join("signer")).unwrap();
        Setup { dir, key }
    }

    fn ledger_path(&self) -> PathBuf {
        self.dir.path().join("ledger.jsonl")
    }

    fn trusted(&self) -> Vec<(String, VerifyingKey)> {
        vec![(
            keys::key_id(&self.key.verifying_key()),
            self.key.verifying_key(),
        )]
    }

    /// This test binary, running only `ledger_child` with `task` (`append <writer>
    /// <count> <threads>` or `forever`).
    fn child(&self, task: &str) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "ledger_store::ledger_child",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, format!("{}\n{task}", self.dir.path().display()));
        cmd
    }
}

/// Every complete entry; asserts the chain verifies.
fn read_valid_chain(setup: &Setup) -> Vec<Entry> {
    let contents = Ledger::open(setup.ledger_path()).read().unwrap();
    let problems: Vec<String> = verify_chain(&contents.entries, &setup.trusted())
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(problems, Vec::<String>::new());
    contents.entries.into_iter().map(|s| s.entry).collect()
}

/// Appends `count` entries for each of `threads` threads named `<writer>/<thread>`.
fn append_from_threads(ledger: &Ledger, key: &SigningKey, writer: &str, threads: u64, count: u64) {
    std::thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                for n in 0..count {
                    ledger
                        .append(ledger_entry(&format!("{writer}/{t}"), n), key, true)
                        .unwrap();
                }
            });
        }
    });
}

/// Asserts each writer's entries are all there, once each, in the order it wrote them.
fn assert_each_writer_complete(entries: &[Entry], writers: &[String], count: u64) {
    assert_eq!(entries.len() as u64, writers.len() as u64 * count);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64);
    }
    for writer in writers {
        let ns: Vec<u64> = entries
            .iter()
            .filter(|e| e.actor.identity == *writer)
            .map(|e| e.details["n"].as_u64().unwrap())
            .collect();
        assert_eq!(ns, (0..count).collect::<Vec<_>>(), "entries of {writer}");
    }
}

#[test]
fn threads_appending_at_once_make_one_gapless_chain() {
    let setup = Setup::new();
    let ledger = Ledger::open(setup.ledger_path());
    append_from_threads(&ledger, &setup.key, "thread", 4, 25);
    let writers: Vec<String> = (0..4).map(|t| format!("thread/{t}")).collect();
    assert_each_writer_complete(&read_valid_chain(&setup), &writers, 25);
}

#[test]
fn processes_appending_at_once_make_one_gapless_chain() {
    let setup = Setup::new();
    let children: Vec<_> = (0..3)
        .map(|p| {
            setup
                .child(&format!("append process{p} 15 2"))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // This process writes too, at the same time.
    append_from_threads(
        &Ledger::open(setup.ledger_path()),
        &setup.key,
        "parent",
        1,
        15,
    );
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {:?}", out.status);
    }
    let mut writers: Vec<String> = (0..3)
        .flat_map(|p| (0..2).map(move |t| format!("process{p}/{t}")))
        .collect();
    writers.push("parent/0".into());
    assert_each_writer_complete(&read_valid_chain(&setup), &writers, 15);
}

#[test]
fn an_appender_killed_at_a_random_moment_loses_no_completed_entry() {
    for run in 0..4 {
        let setup = Setup::new();
        let mut child = setup
            .child("forever")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let reader = std::thread::spawn(move || {
            let mut done = Vec::new();
            for line in stdout.lines() {
                if let Some(seq) = line.unwrap().strip_prefix("appended ") {
                    done.push(seq.parse::<u64>().unwrap());
                    let _ = tx.send(());
                }
            }
            done
        });
        // Let it get going, then kill it somewhere in the next 0-40 ms.
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the child appends");
        let delay = rand_core::OsRng.next_u32() % 40_000;
        std::thread::sleep(Duration::from_micros(delay.into()));
        child.kill().unwrap();
        child.wait().unwrap();
        let done = reader.join().unwrap();
        let ledger = Ledger::open(setup.ledger_path());
        let torn = ledger.read().unwrap().torn_tail_bytes;
        assert_eq!(ledger.repair().unwrap(), torn);
        let entries = read_valid_chain(&setup);
        // Entries written but not yet reported are fine; reported ones must be there.
        assert!(
            entries.len() >= done.len(),
            "run {run}, after {delay} µs: the child reported {} entries, the ledger holds {}",
            done.len(),
            entries.len()
        );
        for (i, seq) in done.iter().enumerate() {
            assert_eq!(*seq, i as u64);
            assert_eq!(entries[i].details["n"], serde_json::json!(i));
        }
        let next = ledger
            .append(ledger_entry("after", 0), &setup.key, true)
            .unwrap();
        assert_eq!(next.seq, entries.len() as u64);
        read_valid_chain(&setup);
    }
}

/// The body of the child processes of the tests above; does nothing unless run by them.
#[test]
#[ignore = "run as a child process by the concurrency and kill tests"]
fn ledger_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, task) = spec.split_once('\n').unwrap();
    let key = keys::read_private(&Path::new(dir).join("signer.key")).unwrap();
    let ledger = Ledger::open(Path::new(dir).join("ledger.jsonl"));
    let args: Vec<&str> = task.split(' ').collect();
    match args[..] {
        ["append", writer, count, threads] => append_from_threads(
            &ledger,
            &key,
            writer,
            threads.parse().unwrap(),
            count.parse().unwrap(),
        ),
        ["forever"] => {
            let mut stdout = std::io::stdout().lock();
            for n in 0.. {
                let stored = ledger
                    .append(ledger_entry("doomed", n), &key, true)
                    .unwrap();
                writeln!(stdout, "appended {}", stored.seq).unwrap();
                stdout.flush().unwrap();
            }
        }
        _ => panic!("unknown child task {task:?}"),
    }
}
