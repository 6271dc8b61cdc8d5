//! The audit ledger through the real `cairn` binary, as a CI pipeline and an auditor use
//! it: builds, verdicts and deployments recorded as signed entries; `ledger show` says
//! what runs where; `ledger verify` finds every edit of the file; a saved checkpoint
//! catches even a rewrite by someone holding the signing key; inclusion proofs check
//! against a checkpoint; a torn last write is reported and repaired; the default
//! location follows `$XDG_DATA_HOME`.
//!
//! Every command runs with `XDG_DATA_HOME` and `HOME` inside the test's temporary
//! directory and without the caller's `CAIRN_LEDGER*`/`CAIRN_IDENTITY`, so a bug in
//! path selection can never touch the real ledger.

use crate::common;
use crate::common::repo_root;
use cairn::digest::Sha256Digest;
use cairn::keys;
use cairn::ledger::entry::GENESIS_PREV;
use cairn::ledger::Ledger;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a command did: its exit code and output.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` and asserts its exit code, showing everything it printed if it differs.
fn expect(code: i32, cmd: &mut Command) -> Ran {
    let out = cmd.output().expect("spawn cairn");
    let ran = Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(
        ran.code, code,
        "{cmd:?}: expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
        ran.code, ran.stdout, ran.stderr
    );
    ran
}

/// Asserts that `text` contains `needle`, showing `text` if not.
#[track_caller]
fn assert_says(text: &str, needle: &str) {
    assert!(
        text.contains(needle),
        "expected the output to say {needle:?}; it was:\n{text}"
    );
}

/// A key pair made by `cairn keygen`.
struct KeyPair {
    private: PathBuf,
    public: PathBuf,
    /// The key id `cairn keygen` printed.
    id: String,
}

/// A temporary directory holding the ledger, keys and outputs of one test.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The `XDG_DATA_HOME` every command gets.
    fn xdg_data_home(&self) -> PathBuf {
        self.path("xdg-data")
    }

    /// The ledger passed with `--ledger`.
    fn ledger_file(&self) -> PathBuf {
        self.path("audit/ledger.jsonl")
    }

    /// `cairn` confined to this directory: data and home inside it, no ledger, key or
    /// identity from the caller's environment.
    fn cairn(&self) -> Command {
        let mut cmd = common::cairn();
        cmd.env("XDG_DATA_HOME", self.xdg_data_home())
            .env("HOME", self.path("home"))
            .env_remove("CAIRN_LEDGER")
            .env_remove("CAIRN_LEDGER_KEY")
            .env_remove("CAIRN_IDENTITY");
        cmd
    }

    /// `cairn ledger --ledger LEDGER ARGS...`
    fn ledger(&self, args: &[&str]) -> Command {
        let mut cmd = self.cairn();
        cmd.arg("ledger")
            .arg("--ledger")
            .arg(self.ledger_file())
            .args(args);
        cmd
    }

    fn keygen(&self, name: &str) -> KeyPair {
        let prefix = self.path(name);
        let ran = expect(0, self.cairn().arg("keygen").arg(&prefix));
        KeyPair {
            private: prefix.with_extension("key"),
            public: prefix.with_extension("pub"),
            id: ran.stdout.trim().to_string(),
        }
    }

    /// `cairn ledger record deploy --image IMAGE --env ENV --key KEY`; checks that it
    /// printed the hash of the line it appended, and returns the stderr.
    fn deploy(&self, image: &str, env: &str, key: &KeyPair) -> String {
        let ran = expect(
            0,
            self.ledger(&["record", "deploy", "--image", image, "--env", env, "--key"])
                .arg(&key.private),
        );
        let lines = self.lines();
        let last = lines.last().expect("record wrote an entry");
        assert_eq!(
            ran.stdout.trim(),
            Sha256Digest::of(last.as_bytes()).hex(),
            "`record` prints the hash of the entry it appended (the next entry's prev)"
        );
        ran.stderr
    }

    /// Deploys to each of `envs` in turn, the image of entry n being `image(n)`, so each
    /// entry has a digest of its own.
    fn deploys(&self, envs: &[&str], key: &KeyPair) {
        for env in envs {
            let seq = self.entry_count();
            self.deploy(&image(seq), env, key);
        }
    }

    /// Complete entries in the ledger (0 if it does not exist yet).
    fn entry_count(&self) -> u8 {
        match std::fs::read(self.ledger_file()) {
            Ok(bytes) => bytes.iter().filter(|&&b| b == b'\n').count() as u8,
            Err(_) => 0,
        }
    }

    /// `cairn ledger verify --key PUB EXTRA...` with the expected exit code.
    fn verify(&self, code: i32, public: &Path, extra: &[&str]) -> Ran {
        expect(
            code,
            self.ledger(&["verify", "--key"]).arg(public).args(extra),
        )
    }

    fn bytes(&self) -> Vec<u8> {
        std::fs::read(self.ledger_file()).unwrap()
    }

    /// The ledger's lines, without their newlines.
    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.bytes()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    fn write_lines(&self, lines: &[String]) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(self.ledger_file(), text).unwrap();
    }

    /// `cairn ledger show --json ARGS...`
    fn show_json(&self, args: &[&str]) -> Value {
        let ran = expect(0, self.ledger(&["show", "--json"]).args(args));
        serde_json::from_str(&ran.stdout).expect("show --json prints JSON")
    }

    /// `cairn ledger checkpoint --key KEY` saved as `name`; returns its text.
    fn checkpoint(&self, name: &str, key: &KeyPair) -> String {
        let ran = expect(0, self.ledger(&["checkpoint", "--key"]).arg(&key.private));
        std::fs::write(self.path(name), &ran.stdout).unwrap();
        ran.stdout
    }

    /// `cairn ledger prove ARGS...` saved as `name`; returns the proof.
    fn prove(&self, name: &str, args: &[&str]) -> Value {
        let ran = expect(0, self.ledger(&["prove"]).args(args));
        std::fs::write(self.path(name), &ran.stdout).unwrap();
        serde_json::from_str(&ran.stdout).expect("prove prints JSON")
    }

    /// `cairn ledger check-proof PROOF --checkpoint CP --key PUB` with the expected exit code.
    fn check_proof(&self, code: i32, proof: &str, checkpoint: &str, public: &Path) -> Ran {
        expect(
            code,
            self.ledger(&["check-proof"])
                .arg(self.path(proof))
                .arg("--checkpoint")
                .arg(self.path(checkpoint))
                .arg("--key")
                .arg(public),
        )
    }
}

/// A pinned image reference with a digest of its own for each `n`.
fn image(n: u8) -> String {
    format!("reg.example/app{n}@{}", digest(n))
}

fn digest(n: u8) -> Sha256Digest {
    Sha256Digest::of(&[n])
}

/// The `seq` of each entry.
fn seqs(entries: &Value) -> Vec<u64> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_ci_pipeline_records_build_verify_and_deploys_and_show_says_what_runs_where() {
    let s = Scratch::new();
    let k = s.keygen("ci");
    let ledger = s.ledger_file();

    let out = s.path("out");
    let ran = expect(
        0,
        s.cairn()
            .arg("build")
            .arg(repo_root().join("recipes/hello.yaml"))
            .arg("-o")
            .arg(&out)
            .args(["--locked", "--json", "--sign-key"])
            .arg(&k.private)
            .arg("--ledger")
            .arg(&ledger)
            .args(["--identity", "ci/job/7"]),
    );
    let report: Value = serde_json::from_str(&ran.stdout).expect("build --json prints JSON");
    let manifest = report["manifest_digest"].as_str().unwrap().to_string();

    let ran = expect(
        0,
        s.cairn()
            .arg("verify")
            .arg(out.join("hello"))
            .arg("--key")
            .arg(&k.public)
            .arg("--ledger")
            .arg(&ledger)
            .arg("--ledger-key")
            .arg(&k.private)
            .args(["--identity", "gate"]),
    );
    assert_says(&ran.stdout, "verified");
    assert_says(&ran.stderr, "recorded the verdict as entry 1");

    let hello = format!("reg.example/hello@{manifest}");
    let other = image(9);
    assert_says(&s.deploy(&hello, "prod", &k), "recorded entry 2");
    s.deploy(&other, "staging", &k);
    // Entry times have one-second resolution: let the re-deploy get a later time than
    // the first deploy, so `since` shows which of the two it names.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    s.deploy(&hello, "prod", &k);

    let all = s.show_json(&[]);
    let entries = &all["entries"];
    assert_eq!(seqs(entries), [0, 1, 2, 3, 4]);
    let actions: Vec<&str> = (0..5)
        .map(|i| entries[i]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["build", "verify", "deploy", "deploy", "deploy"]);
    for i in 0..5 {
        assert_eq!(
            entries[i]["actor"]["key_id"], k.id,
            "entry {i} names the key id `keygen` printed"
        );
    }
    assert_eq!(entries[0]["actor"]["identity"], "ci/job/7");
    assert_eq!(entries[1]["actor"]["identity"], "gate");

    // The hash chain: each prev is the SHA-256 of the line before it in the file.
    let lines = s.lines();
    assert_eq!(lines.len(), 5);
    assert_eq!(entries[0]["prev"], GENESIS_PREV);
    for n in 1..5 {
        assert_eq!(
            entries[n]["prev"],
            Sha256Digest::of(lines[n - 1].as_bytes()).hex(),
            "entry {n}'s prev is the hash of line {n}"
        );
    }

    let build = &entries[0]["details"];
    assert_eq!(build["manifest_digest"], report["manifest_digest"]);
    assert_eq!(build["recipe"], "hello.yaml");
    assert_eq!(build["sources"], report["sources"]);
    let sources = build["sources"].as_object().unwrap();
    assert_eq!(
        sources.keys().collect::<Vec<_>>(),
        ["app", "site", "tools"],
        "the build entry names the recipe's three sources"
    );
    assert_eq!(
        sources["app"],
        "sha256:f9dbdb463f819ed554480e3ffa8781d798a36acae9ea7638e313521141055ef2"
    );
    assert_eq!(
        sources["tools"],
        "sha256:a85f169a9ece4d17699ec69a42017ed50e0233b6da2a59af8fe5d60cd89039f5"
    );
    let verdict = &entries[1]["details"];
    assert_eq!(verdict["image"], manifest.as_str());
    assert_eq!(verdict["verified"], true);
    assert_eq!(verdict["policy_sha256"], Value::Null);
    for (n, env, img) in [
        (2, "prod", &hello),
        (3, "staging", &other),
        (4, "prod", &hello),
    ] {
        let details = &entries[n]["details"];
        assert_eq!(details["env"], env, "entry {n}");
        assert_eq!(details["image"], img.as_str(), "entry {n}");
        assert_eq!(
            details["digest"].as_str().unwrap(),
            img.rsplit_once('@').unwrap().1,
            "entry {n}"
        );
    }

    // What runs in prod, and since the first of the two consecutive deploys of it.
    let first_time = entries[2]["time"].as_str().unwrap();
    assert_ne!(first_time, entries[4]["time"].as_str().unwrap());
    assert_eq!(
        all["deployed"],
        json!([
            {"env": "prod", "image": hello, "since": first_time, "seq": 2, "identity": ""},
            {"env": "staging", "image": other, "since": entries[3]["time"], "seq": 3, "identity": ""},
        ])
    );
    let ran = expect(0, &mut s.ledger(&["show", "--env", "prod"]));
    let first_line = ran.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        first_line,
        format!("unverified: entries say {hello} is deployed to prod since {first_time} (entry 2); pass --key PUB to tell what runs there")
    );
    // Without --key, nothing is told as what runs in prod.
    assert!(
        !ran.stdout.contains("deployed prod:") && !ran.stdout.contains("running"),
        "{}",
        ran.stdout
    );
    assert!(
        !ran.stdout.contains("staging"),
        "show --env prod lists only prod:\n{}",
        ran.stdout
    );
    let listed: Vec<&str> = ran.stdout.lines().skip(1).collect();
    assert_eq!(listed.len(), 2, "the two prod deploys:\n{}", ran.stdout);
    assert!(listed[0].trim_start().starts_with("2 ") && listed[1].trim_start().starts_with("4 "));
    let prod = s.show_json(&["--env", "prod"]);
    assert_eq!(seqs(&prod["entries"]), [2, 4]);
    assert_eq!(prod["signatures_checked"], false);

    // By image: the build, its verdict and the two deploys mention the manifest digest.
    assert_eq!(
        seqs(&s.show_json(&["--image", &manifest])["entries"]),
        [0, 1, 2, 4]
    );
    assert_eq!(
        seqs(&s.show_json(&["--image", &digest(9).to_string()])["entries"]),
        [3]
    );
    assert_eq!(
        seqs(&s.show_json(&["--image", &digest(8).to_string()])["entries"]),
        Vec::<u64>::new()
    );

    let ran = s.verify(0, &k.public, &[]);
    assert_says(&ran.stdout, "5 entries");
}

#[test]
fn verify_names_the_entry_of_every_edit_of_the_file_and_untrusted_keys() {
    let s = Scratch::new();
    let k = s.keygen("ci");
    let stranger = s.keygen("stranger");
    s.deploys(&["prod", "staging", "prod", "dev", "prod"], &k);
    let ran = s.verify(0, &k.public, &[]);
    assert_says(&ran.stdout, "5 entries");
    assert!(
        ran.stdout.trim_end().ends_with(": verified"),
        "{}",
        ran.stdout
    );

    let ran = s.verify(1, &stranger.public, &[]);
    assert_says(
        &ran.stdout,
        &format!(
            "FAIL line 1, entry 0: signed by key {}, which is not a trusted key",
            k.id
        ),
    );
    assert_says(&ran.stdout, "NOT verified");
    // Trusting both keys is enough.
    let ran = s.verify(0, &stranger.public, &["--key", k.public.to_str().unwrap()]);
    assert_says(&ran.stdout, "verified");

    let original = s.lines();
    let cases: [(&str, Vec<String>, &str); 5] = [
        (
            "one character of entry 2's details changed",
            {
                let mut l = original.clone();
                l[2] = l[2].replace("\"env\":\"prod\"", "\"env\":\"prud\"");
                assert_ne!(l[2], original[2]);
                serde_json::from_str::<Value>(&l[2]).expect("still valid JSON");
                l
            },
            "FAIL line 3, entry 2: signature does not match (the entry was modified after signing)",
        ),
        (
            "entry 2 deleted",
            {
                let mut l = original.clone();
                l.remove(2);
                l
            },
            "FAIL line 3, entry 3: seq 3, expected 2",
        ),
        (
            "entries 1 and 2 swapped",
            {
                let mut l = original.clone();
                l.swap(1, 2);
                l
            },
            "FAIL line 2, entry 2: seq 2, expected 1",
        ),
        (
            "a copy of entry 1 appended",
            {
                let mut l = original.clone();
                l.push(original[1].clone());
                l
            },
            "FAIL line 6, entry 1: seq 1, expected 5",
        ),
        (
            "a space added to entry 3's JSON",
            {
                let mut l = original.clone();
                l[3] = l[3].replacen("{\"action\"", "{ \"action\"", 1);
                assert_ne!(l[3], original[3]);
                l
            },
            "FAIL line 4, entry 3: the line is not the canonical JSON of its entry",
        ),
    ];
    for (what, lines, says) in cases {
        s.write_lines(&lines);
        let ran = expect(1, s.ledger(&["verify", "--key"]).arg(&k.public));
        assert!(
            ran.stdout.contains(says) && ran.stdout.contains("NOT verified"),
            "{what}: expected `ledger verify` to say {says:?} and NOT verified; it said:\n{}{}",
            ran.stdout,
            ran.stderr
        );
    }
    s.write_lines(&original);
    s.verify(0, &k.public, &[]);
}

/// The signed-note checkpoint's lines: origin, size, root, blank, signature.
fn checkpoint_lines(note: &str) -> (u64, String) {
    let lines: Vec<&str> = note.split('\n').collect();
    assert_eq!(lines.len(), 6, "five lines and a final newline:\n{note}");
    assert_eq!(lines[0], "cairn.local/ledger");
    let size: u64 = lines[1].parse().expect("the second line is the tree size");
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        b64.decode(lines[2]).map(|r| r.len()).ok(),
        Some(32),
        "{note}"
    );
    assert_eq!(lines[3], "");
    let signature = lines[4]
        .strip_prefix("\u{2014} cairn.local/ledger ")
        .unwrap_or_else(|| panic!("an em-dash signature line by cairn.local/ledger:\n{note}"));
    assert_eq!(
        b64.decode(signature).map(|s| s.len()).ok(),
        Some(4 + 64),
        "key hash and Ed25519 signature"
    );
    assert_eq!(lines[5], "");
    (size, lines[2].to_string())
}

/// Re-signs every entry from `from` on with `key`, after letting `edit` change entry
/// `from`, and re-chains them: what an attacker holding the signing key can do.
fn rewrite_history(ledger: &Path, key: &Path, from: usize, edit: impl FnOnce(&mut Value)) {
    let key = keys::read_private(key).unwrap();
    let contents = Ledger::open(ledger).read().unwrap();
    let mut edit = Some(edit);
    let mut prev = GENESIS_PREV.to_string();
    let mut text = Vec::new();
    for (n, stored) in contents.entries.iter().enumerate() {
        let line = if n < from {
            stored.line.clone()
        } else {
            let mut entry = stored.entry.clone();
            if n == from {
                let mut details = serde_json::to_value(&entry.details).unwrap();
                (edit.take().unwrap())(&mut details);
                entry.details = serde_json::from_value(details).unwrap();
            }
            entry.prev = prev.clone();
            entry.sign(&key);
            entry.line()
        };
        prev = Sha256Digest::of(&line).hex();
        text.extend_from_slice(&line);
        text.push(b'\n');
    }
    std::fs::write(ledger, text).unwrap();
}

#[test]
fn a_saved_checkpoint_catches_removed_entries_and_a_rewrite_by_the_key_holder() {
    let s = Scratch::new();
    let k = s.keygen("ci");
    s.deploys(&["prod", "staging", "prod"], &k);

    let note = s.checkpoint("cp3", &k);
    let (size, root) = checkpoint_lines(&note);
    assert_eq!(size, 3);
    let ran = s.verify(0, &k.public, &[]);
    assert_says(&ran.stdout, &format!("3 entries, root {root}"));

    s.deploys(&["dev", "prod"], &k);
    let cp3 = s.path("cp3");
    let cp3 = cp3.to_str().unwrap();
    let ran = s.verify(0, &k.public, &["--checkpoint", cp3]);
    assert_says(&ran.stdout, "consistent with the held checkpoint: verified");
    let full = s.bytes();

    // Truncated to fewer entries than were checkpointed: a valid chain on its own.
    let lines = s.lines();
    s.write_lines(&lines[..2]);
    s.verify(0, &k.public, &[]);
    let ran = s.verify(1, &k.public, &["--checkpoint", cp3]);
    assert_says(
        &ran.stdout,
        "the ledger is shorter than the checkpoint, so it was truncated: the checkpoint covers 3 entries, the ledger has only 2; restore the missing entries",
    );
    // The summary does not call a truncated ledger consistent with the checkpoint.
    assert_says(&ran.stdout, "2 entries, root");
    assert_says(
        &ran.stdout,
        "checked against the held checkpoint: NOT verified",
    );
    assert!(!ran.stdout.contains("consistent with"), "{}", ran.stdout);

    // Someone with the key changes entry 1 and re-signs and re-chains everything after.
    std::fs::write(s.ledger_file(), &full).unwrap();
    rewrite_history(&s.ledger_file(), &k.private, 1, |details| {
        details["env"] = json!("nowhere");
    });
    assert_eq!(s.show_json(&[])["entries"][1]["details"]["env"], "nowhere");
    let ran = s.verify(0, &k.public, &[]);
    assert_says(&ran.stdout, "5 entries");
    let ran = s.verify(1, &k.public, &["--checkpoint", cp3]);
    assert_says(
        &ran.stdout,
        "the ledger is not an append-only extension of the 3 entries it checkpointed",
    );
    assert_says(&ran.stdout, "NOT verified");

    // A checkpoint is only taken from the key that is trusted to sign it.
    std::fs::write(s.ledger_file(), &full).unwrap();
    let stranger = s.keygen("stranger");
    s.checkpoint("forged", &stranger);
    let forged = s.path("forged");
    let ran = s.verify(1, &k.public, &["--checkpoint", forged.to_str().unwrap()]);
    assert_says(
        &ran.stdout,
        "held checkpoint: the note has no signature by key",
    );
}

#[test]
fn inclusion_proofs_check_against_a_checkpoint_of_their_size() {
    let s = Scratch::new();
    let k = s.keygen("ci");
    s.deploys(&["prod", "staging", "prod"], &k);
    s.checkpoint("cp3", &k);
    s.deploys(&["dev", "prod"], &k);
    s.checkpoint("cp5", &k);

    let wanted = digest(1).to_string();
    let proof = s.prove("proof.json", &[&wanted]);
    assert_eq!(proof["index"], 1);
    assert_eq!(proof["tree_size"], 5);
    assert_eq!(proof["entry"], s.lines()[1].as_str());
    let ran = s.check_proof(0, "proof.json", "cp5", &k.public);
    assert_says(&ran.stdout, "included: entry 1 (deploy reg.example/app1@");
    assert_says(&ran.stdout, "in the checkpointed tree of 5 entries");

    // Against the older, smaller checkpoint: a hint, and a proof at its size passes.
    let ran = s.check_proof(1, "proof.json", "cp3", &k.public);
    assert_says(&ran.stdout, "NOT included");
    assert_says(&ran.stdout, "`cairn ledger prove --size 3`");
    let proof = s.prove("proof3.json", &[&wanted, "--size", "3"]);
    assert_eq!(proof["tree_size"], 3);
    let ran = s.check_proof(0, "proof3.json", "cp3", &k.public);
    assert_says(&ran.stdout, "included: entry 1");
    assert_says(&ran.stdout, "tree of 3 entries");

    // An entry other than the one that was logged.
    let mut forged = s.prove("forged.json", &[&wanted]);
    let entry = forged["entry"].as_str().unwrap().replace("staging", "prod");
    forged["entry"] = json!(entry);
    std::fs::write(s.path("forged.json"), forged.to_string()).unwrap();
    let ran = s.check_proof(1, "forged.json", "cp5", &k.public);
    assert_says(&ran.stdout, "NOT included");
    assert_says(&ran.stdout, "not in the checkpointed tree");

    // A checkpoint by another key proves nothing.
    let stranger = s.keygen("stranger");
    s.checkpoint("stranger-cp", &stranger);
    let ran = s.check_proof(1, "proof.json", "stranger-cp", &k.public);
    assert_says(&ran.stdout, "NOT included: the checkpoint");

    let unknown = digest(77).to_string();
    let ran = expect(1, &mut s.ledger(&["prove", &unknown]));
    assert_says(&ran.stderr, &format!("no entry mentions {unknown}"));
    assert!(ran.stdout.is_empty(), "no proof printed: {}", ran.stdout);
}

/// A holder of an old checkpoint asks for a proof at its size, of an image that was
/// deployed again after the checkpoint: the proof is of the latest entry inside the
/// checkpointed tree.
#[test]
fn a_proof_at_an_older_size_finds_the_entry_inside_that_tree() {
    let s = Scratch::new();
    let k = s.keygen("ci");
    s.deploys(&["prod", "staging"], &k);
    s.checkpoint("cp2", &k);
    s.deploy(&image(1), "prod", &k);

    let wanted = digest(1).to_string();
    let proof = s.prove("proof2.json", &[&wanted, "--size", "2"]);
    assert_eq!(proof["index"], 1);
    let ran = s.check_proof(0, "proof2.json", "cp2", &k.public);
    assert_says(&ran.stdout, "included: entry 1");
}

/// `prove sha256:` names no image; it must not prove whatever entry comes last.
#[test]
fn prove_of_an_empty_digest_proves_nothing() {
    let s = Scratch::new();
    let k = s.keygen("ci");
    s.deploys(&["prod", "staging"], &k);
    let ran = s.ledger(&["prove", "sha256:"]).output().unwrap();
    assert!(
        !ran.status.success() && ran.stdout.is_empty(),
        "`ledger prove sha256:` printed a proof:\n{}",
        String::from_utf8_lossy(&ran.stdout)
    );
}

/// An auditor who mistypes the ledger's path must not be told it verified.
#[test]
fn verifying_a_ledger_that_does_not_exist_fails_naming_it() {
    let s = Scratch::new();
    let k = s.keygen("ci");
    let ran = s.verify(1, &k.public, &[]);
    let said = format!("{}{}", ran.stdout, ran.stderr);
    assert_says(&said, &s.ledger_file().display().to_string());
    assert!(!said.contains(": verified"), "{said}");
}

#[test]
fn a_torn_last_write_is_reported_verified_around_and_repaired_by_the_next_record() {
    let s = Scratch::new();
    let k = s.keygen("ci");
    s.deploys(&["prod", "staging", "prod"], &k);
    let intact = s.bytes();
    let fragment = br#"{"action":"deploy","ac"#;
    let mut torn = intact.clone();
    torn.extend_from_slice(fragment);
    std::fs::write(s.ledger_file(), &torn).unwrap();

    let ran = expect(0, &mut s.ledger(&["show"]));
    assert_says(
        &ran.stderr,
        &format!("torn write of {} bytes", fragment.len()),
    );
    assert_eq!(
        ran.stdout
            .lines()
            .filter(|l| l.contains(" deploy "))
            .count(),
        3
    );

    let ran = s.verify(0, &k.public, &[]);
    assert_says(
        &ran.stdout,
        &format!("{} bytes of a torn last write", fragment.len()),
    );
    assert_says(&ran.stdout, "3 entries");
    assert!(
        ran.stdout.trim_end().ends_with(": verified"),
        "{}",
        ran.stdout
    );

    assert_says(&s.deploy(&image(3), "dev", &k), "recorded entry 3");
    let after = s.bytes();
    assert!(after.ends_with(b"\n"), "the file ends with a complete line");
    assert!(
        after.starts_with(&intact),
        "the complete entries are untouched"
    );
    let lines = s.lines();
    assert_eq!(lines.len(), 4);
    let last: Value = serde_json::from_str(&lines[3]).unwrap();
    assert_eq!(last["seq"], 3);
    assert_eq!(last["prev"], Sha256Digest::of(lines[2].as_bytes()).hex());
    let ran = s.verify(0, &k.public, &[]);
    assert!(!ran.stdout.contains("torn"), "{}", ran.stdout);
    let ran = expect(0, &mut s.ledger(&["show"]));
    assert!(!ran.stderr.contains("torn"), "{}", ran.stderr);
}

#[test]
fn a_build_with_a_ledger_but_no_signing_key_warns_and_records_nothing() {
    let s = Scratch::new();
    let ledger = s.ledger_file();
    let ran = expect(
        0,
        s.cairn()
            .arg("build")
            .arg(repo_root().join("recipes/hello.yaml"))
            .arg("-o")
            .arg(s.path("out"))
            .args(["--locked", "--quiet", "--ledger"])
            .arg(&ledger),
    );
    assert_says(
        &ran.stderr,
        &format!("warning: not recorded in the ledger {}", ledger.display()),
    );
    assert_says(&ran.stderr, "--sign-key");
    assert!(
        !ledger.exists(),
        "nothing signed, nothing recorded: {} exists",
        ledger.display()
    );
    let empty = s.show_json(&[]);
    assert_eq!(empty["entries"], json!([]));
}

#[test]
fn without_a_ledger_flag_the_ledger_is_under_xdg_data_home_else_home() {
    let s = Scratch::new();
    let k = s.keygen("ci");
    let default = s.xdg_data_home().join("cairn/ledger.jsonl");
    let record = |cmd: &mut Command, env: &str| {
        expect(
            0,
            cmd.args(["ledger", "record", "deploy", "--image", &image(0)])
                .args(["--env", env, "--key"])
                .arg(&k.private),
        )
    };

    let ran = record(&mut s.cairn(), "prod");
    assert_says(
        &ran.stderr,
        &format!("recorded entry 0 in {}", default.display()),
    );
    let text = std::fs::read_to_string(&default).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert_says(&text, "\"env\":\"prod\"");
    let ran = expect(0, s.cairn().args(["ledger", "show"]));
    assert_says(&ran.stdout, "unverified: entries say reg.example/app0@");

    // $CAIRN_LEDGER overrides the default.
    let elsewhere = s.path("elsewhere.jsonl");
    record(s.cairn().env("CAIRN_LEDGER", &elsewhere), "staging");
    assert_eq!(
        std::fs::read_to_string(&elsewhere).unwrap().lines().count(),
        1
    );
    assert_eq!(std::fs::read_to_string(&default).unwrap(), text);

    // No $XDG_DATA_HOME: ~/.local/share.
    let home_ledger = s.path("home/.local/share/cairn/ledger.jsonl");
    record(s.cairn().env_remove("XDG_DATA_HOME"), "dev");
    assert_eq!(
        std::fs::read_to_string(&home_ledger)
            .unwrap()
            .lines()
            .count(),
        1
    );
    assert_eq!(std::fs::read_to_string(&default).unwrap(), text);
}

/// A holder of two checkpoints checks that the newer tree only appends to the older
/// one, with a proof from whoever has the ledger; a proof for other sizes, or a
/// rewritten history, fails.
#[test]
fn consistency_proofs_check_against_two_held_checkpoints() {
    let s = Scratch::new();
    let k = s.keygen("ci");
    s.deploys(&["prod", "staging", "prod"], &k);
    s.checkpoint("cp3", &k);
    s.deploys(&["dev", "prod"], &k);
    s.checkpoint("cp5", &k);

    let check = |code: i32, proof: &str, old: &str, new: &str| {
        expect(
            code,
            s.ledger(&["check-consistency"])
                .arg(s.path(proof))
                .arg("--old")
                .arg(s.path(old))
                .arg("--new")
                .arg(s.path(new))
                .arg("--key")
                .arg(&k.public),
        )
    };
    let ran = expect(0, &mut s.ledger(&["prove-consistency", "3"]));
    std::fs::write(s.path("c.json"), &ran.stdout).unwrap();
    let proof: Value = serde_json::from_str(&ran.stdout).expect("prove-consistency prints JSON");
    assert_eq!(
        (proof["old_size"].as_u64(), proof["new_size"].as_u64()),
        (Some(3), Some(5))
    );
    let ran = check(0, "c.json", "cp3", "cp5");
    assert_says(
        &ran.stdout,
        "consistent: the tree of 5 entries only appends to the tree of 3",
    );
    let ran = check(1, "c.json", "cp5", "cp3");
    assert_says(&ran.stdout, "NOT consistent");

    // The key holder rewrites entry 1 and everything after it; a new checkpoint of the
    // rewritten ledger is not an extension of the old one.
    rewrite_history(&s.ledger_file(), &k.private, 1, |details| {
        details["env"] = json!("dev");
    });
    s.checkpoint("cp5-rewritten", &k);
    let ran = expect(0, &mut s.ledger(&["prove-consistency", "3"]));
    std::fs::write(s.path("c2.json"), &ran.stdout).unwrap();
    let ran = check(1, "c2.json", "cp3", "cp5-rewritten");
    assert_says(
        &ran.stdout,
        "NOT consistent: the newer tree does not extend the older one",
    );
}

#[test]
fn show_prints_what_a_push_entry_knows_and_never_a_bare_question_mark() {
    let s = Scratch::new();
    let k = s.keygen("ci");
    let digest = format!("sha256:{}", "a".repeat(64));
    // As `cairn push` records a push (`manifest_digest`), as the registry hook does
    // (`digest`), and one with no digest at all.
    for details in [
        json!({"reference": "reg.example/app:v1", "manifest_digest": digest}),
        json!({"reference": "reg.example/app:v2", "digest": digest, "registry": "reg.example"}),
        json!({"reference": "reg.example/app:v3"}),
        json!({}),
    ] {
        expect(
            0,
            s.ledger(&["record", "entry", "--action", "push"])
                .args(["--time", "2026-11-27T05:39:03Z", "--details"])
                .arg(details.to_string())
                .arg("--key")
                .arg(&k.private),
        );
    }
    let ran = expect(0, &mut s.ledger(&["show"]));
    let pushes: Vec<&str> = ran
        .stdout
        .lines()
        .filter(|l| l.contains(" push "))
        .collect();
    assert_eq!(pushes.len(), 4, "{}", ran.stdout);
    assert!(
        pushes[0].ends_with(&format!("reg.example/app:v1 {digest}")),
        "{}",
        pushes[0]
    );
    assert!(
        pushes[1].ends_with(&format!("reg.example/app:v2 {digest}")),
        "{}",
        pushes[1]
    );
    assert!(pushes[2].ends_with("reg.example/app:v3"), "{}", pushes[2]);
    assert!(
        pushes[3].ends_with("(no image or reference recorded)"),
        "{}",
        pushes[3]
    );
    assert!(!ran.stdout.contains('?'), "{}", ran.stdout);
}
