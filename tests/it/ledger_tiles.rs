//! The ledger published as C2SP tlog-tiles, through the real `cairn` binary as a CI job
//! and an auditor use it: `ledger tiles DIR` lays out the spec's paths for small and
//! multi-level logs with the same root as `ledger checkpoint`; a re-run after appends
//! leaves every full tile byte for byte as it was and adds only new tiles, partial tiles
//! and the checkpoint; `ledger verify --tiles` passes on what was published and names
//! the file or entry when a bundle, a hash tile or the checkpoint is altered; a rewritten
//! history is refused by the publisher and caught by an auditor holding an old checkpoint.
//!
//! Entries are appended with the library, without fsync, to keep large ledgers quick.

use crate::common::{self, run_err, run_ok};
use cairn::keys::{self, SigningKey};
use cairn::ledger::entry::{Action, Entry};
use cairn::ledger::Ledger;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A ledger file, its signing key (saved as a key pair) and a place for tiles.
pub(crate) struct Log {
    dir: tempfile::TempDir,
    ledger: Ledger,
    key: SigningKey,
    private: PathBuf,
    public: PathBuf,
}

impl Log {
    pub(crate) fn new() -> Log {
        let dir = tempfile::tempdir().unwrap();
        let key = keys::generate();
        let (private, public) = keys::write_pair(&key, &dir.path().join("signer")).unwrap();
        Log {
            ledger: Ledger::open(dir.path().join("ledger.jsonl")),
            dir,
            key,
            private,
            public,
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Appends entries until the ledger has `size`; `tag` goes into each entry's
    /// details, so two ledgers with different tags have different histories.
    pub(crate) fn grow_to(&self, size: u64, tag: &str) {
        let have = self.ledger.read().unwrap().entries.len() as u64;
        for n in have..size {
            let details = [
                ("n".to_string(), serde_json::json!(n)),
                ("tag".to_string(), serde_json::json!(tag)),
            ]
            .into();
            let entry = Entry::new(
                Action::Build,
                "ci/job",
                "2026-12-06T08:00:00Z".into(),
                details,
            );
            self.ledger.append(entry, &self.key, false).unwrap();
        }
    }

    fn cairn_ledger(&self, args: &[&str]) -> Command {
        let mut cmd = common::cairn();
        cmd.env_remove("CAIRN_LEDGER")
            .env_remove("CAIRN_LEDGER_KEY")
            .arg("ledger")
            .arg("--ledger")
            .arg(self.ledger.path())
            .args(args);
        cmd
    }

    /// `cairn ledger tiles DIR`; returns its stderr (the summary).
    pub(crate) fn publish(&self, tiles: &Path) -> String {
        let out = run_ok(
            self.cairn_ledger(&["tiles"])
                .arg(tiles)
                .arg("--key")
                .arg(&self.private),
        );
        let printed = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            printed,
            std::fs::read_to_string(tiles.join("checkpoint")).unwrap(),
            "`tiles` prints the checkpoint it published"
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// `cairn ledger verify --tiles DIR --key PUB [ARGS]`: exit code and stdout.
    pub(crate) fn verify_tiles(&self, tiles: &Path, extra: &[&str]) -> (i32, String) {
        let out = self
            .cairn_ledger(&["verify", "--tiles", tiles.to_str().unwrap(), "--key"])
            .arg(&self.public)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    pub(crate) fn assert_verifies(&self, tiles: &Path, entries: u64) {
        let (code, said) = self.verify_tiles(tiles, &[]);
        assert_eq!(code, 0, "{said}");
        assert!(
            said.contains(&format!("{entries} entries, root ")) && said.contains(": verified"),
            "{said}"
        );
    }
}

/// Every file under `dir` (not directories), by path relative to it.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = common::tree_bytes(dir);
    files.retain(|_, bytes| bytes.as_slice() != b"<dir>");
    files
}

#[track_caller]
pub(crate) fn assert_says(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}

#[test]
fn small_logs_have_the_spec_layout_and_the_root_of_ledger_checkpoint() {
    let log = Log::new();
    let cases: [(u64, &[&str]); 5] = [
        (0, &["checkpoint"]),
        (1, &["checkpoint", "tile/0/000.p/1", "tile/entries/000.p/1"]),
        (
            255,
            &["checkpoint", "tile/0/000.p/255", "tile/entries/000.p/255"],
        ),
        (
            256,
            &[
                "checkpoint",
                "tile/0/000",
                "tile/1/000.p/1",
                "tile/entries/000",
            ],
        ),
        (
            257,
            &[
                "checkpoint",
                "tile/0/000",
                "tile/0/001.p/1",
                "tile/1/000.p/1",
                "tile/entries/000",
                "tile/entries/001.p/1",
            ],
        ),
    ];
    for (size, layout) in cases {
        log.grow_to(size, "a");
        let tiles = log.path(&format!("tiles-{size}"));
        log.publish(&tiles);
        let paths: Vec<String> = files(&tiles).into_keys().collect();
        assert_eq!(paths, layout, "size {size}");
        // Ed25519 signatures are deterministic: the same tree gives the same note.
        let checkpoint = run_ok(log.cairn_ledger(&["checkpoint", "--key"]).arg(&log.private));
        assert_eq!(
            String::from_utf8(checkpoint.stdout).unwrap(),
            std::fs::read_to_string(tiles.join("checkpoint")).unwrap(),
            "size {size}"
        );
        log.assert_verifies(&tiles, size);
    }
    // The bundle holds the ledger's lines, each after its 2-byte length.
    let bundle = std::fs::read(log.path("tiles-1/tile/entries/000.p/1")).unwrap();
    let line = std::fs::read(log.ledger.path()).unwrap();
    let first = &line[..line.iter().position(|&b| b == b'\n').unwrap()];
    assert_eq!(&bundle[..2], (first.len() as u16).to_be_bytes());
    assert_eq!(&bundle[2..], first);
}

#[test]
fn a_grown_ledger_republishes_only_new_and_partial_tiles_and_verifies_at_70000() {
    let log = Log::new();
    let tiles = log.path("tiles");
    log.grow_to(257, "a");
    log.publish(&tiles);
    let before = files(&tiles);
    let old_checkpoint = log.path("checkpoint-257");
    std::fs::write(&old_checkpoint, &before["checkpoint"]).unwrap();

    let again = log.publish(&tiles);
    assert_says(&again, "published 257 entries in ");
    assert_says(
        &again,
        ": 1 files written, 5 tiles already published and unchanged",
    );
    assert_eq!(
        files(&tiles),
        before,
        "a re-run at the same size changes nothing"
    );

    log.grow_to(70_000, "a");
    let said = log.publish(&tiles);
    let after = files(&tiles);
    for (path, bytes) in &before {
        if path != "checkpoint" {
            assert_eq!(&after[path], bytes, "{path} changed");
        }
    }
    assert_ne!(after["checkpoint"], before["checkpoint"]);
    // The spec's own example: 273 full level-0 tiles, a partial one of width 112, one
    // full level-1 tile, a partial one of width 17, a partial level-2 tile of width 1.
    let count = |prefix: &str| {
        after
            .keys()
            .filter(|p| p.starts_with(prefix) && !p.contains(".p/"))
            .count()
    };
    assert_eq!(count("tile/0/"), 273);
    assert_eq!(count("tile/entries/"), 273);
    assert_eq!(count("tile/1/"), 1);
    for partial in [
        "tile/0/273.p/112",
        "tile/entries/273.p/112",
        "tile/1/001.p/17",
        "tile/2/000.p/1",
    ] {
        assert!(after.contains_key(partial), "{partial} missing");
    }
    // New: 273 - 1 full tiles and bundles, one level-1 tile, four partials, the
    // checkpoint. The 2 full ones from before are unchanged.
    assert_says(&said, "published 70000 entries in ");
    assert_says(
        &said,
        &format!(
            ": {} files written, 2 tiles already published and unchanged",
            272 * 2 + 1 + 4 + 1
        ),
    );
    log.assert_verifies(&tiles, 70_000);
    let (code, said) =
        log.verify_tiles(&tiles, &["--checkpoint", old_checkpoint.to_str().unwrap()]);
    assert_eq!(code, 0, "{said}");
    assert_says(&said, "70000 entries, root ");
    assert_says(&said, "consistent with the held checkpoint: verified");
}

#[test]
fn altered_bundles_tiles_and_checkpoints_are_refused_naming_what() {
    let log = Log::new();
    log.grow_to(5, "a");
    let tiles = log.path("tiles");
    log.publish(&tiles);
    let pristine = files(&tiles);
    let restore = || {
        for (path, bytes) in &pristine {
            std::fs::write(tiles.join(path), bytes).unwrap();
        }
    };

    // An edited entry, same length: its signature fails and the hash tile no longer
    // matches the entries.
    let bundle_path = tiles.join("tile/entries/000.p/5");
    let bundle = String::from_utf8(pristine["tile/entries/000.p/5"].clone()).unwrap();
    std::fs::write(&bundle_path, bundle.replacen("\"n\":2", "\"n\":7", 1)).unwrap();
    let (code, said) = log.verify_tiles(&tiles, &[]);
    assert_eq!(code, 1, "{said}");
    assert_says(
        &said,
        "FAIL tile/entries/000.p/5, entry 2: signature does not match (the entry was modified after signing)",
    );
    assert_says(
        &said,
        "FAIL tile/0/000.p/5 does not hold the hashes of the entries it covers",
    );
    assert_says(&said, "NOT verified");
    restore();

    // A hash tile with one byte changed.
    let mut tile = pristine["tile/0/000.p/5"].clone();
    tile[40] ^= 1;
    std::fs::write(tiles.join("tile/0/000.p/5"), tile).unwrap();
    let (code, said) = log.verify_tiles(&tiles, &[]);
    assert_eq!(code, 1, "{said}");
    assert_says(&said, "FAIL tile/0/000.p/5 does not hold the hashes of the entries it covers: the tile or the entries were altered");
    restore();

    // A checkpoint claiming another size.
    let checkpoint = String::from_utf8(pristine["checkpoint"].clone()).unwrap();
    std::fs::write(
        tiles.join("checkpoint"),
        checkpoint.replacen("\n5\n", "\n4\n", 1),
    )
    .unwrap();
    let (code, said) = run_err(
        log.cairn_ledger(&["verify", "--tiles", tiles.to_str().unwrap(), "--key"])
            .arg(&log.public),
    );
    assert_eq!(code, 1);
    assert_says(
        &said,
        "the checkpoint: the signature by key cairn.local/ledger+",
    );
    assert_says(&said, "does not verify");
    restore();

    // A missing bundle is named.
    std::fs::remove_file(&bundle_path).unwrap();
    let (_, said) = run_err(
        log.cairn_ledger(&["verify", "--tiles", tiles.to_str().unwrap(), "--key"])
            .arg(&log.public),
    );
    assert_says(&said, "tile/entries/000.p/5");
    restore();
    log.assert_verifies(&tiles, 5);
}

#[test]
fn a_rewritten_history_is_refused_by_the_publisher_and_caught_with_an_old_checkpoint() {
    let log = Log::new();
    log.grow_to(300, "a");
    let tiles = log.path("tiles");
    log.publish(&tiles);
    let old_checkpoint = log.path("checkpoint-300");
    std::fs::copy(tiles.join("checkpoint"), &old_checkpoint).unwrap();
    let published = files(&tiles);

    // Someone with the writer key rewrites the history from entry 0 and grows it.
    std::fs::remove_file(log.ledger.path()).unwrap();
    log.grow_to(400, "b");
    let out = run_err(
        log.cairn_ledger(&["tiles"])
            .arg(&tiles)
            .arg("--key")
            .arg(&log.private),
    );
    assert_says(&out.1, "tile/entries/000 already exists and differs from what the ledger gives for it: the published history was rewritten; refusing to continue");
    assert_eq!(files(&tiles)["checkpoint"], published["checkpoint"]);

    // Published elsewhere, the new log verifies on its own, but not against the
    // auditor's old checkpoint.
    let elsewhere = log.path("elsewhere");
    log.publish(&elsewhere);
    log.assert_verifies(&elsewhere, 400);
    let (code, said) = log.verify_tiles(
        &elsewhere,
        &["--checkpoint", old_checkpoint.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{said}");
    assert_says(
        &said,
        "FAIL held checkpoint: the tiles' first 300 entries do not have its root",
    );
    assert_says(&said, "history was rewritten");

    // A shorter ledger is not published over a longer log.
    std::fs::remove_file(log.ledger.path()).unwrap();
    log.grow_to(3, "b");
    let (_, said) = run_err(
        log.cairn_ledger(&["tiles"])
            .arg(&elsewhere)
            .arg("--key")
            .arg(&log.private),
    );
    assert_says(
        &said,
        "the published checkpoint covers 400 entries but the ledger has only 3",
    );
}

#[test]
fn plain_http_is_refused_for_a_host_that_is_not_loopback() {
    let log = Log::new();
    let (code, said) = run_err(
        log.cairn_ledger(&["verify", "--tiles", "http://example.com/log", "--key"])
            .arg(&log.public),
    );
    assert_eq!(code, 1);
    assert_says(&said, "\"http://example.com/log\" is not a tiles location: give a directory, an https:// URL, or an http:// URL on a loopback host");
}
