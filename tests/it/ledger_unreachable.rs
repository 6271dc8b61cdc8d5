//! A `build` or `verify` asked to record in a ledger that cannot take the entry (here a
//! file ledger: a directory where the file should be, a corrupt last line): the output
//! is still written, the command exits 1 naming the ledger and printing the
//! `cairn ledger record entry ...` command, which records the entry later, and
//! `--json` carries `ledger_error`. The push side is in `tools::ledger_unreachable`.

use crate::common;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `cairn` without the caller's ledger, key or identity settings.
pub fn cairn() -> Command {
    let mut cmd = common::cairn();
    cmd.env_remove("CAIRN_LEDGER")
        .env_remove("CAIRN_LEDGER_KEY")
        .env_remove("CAIRN_IDENTITY");
    cmd
}

/// Runs `cmd`, asserting its exit code (showing its output if it differs).
pub fn expect(code: i32, cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn cairn");
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The `ledger_error` of a `--json` report, checked to name `ledger` and to carry one
/// record command per entry in `actions`; returns those commands.
pub fn record_commands(report: &Value, ledger: &Path, actions: &[&str]) -> Vec<String> {
    let error = &report["ledger_error"];
    assert_eq!(error["ledger"], ledger.to_str().unwrap(), "{report:#}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains(ledger.to_str().unwrap()),
        "the error names the ledger: {error:#}"
    );
    let commands: Vec<String> = error["record_commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(commands.len(), actions.len(), "{error:#}");
    for (command, action) in commands.iter().zip(actions) {
        assert!(
            command.starts_with("cairn ledger --ledger ")
                && command.contains(&format!(" record entry --action {action} ")),
            "{command}"
        );
    }
    commands
}

/// Runs a printed record command through `sh`, with this build's `cairn` first on
/// `PATH` and none of the caller's ledger settings.
pub fn run_record_command(command: &str) -> Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_cairn")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(command)
        .env("PATH", path)
        .env_remove("CAIRN_LEDGER")
        .env_remove("CAIRN_LEDGER_KEY")
        .env_remove("CAIRN_IDENTITY");
    expect(0, &mut sh)
}

/// `cairn ledger --ledger LEDGER show --json`: the entries.
pub fn entries(ledger: &Path) -> Vec<Value> {
    let out = expect(
        0,
        cairn()
            .args(["ledger", "--ledger"])
            .arg(ledger)
            .args(["show", "--json"]),
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    shown["entries"].as_array().unwrap().clone()
}

/// `cairn ledger --ledger LEDGER verify --key PUB` passes; returns its summary line.
pub fn verified(ledger: &Path, public: &Path) -> String {
    let out = expect(
        0,
        cairn()
            .args(["ledger", "--ledger"])
            .arg(ledger)
            .arg("verify")
            .arg("--key")
            .arg(public),
    );
    String::from_utf8(out.stdout).unwrap()
}

fn build(out: &Path, key: &Path, extra: &[&str]) -> Command {
    let mut cmd = cairn();
    cmd.arg("build")
        .arg(common::repo_root().join("recipes/hello.yaml"))
        .arg("-o")
        .arg(out)
        .args(["--locked", "--sign-key"])
        .arg(key)
        .args(extra);
    cmd
}

#[test]
fn a_build_that_cannot_record_publishes_the_same_layout_exits_1_and_prints_the_record_command() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public, key_id) = common::keygen(dir.path(), "ci");
    let plain = expect(0, &mut build(&dir.path().join("plain"), &key, &["--json"]));
    let plain: Value = serde_json::from_slice(&plain.stdout).unwrap();

    // A directory where the ledger file should be: nothing can be appended to it.
    let ledger: PathBuf = dir.path().join("audit/ledger.jsonl");
    std::fs::create_dir_all(&ledger).unwrap();
    let identity = "ci job's \"7\" $HOME";
    let out = expect(
        1,
        build(&dir.path().join("recorded"), &key, &["--json"])
            .arg("--ledger")
            .arg(&ledger)
            .args(["--identity", identity]),
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["manifest_digest"], plain["manifest_digest"]);
    assert_eq!(
        common::tree_bytes(&dir.path().join("recorded/hello")),
        common::tree_bytes(&dir.path().join("plain/hello")),
        "the layout is published, byte for byte the layout of a build without --ledger"
    );
    let commands = record_commands(&report, &ledger, &["build"]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "error: not recorded in the ledger {}",
            ledger.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&commands[0]), "{stderr}");

    // Once the ledger is writable, the printed command records the entry.
    std::fs::remove_dir(&ledger).unwrap();
    let recorded = run_record_command(&commands[0]);
    assert!(
        String::from_utf8_lossy(&recorded.stderr).contains("recorded entry 0"),
        "{recorded:?}"
    );
    let entries = entries(&ledger);
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["action"], "build");
    assert_eq!(entry["actor"]["identity"], identity);
    assert_eq!(entry["actor"]["key_id"], key_id.as_str());
    assert!(
        commands[0].contains(&format!(" --time {} ", entry["time"].as_str().unwrap())),
        "the entry has the time of the build, not of the later record: {entry}"
    );
    let details = &entry["details"];
    assert_eq!(details["manifest_digest"], plain["manifest_digest"]);
    assert_eq!(details["image"], "hello");
    assert_eq!(details["recipe"], "hello.yaml");
    assert_eq!(details["sources"], plain["sources"]);
    assert_eq!(
        details["layers"].as_array().unwrap().len(),
        plain["layers"].as_array().unwrap().len()
    );
    assert!(verified(&ledger, &public).contains("1 entries"));
}

#[test]
fn a_push_that_fails_after_an_unrecorded_build_still_prints_the_build_record_command() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _, _) = common::keygen(dir.path(), "ci");
    let ledger = dir.path().join("ledger.jsonl");
    std::fs::create_dir(&ledger).unwrap();
    // Nothing listens there: the push fails after the build.
    let target = format!("127.0.0.1:{}/team/hello:v1", common::registry::free_port());
    let out = expect(
        1,
        build(
            &dir.path().join("out"),
            &key,
            &["--insecure", "--push", &target],
        )
        .arg("--ledger")
        .arg(&ledger),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach the registry"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: not recorded in the ledger {}",
            ledger.display()
        )) && stderr.contains(" record entry --action build "),
        "the build's record command is not lost behind the push error: {stderr}"
    );
    assert!(dir.path().join("out/hello/index.json").exists());
}

#[test]
fn a_verify_that_cannot_record_prints_its_verdict_exits_1_and_carries_ledger_error() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public, _) = common::keygen(dir.path(), "gate");
    expect(0, &mut build(&dir.path().join("out"), &key, &[]));
    // A last line that is not an entry: no entry can be chained after it.
    let ledger = dir.path().join("ledger.jsonl");
    std::fs::write(&ledger, "{\"not\": \"an entry\"}\n").unwrap();
    let verify = |json: bool| {
        let mut cmd = cairn();
        cmd.arg("verify")
            .arg(dir.path().join("out/hello"))
            .arg("--key")
            .arg(&public)
            .arg("--ledger")
            .arg(&ledger)
            .arg("--ledger-key")
            .arg(&key);
        if json {
            cmd.arg("--json");
        }
        expect(1, &mut cmd)
    };
    let text = verify(false);
    assert!(String::from_utf8_lossy(&text.stdout).ends_with("\nverified\n"));
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(stderr.contains("the last entry"), "{stderr}");
    assert!(stderr.contains("record entry --action verify"), "{stderr}");

    let out = verify(true);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verified"], true);
    let commands = record_commands(&report, &ledger, &["verify"]);
    assert_eq!(
        std::fs::read_to_string(&ledger).unwrap(),
        "{\"not\": \"an entry\"}\n",
        "the ledger is left as it was"
    );

    // Repaired (here: the bad line removed), the ledger takes the entry.
    std::fs::remove_file(&ledger).unwrap();
    run_record_command(&commands[0]);
    let entries = entries(&ledger);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["action"], "verify");
    assert_eq!(entries[0]["details"]["verified"], true);
    verified(&ledger, &public);
}

#[test]
fn record_entry_refuses_an_unknown_action_a_malformed_time_and_details_that_are_not_json() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _, _) = common::keygen(dir.path(), "ci");
    let ledger = dir.path().join("ledger.jsonl");
    for (action, time, details, says) in [
        (
            "rebuild",
            "2026-11-27T05:39:03Z",
            "{}",
            "give build, push, verify or deploy",
        ),
        ("build", "27 Nov 2026", "{}", "is not an RFC 3339 UTC time"),
        (
            "build",
            "2026-11-27T05:39:03Z",
            "[1]",
            "--details is not a JSON object",
        ),
    ] {
        let out = expect(
            1,
            cairn()
                .args(["ledger", "--ledger"])
                .arg(&ledger)
                .args(["record", "entry", "--action", action, "--time", time])
                .args(["--details", details, "--key"])
                .arg(&key),
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!ledger.exists(), "nothing was recorded");
}
