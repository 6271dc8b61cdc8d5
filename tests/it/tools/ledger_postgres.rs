//! The ledger in a real PostgreSQL 15 (a throwaway cluster per test): the same bytes
//! as the file store, export and import, many writer processes at once, hand edits of
//! rows named by seq, stored checkpoints against a history rewrite, and the errors a
//! user meets (wrong password, unreachable host, read-only role, a foreign schema).
//!
//! Writer processes are this test binary run again on `postgres_child`, told what to do
//! by `CAIRN_TEST_PG_CHILD`.

use crate::common::ledger_entry;
use crate::common::postgres::{Cluster, PASSWORD, USER};
use crate::common::registry::free_port;
use crate::common::tls::TestCa;
use crate::common::{cairn, run_err, run_ok};
use cairn::keys::{self, SigningKey};
use cairn::ledger::{self as ledger_lib, Ledger, LedgerStore};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const CHILD_ENV: &str = "CAIRN_TEST_PG_CHILD";

/// A cluster, a signing key saved as `signer.key`/`signer.pub`, and a work directory.
struct Setup {
    dir: tempfile::TempDir,
    key: SigningKey,
    db: Cluster,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let key = keys::generate();
        keys::write_pair(&key, &dir.path().join("signer")).unwrap();
        Setup {
            dir,
            key,
            db: Cluster::start(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn store(&self) -> Box<dyn LedgerStore> {
        ledger_lib::open(&self.db.url()).unwrap()
    }

    /// Appends `n` entries through one connection.
    fn append(&self, n: u64) {
        let store = self.store();
        for i in 0..n {
            store
                .append(ledger_entry("ci", i), &self.key, true)
                .unwrap();
        }
    }

    /// This test binary run again as writer `name` (`postgres_child`), appending
    /// `count` entries; it prints `appended N` or `failed N: ERROR` for each.
    fn writer(&self, name: &str, count: u64) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "tools::ledger_postgres::postgres_child",
            "--ignored",
            "--nocapture",
        ])
        .env(
            CHILD_ENV,
            format!(
                "{}\n{}\n{name}\n{count}",
                self.dir.path().display(),
                self.db.url()
            ),
        );
        cmd
    }

    /// `cairn ledger --ledger URL ARGS...`
    fn ledger_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = cairn();
        cmd.args(["ledger", "--ledger", &self.db.url()]).args(args);
        cmd
    }

    /// `cairn ledger verify` against the database; (exit code, stdout).
    fn verify(&self) -> (i32, String) {
        let out = self
            .ledger_cmd(&[
                "verify",
                "--key",
                &self.path("signer.pub").display().to_string(),
            ])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

#[test]
fn the_database_stores_the_file_stores_bytes_and_exports_and_imports_them() {
    let s = Setup::new();
    let file = Ledger::open(s.path("file.jsonl"));
    for i in 0..20 {
        file.append(ledger_entry("ci", i), &s.key, false).unwrap();
    }
    s.append(20);
    let file_lines = std::fs::read(s.path("file.jsonl")).unwrap();
    let rows = s.db.psql(
        "SELECT string_agg(convert_from(line, 'UTF8'), E'\\n' ORDER BY seq) FROM cairn_ledger_entries",
    );
    assert_eq!(
        rows.into_bytes(),
        file_lines,
        "same line bytes in either store"
    );
    let (code, out) = s.verify();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("20 entries"), "{out}");

    // Export: a file ledger identical to the one the file store wrote.
    let exported = s.path("export.jsonl");
    run_ok(&mut s.ledger_cmd(&["export", "--out", &exported.display().to_string()]));
    assert_eq!(std::fs::read(&exported).unwrap(), file_lines);
    let key_pub = s.path("signer.pub").display().to_string();
    let checkpoint_root = |location: &str| {
        let out = run_ok(cairn().args([
            "ledger",
            "--ledger",
            location,
            "checkpoint",
            "--key",
            &s.path("signer.key").display().to_string(),
        ]));
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .nth(2)
            .unwrap()
            .to_string()
    };
    let db_root = checkpoint_root(&s.db.url());
    assert_eq!(checkpoint_root(&exported.display().to_string()), db_root);

    // Import: refused into a non-empty database, loaded into an empty one.
    let (_, err) =
        run_err(&mut s.ledger_cmd(&["import", &exported.display().to_string(), "--key", &key_pub]));
    assert!(err.contains("already holds 20 entries"), "{err}");
    s.db.psql("CREATE DATABASE fresh");
    let fresh = s.db.url_as(USER, PASSWORD, "fresh");
    run_ok(cairn().args([
        "ledger",
        "--ledger",
        &fresh,
        "import",
        &exported.display().to_string(),
        "--key",
        &key_pub,
    ]));
    assert_eq!(checkpoint_root(&fresh), db_root);

    // A file that does not verify is not imported.
    let text = String::from_utf8(file_lines)
        .unwrap()
        .replace("\"n\":3", "\"n\":33");
    std::fs::write(s.path("edited.jsonl"), text).unwrap();
    s.db.psql("CREATE DATABASE other");
    let other = s.db.url_as(USER, PASSWORD, "other");
    let (_, err) = run_err(cairn().args([
        "ledger",
        "--ledger",
        &other,
        "import",
        &s.path("edited.jsonl").display().to_string(),
        "--key",
        &key_pub,
    ]));
    assert!(err.contains("entry 3: signature does not match"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    assert_eq!(ledger_lib::open(&other).unwrap().size().unwrap(), 0);
}

#[test]
fn rows_edited_deleted_or_reordered_by_hand_are_named_by_seq() {
    let s = Setup::new();
    s.append(8);
    s.db.psql("UPDATE cairn_ledger_entries SET line = convert_to(replace(convert_from(line, 'UTF8'), '\"n\":2', '\"n\":9'), 'UTF8') WHERE seq = 2");
    let (code, out) = s.verify();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 2: signature does not match"), "{out}");
    assert!(
        out.contains("entry 3: prev does not match the hash of entry 2"),
        "{out}"
    );

    let s = Setup::new();
    s.append(8);
    s.db.psql("DELETE FROM cairn_ledger_entries WHERE seq = 5");
    let (code, out) = s.verify();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 6: seq 6, expected 5"), "{out}");

    s.db.psql("UPDATE cairn_ledger_entries e SET line = o.line FROM cairn_ledger_entries o WHERE (e.seq, o.seq) IN ((1, 2), (2, 1))");
    let (_, out) = s.verify();
    assert!(out.contains("entry 2: seq 2, expected 1"), "{out}");
}

#[test]
fn a_stored_checkpoint_catches_a_history_rewritten_with_the_writer_key() {
    let s = Setup::new();
    s.append(6);
    run_ok(&mut s.ledger_cmd(&[
        "checkpoint",
        "--store",
        "--key",
        &s.path("signer.key").display().to_string(),
    ]));
    let (code, out) = s.verify();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checked against 1 stored checkpoint"), "{out}");
    // Someone with the writer key and the database rewrites all history consistently.
    s.db.psql("TRUNCATE cairn_ledger_entries; UPDATE cairn_ledger_head SET next_seq = 0, prev = repeat('0', 64)");
    for i in 0..6 {
        s.store()
            .append(ledger_entry("forger", i), &s.key, true)
            .unwrap();
    }
    let (code, out) = s.verify();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "stored checkpoint 1: held checkpoint: the ledger is not an append-only extension"
        ),
        "{out}"
    );
}

#[test]
fn eight_writer_processes_make_exactly_four_thousand_dense_entries() {
    let s = Setup::new();
    let started = Instant::now();
    let children: Vec<_> = (0..8)
        .map(|w| {
            s.writer(&format!("writer{w}"), 500)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let elapsed = started.elapsed();
    eprintln!("4000 appends by 8 writers in {elapsed:?}");
    assert_eq!(
        s.db.psql("SELECT count(*), min(seq), max(seq) FROM cairn_ledger_entries"),
        "4000|0|3999\n"
    );
    let (code, out) = s.verify();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("4000 entries"), "{out}");
}

#[test]
fn a_server_crash_and_restart_during_a_run_loses_or_doubles_no_append() {
    let s = Setup::new();
    let children: Vec<_> = (0..4)
        .map(|w| {
            s.writer(&format!("writer{w}"), 400)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    s.db.crash();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    s.db.start_server();
    let mut reported_ok = Vec::new();
    for (w, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let failed = text.lines().filter(|l| l.starts_with("failed")).count();
        // The exit code reports whether any append failed.
        assert_eq!(out.status.success(), failed == 0, "{text}");
        reported_ok.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("appended "))
                .map(|n| (format!("writer{w}"), n.parse::<u64>().unwrap())),
        );
    }
    let stored: Vec<(String, u64)> = s
        .store()
        .entries()
        .unwrap()
        .map(|r| {
            let e = r.unwrap().entry;
            (e.actor.identity, e.details["n"].as_u64().unwrap())
        })
        .collect();
    let distinct: std::collections::BTreeSet<_> = stored.iter().cloned().collect();
    assert_eq!(distinct.len(), stored.len(), "an append was recorded twice");
    for ok in &reported_ok {
        assert!(
            distinct.contains(ok),
            "{ok:?} was reported done but is not stored"
        );
    }
    let (code, out) = s.verify();
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_writer_killed_mid_run_leaves_a_valid_ledger_with_every_reported_append() {
    use std::io::BufRead as _;
    let s = Setup::new();
    let mut child = s
        .writer("doomed", 1_000_000)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reported = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(n) = line.unwrap().strip_prefix("appended ") {
            reported.push(n.parse::<u64>().unwrap());
        }
        if reported.len() == 150 {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    let stored = s.store().read().unwrap().entries;
    assert!(stored.len() >= reported.len());
    for (i, e) in stored.iter().enumerate() {
        assert_eq!(e.entry.details["n"].as_u64(), Some(i as u64));
    }
    let (code, out) = s.verify();
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_retried_append_of_the_same_entry_is_recorded_once() {
    let s = Setup::new();
    let store = s.store();
    let first = store.append(ledger_entry("ci", 1), &s.key, true).unwrap();
    let again = store.append(ledger_entry("ci", 1), &s.key, true).unwrap();
    assert_eq!(first, again);
    assert_eq!(store.size().unwrap(), 1);
}

#[test]
fn connection_and_schema_errors_are_clear_and_keep_the_password_out() {
    let s = Setup::new();
    let wrong = s.db.url_as(USER, "not-the-password", "postgres");
    let (code, err) = run_err(cairn().args(["ledger", "--ledger", &wrong, "show"]));
    assert_eq!(code, 1);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(err.contains("~/.pgpass"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");

    let started = Instant::now();
    let closed = format!(
        "postgres://u:secret@127.0.0.1:{}/x?sslmode=disable",
        free_port()
    );
    let (_, err) = run_err(cairn().args(["ledger", "--ledger", &closed, "show"]));
    assert!(
        started.elapsed().as_secs() < 5,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("cannot connect to the ledger database postgres://u@127.0.0.1"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");

    // A read-only role can verify but not append.
    s.append(2);
    s.db.psql("CREATE ROLE auditor LOGIN PASSWORD 'a'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO auditor");
    let auditor = s.db.url_as("auditor", "a", "postgres");
    let verified = run_ok(cairn().args([
        "ledger",
        "--ledger",
        &auditor,
        "verify",
        "--key",
        &s.path("signer.pub").display().to_string(),
    ]));
    assert!(String::from_utf8_lossy(&verified.stdout).contains("2 entries"));
    let (_, err) = run_err(cairn().args([
        "ledger",
        "--ledger",
        &auditor,
        "record",
        "deploy",
        "--image",
        &format!("sha256:{}", "a".repeat(64)),
        "--env",
        "prod",
        "--key",
        &s.path("signer.key").display().to_string(),
    ]));
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains("read-only role"), "{err}");

    // Tables that are not ours: refused before anything is written.
    s.db.psql("CREATE DATABASE app");
    let app = s.db.url_as(USER, PASSWORD, "app");
    s.db.psql_in("app", "CREATE TABLE customers (id int)");
    // A schema a newer cairn migrated to: refused, not written to.
    s.db.psql("UPDATE cairn_schema SET version = 2");
    let (_, err) = run_err(cairn().args(["ledger", "--ledger", &s.db.url(), "show"]));
    assert!(
        err.contains("has cairn schema version 2; this cairn knows up to 1"),
        "{err}"
    );
    let (_, err) = run_err(cairn().args(["ledger", "--ledger", &app, "show"]));
    assert!(
        err.contains("holds tables that are not a cairn ledger (customers)"),
        "{err}"
    );
}

#[test]
fn tls_verify_full_trusts_only_the_given_ca_and_passwords_come_as_libpq_users_expect() {
    let s = Setup::new();
    let ca = TestCa::new(s.dir.path(), "ledger");
    s.db.require_tls(&ca.cert, &ca.key);
    let port = s.db.port;
    let url = |query: &str| format!("postgres://{USER}@localhost:{port}/postgres?{query}");
    let record = |url: &str, image: char| {
        let mut cmd = cairn();
        cmd.args(["ledger", "--ledger", url, "record", "deploy"])
            .args([
                "--image",
                &format!("sha256:{}", image.to_string().repeat(64)),
            ])
            .args(["--env", "prod", "--key"])
            .arg(s.path("signer.key"))
            .env_remove("PGPASSWORD")
            .env("PGPASSFILE", s.path("no-pgpass"));
        cmd
    };
    let verify_full = url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        ca.ca.display()
    ));

    // The password from $PGPASSWORD, over TLS checked against the CA.
    run_ok(record(&verify_full, 'a').env("PGPASSWORD", PASSWORD));
    // The password from a pgpass file (host:port:database:user:password).
    let pgpass = s.path("pgpass");
    std::fs::write(&pgpass, format!("localhost:{port}:*:{USER}:{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    run_ok(record(&verify_full, 'b').env("PGPASSFILE", &pgpass));

    // A server whose certificate another CA signed is refused before the password goes.
    let stranger = TestCa::new(s.dir.path(), "stranger");
    let (code, err) = run_err(
        record(
            &url(&format!(
                "sslmode=verify-full&sslrootcert={}",
                stranger.ca.display()
            )),
            'c',
        )
        .env("PGPASSWORD", PASSWORD),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot connect to the ledger database"),
        "{err}"
    );
    assert!(err.contains("UnknownIssuer"), "{err}");
    // Without TLS the server turns the connection away.
    let (_, err) = run_err(record(&url("sslmode=disable"), 'c').env("PGPASSWORD", PASSWORD));
    assert!(err.contains("no encryption"), "{err}");
    // No password anywhere: libpq's answer, and where to put one.
    let (_, err) = run_err(&mut record(&verify_full, 'c'));
    assert!(err.contains("password"), "{err}");
    assert!(err.contains("$PGPASSWORD or ~/.pgpass"), "{err}");
    assert_eq!(err.matches("password missing").count(), 1, "{err}");

    let shown = run_ok(
        cairn()
            .args(["ledger", "--ledger", &verify_full, "show", "--json"])
            .env("PGPASSWORD", PASSWORD),
    );
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        shown["entries"].as_array().map(Vec::len),
        Some(2),
        "{shown}"
    );
}

#[test]
fn a_server_that_accepts_and_never_answers_fails_within_the_connect_timeout() {
    let s = Setup::new();
    s.append(1);
    s.db.pause();
    let hung = format!("{}&connect_timeout=2", s.db.url());
    let started = Instant::now();
    let (code, err) = run_err(cairn().args([
        "ledger",
        "--ledger",
        &hung,
        "verify",
        "--key",
        &s.path("signer.pub").display().to_string(),
    ]));
    let waited = started.elapsed();
    s.db.resume();
    assert_eq!(code, 1);
    assert!(waited.as_secs() < 30, "waited {waited:?}");
    assert!(err.contains("no answer after 2 s connecting"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    assert_eq!(s.verify().0, 0, "the resumed server answers again");
}

/// The body of the writer processes of the tests above; does nothing unless run by them.
#[test]
#[ignore = "run as a child process by the concurrency test"]
fn postgres_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('\n').collect();
    let [dir, url, writer, count] = parts[..] else {
        panic!("bad child spec {spec:?}");
    };
    let key = keys::read_private(&Path::new(dir).join("signer.key")).unwrap();
    let store = ledger_lib::open(url).unwrap();
    let mut failed = false;
    for n in 0..count.parse::<u64>().unwrap() {
        match store.append(ledger_entry(writer, n), &key, true) {
            Ok(_) => println!("appended {n}"),
            Err(e) => {
                println!("failed {n}: {e}");
                failed = true;
            }
        }
    }
    assert!(!failed, "some appends failed");
}
