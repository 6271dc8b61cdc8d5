//! Unit tests of what the ledger commands build from a stored ledger: signed
//! checkpoints, inclusion and consistency proofs that a third party checks against
//! them, verification against a held checkpoint, and the current deployments.

use super::*;

fn details(pairs: &[(&str, &str)]) -> BTreeMap<String, serde_json::Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
        .collect()
}

fn trust(key: &SigningKey) -> Vec<(String, VerifyingKey)> {
    let public = key.verifying_key();
    vec![(crate::keys::key_id(&public), public)]
}

/// A ledger in a fresh directory, written with `key`.
struct Fixture {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    key: SigningKey,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path().join("ledger.jsonl"));
        Fixture {
            _dir: dir,
            ledger,
            key: crate::keys::generate(),
        }
    }

    /// Appends a deploy of `image` to `env` at `time`.
    fn deploy(&self, env: &str, image: &str, time: &str) -> Entry {
        let d = details(&[("env", env), ("image", image)]);
        record(
            &self.ledger,
            Action::Deploy,
            d,
            "ci",
            time.into(),
            &self.key,
        )
        .unwrap()
    }

    /// Appends a build of the image with manifest `digest`.
    fn build(&self, digest: &Sha256Digest) -> Entry {
        let d = details(&[("manifest_digest", &digest.to_string())]);
        let time = "2026-01-01T00:00:00Z".into();
        record(&self.ledger, Action::Build, d, "dev", time, &self.key).unwrap()
    }

    fn contents(&self) -> Contents {
        self.ledger.read().unwrap()
    }

    fn checkpoint(&self) -> String {
        checkpoint(&self.contents(), DEFAULT_ORIGIN, &self.key).unwrap()
    }

    /// Replaces line `n` of the ledger file with `edit` applied to it.
    fn edit_line(&self, n: usize, edit: impl Fn(&str) -> String) {
        let text = std::fs::read_to_string(self.ledger.path()).unwrap();
        let lines: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == n {
                    format!("{}\n", edit(l))
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(self.ledger.path(), lines).unwrap();
    }
}

#[test]
fn an_inclusion_proof_checks_against_a_checkpoint_of_its_size() {
    let f = Fixture::new();
    let image = Sha256Digest::of(b"image manifest");
    f.build(&Sha256Digest::of(b"an earlier image"));
    f.build(&image);
    f.deploy("prod", &format!("app@{image}"), "2026-01-02T00:00:00Z");
    let contents = f.contents();
    let note = f.checkpoint();

    // The latest entry that mentions the image: the deploy.
    let index = find(&contents, &image, None).unwrap();
    assert_eq!(index, 2);
    assert_eq!(find(&contents, &image, Some(2)).unwrap(), 1);
    let proof = prove(&contents, DEFAULT_ORIGIN, index, None).unwrap();
    let proven = check_proof(&proof, &note, &f.key.verifying_key()).unwrap();
    assert_eq!(proven.action, Action::Deploy);
    assert_eq!(proven.seq, 2);

    // The proof travels as JSON: an edited entry, path or root no longer checks.
    let mut edited = proof.clone();
    edited.entry = edited.entry.replace("prod", "test");
    assert!(check_proof(&edited, &note, &f.key.verifying_key()).is_err());
    let mut edited = proof.clone();
    edited.proof[0] = b64(&[0; 32]);
    assert!(check_proof(&edited, &note, &f.key.verifying_key()).is_err());
    let other_key = crate::keys::generate();
    assert!(check_proof(&proof, &note, &other_key.verifying_key()).is_err());
}

#[test]
fn a_proof_for_another_tree_size_asks_for_the_checkpoint_size() {
    let f = Fixture::new();
    f.build(&Sha256Digest::of(b"one"));
    f.build(&Sha256Digest::of(b"two"));
    let old_note = f.checkpoint();
    f.build(&Sha256Digest::of(b"three"));
    let contents = f.contents();
    let proof = prove(&contents, DEFAULT_ORIGIN, 0, None).unwrap();
    let err = check_proof(&proof, &old_note, &f.key.verifying_key()).unwrap_err();
    assert!(err.to_string().contains("--size 2"), "{err}");
    let at_two = prove(&contents, DEFAULT_ORIGIN, 0, Some(2)).unwrap();
    check_proof(&at_two, &old_note, &f.key.verifying_key()).unwrap();

    assert_eq!(
        prove(&contents, DEFAULT_ORIGIN, 3, None),
        Err(ProveError::OutOfRange {
            index: 3,
            size: 3,
            entries: 3
        })
    );
    assert!(matches!(
        find(&contents, &Sha256Digest::of(b"never built"), None),
        Err(ProveError::NotFound(_))
    ));
}

#[test]
fn a_consistency_proof_shows_the_newer_tree_only_appends() {
    let f = Fixture::new();
    for n in 0..3u8 {
        f.build(&Sha256Digest::of(&[n]));
    }
    let old_note = f.checkpoint();
    for n in 3..7u8 {
        f.build(&Sha256Digest::of(&[n]));
    }
    let new_note = f.checkpoint();
    let key = f.key.verifying_key();
    let proof = prove_consistency(&f.contents(), DEFAULT_ORIGIN, 3, None).unwrap();
    check_consistency(&proof, &old_note, &new_note, &key).unwrap();
    // Checkpoints the other way round are not a proof of anything.
    assert!(check_consistency(&proof, &new_note, &old_note, &key).is_err());
    assert!(prove_consistency(&f.contents(), DEFAULT_ORIGIN, 8, None).is_err());
}

#[test]
fn an_untouched_ledger_verifies_against_its_held_checkpoint() {
    let f = Fixture::new();
    f.build(&Sha256Digest::of(b"one"));
    f.build(&Sha256Digest::of(b"two"));
    let note = f.checkpoint();
    f.build(&Sha256Digest::of(b"three"));
    let key = f.key.verifying_key();
    let held = HeldCheckpoint {
        note: &note,
        origin: DEFAULT_ORIGIN,
        key: &key,
    };
    let verdict = verify(&f.contents(), &trust(&f.key), Some(held));
    assert!(verdict.verified(), "{:?}", verdict.problems);
    assert!(verdict.checkpoint_checked);
    assert_eq!(verdict.entries, 3);
}

#[test]
fn a_rewritten_and_resigned_history_fails_the_held_checkpoint() {
    let f = Fixture::new();
    f.build(&Sha256Digest::of(b"one"));
    f.build(&Sha256Digest::of(b"two"));
    let note = f.checkpoint();
    // Rewrite history with the same key: a fresh ledger whose chain and signatures
    // are all valid, but whose first entry differs.
    let forged = Fixture {
        key: f.key.clone(),
        ..Fixture::new()
    };
    forged.build(&Sha256Digest::of(b"ONE"));
    forged.build(&Sha256Digest::of(b"two"));
    forged.build(&Sha256Digest::of(b"three"));
    let key = f.key.verifying_key();
    let held = HeldCheckpoint {
        note: &note,
        origin: DEFAULT_ORIGIN,
        key: &key,
    };
    let verdict = verify(&forged.contents(), &trust(&f.key), Some(held));
    assert!(!verdict.verified());
    assert_eq!(verdict.problems.len(), 1, "{:?}", verdict.problems);
    assert!(
        verdict.problems[0].contains("not an append-only extension"),
        "{:?}",
        verdict.problems
    );
}

#[test]
fn a_truncated_ledger_fails_the_held_checkpoint() {
    let f = Fixture::new();
    f.build(&Sha256Digest::of(b"one"));
    f.build(&Sha256Digest::of(b"two"));
    let note = f.checkpoint();
    let text = std::fs::read_to_string(f.ledger.path()).unwrap();
    let first = text.lines().next().unwrap();
    std::fs::write(f.ledger.path(), format!("{first}\n")).unwrap();
    let key = f.key.verifying_key();
    let held = HeldCheckpoint {
        note: &note,
        origin: DEFAULT_ORIGIN,
        key: &key,
    };
    let verdict = verify(&f.contents(), &trust(&f.key), Some(held));
    assert!(
        verdict
            .problems
            .iter()
            .any(|p| p.contains("the ledger is shorter than the checkpoint, so it was truncated")),
        "{:?}",
        verdict.problems
    );
}

#[test]
fn an_edited_entry_is_a_problem_without_any_checkpoint() {
    let f = Fixture::new();
    f.deploy("prod", "app@sha256:aa", "2026-01-01T00:00:00Z");
    f.deploy("prod", "app@sha256:bb", "2026-01-02T00:00:00Z");
    f.edit_line(0, |l| l.replace("app@sha256:aa", "app@sha256:cc"));
    let verdict = verify(&f.contents(), &trust(&f.key), None);
    assert!(!verdict.verified());
    assert!(!verdict.checkpoint_checked);
}

#[test]
fn deployments_name_the_current_image_since_it_was_first_deployed() {
    let f = Fixture::new();
    f.deploy("prod", "app@sha256:aa", "2026-01-01T00:00:00Z");
    f.deploy("staging", "app@sha256:bb", "2026-01-02T00:00:00Z");
    f.deploy("prod", "app@sha256:bb", "2026-01-03T00:00:00Z");
    // A redeploy of the same image does not reset "since".
    f.deploy("prod", "app@sha256:bb", "2026-01-04T00:00:00Z");
    f.build(&Sha256Digest::of(b"not a deploy"));
    let now: Vec<(String, String, String, u64)> = deployments(&f.contents().entries)
        .into_iter()
        .map(|d| (d.env, d.image, d.since, d.seq))
        .collect();
    assert_eq!(
        now,
        [
            (
                "prod".into(),
                "app@sha256:bb".into(),
                "2026-01-03T00:00:00Z".into(),
                2
            ),
            (
                "staging".into(),
                "app@sha256:bb".into(),
                "2026-01-02T00:00:00Z".into(),
                1
            ),
        ]
    );
}

#[test]
fn a_group_append_chains_like_single_appends_and_verifies() {
    let f = Fixture::new();
    f.deploy("prod", "r.example/app@sha256:1", "2026-12-06T10:00:00Z");
    let group: Vec<Entry> = (0..3)
        .map(|n| {
            Entry::new(
                Action::Deploy,
                "svc",
                "2026-12-06T10:00:01Z".to_string(),
                details(&[("env", "prod"), ("image", &format!("r.example/app{n}"))]),
            )
        })
        .collect();
    let stored = f.ledger.append_group(group, &f.key, true).unwrap();
    assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    f.deploy("prod", "r.example/app@sha256:2", "2026-12-06T10:00:02Z");
    let contents = f.ledger.read().unwrap();
    assert_eq!(contents.entries.len(), 5);
    let verdict = verify(&contents, &trust(&f.key), None);
    assert!(verdict.verified(), "{:?}", verdict.problems);
}
