//! The tiler against trillian-tessera's published test log (paths, bundles, hash tiles,
//! checkpoints and roots byte for byte), the root across tile and level boundaries, and
//! what `write` and the bundle reader refuse.

use super::*;
use crate::keys;
use std::collections::BTreeMap;

const TESSERA_KEY: &str =
    "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx";
const TESSERA_ENTRIES: [&str; 15] = [
    "one", "two", "three", "four", "five", "six", "seven", "eit", "nain", "ten", "ileven", "twelf",
    "threeten", "fourten", "fivten",
];

fn tessera_log() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/interop/tessera-log")
}

/// Every tile the tiler gives for `entries`, full and partial, by path.
fn tiles_of<T: AsRef<[u8]>>(entries: &[T]) -> (BTreeMap<String, Vec<u8>>, Tiler) {
    let mut tiles = BTreeMap::new();
    let mut tiler = Tiler::default();
    for entry in entries {
        tiler
            .push(entry.as_ref(), &mut |tile| {
                tiles.insert(tile.path, tile.bytes);
                Ok(())
            })
            .unwrap();
    }
    for tile in tiler.partial_tiles() {
        tiles.insert(tile.path, tile.bytes);
    }
    (tiles, tiler)
}

#[test]
fn tile_paths_follow_the_spec() {
    let hashes = |level| TileKind::Hashes { level };
    assert_eq!(tile_path(hashes(0), 0, 256), "tile/0/000");
    assert_eq!(tile_path(hashes(0), 1234067, 256), "tile/0/x001/x234/067");
    assert_eq!(tile_path(hashes(2), 1000, 256), "tile/2/x001/000");
    assert_eq!(tile_path(hashes(1), 999, 17), "tile/1/999.p/17");
    assert_eq!(
        tile_path(TileKind::Entries, 1_000_000, 1),
        "tile/entries/x001/x000/000.p/1"
    );
}

#[test]
fn tessera_tiles_are_what_the_tiler_writes_for_the_same_entries() {
    let (_, vkey) = note::parse_verifier_key(TESSERA_KEY).unwrap();
    for size in 1..=TESSERA_ENTRIES.len() {
        let (tiles, tiler) = tiles_of(&TESSERA_ENTRIES[..size]);
        let paths: Vec<&str> = tiles.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                format!("tile/0/000.p/{size}"),
                format!("tile/entries/000.p/{size}")
            ],
            "size {size}"
        );
        for (path, bytes) in &tiles {
            let theirs = std::fs::read(tessera_log().join(path)).unwrap();
            assert_eq!(&theirs, bytes, "{path}");
        }
        let note_text =
            std::fs::read_to_string(tessera_log().join(format!("checkpoint.{size}"))).unwrap();
        let body = note::verify(&note_text, "example.com/log/testdata", &vkey).unwrap();
        let checkpoint = Checkpoint::parse(&body).unwrap();
        assert_eq!(checkpoint.size, size as u64);
        assert_eq!(checkpoint.root, tiler.root(), "root at size {size}");
    }
}

#[test]
fn the_reader_accepts_tesseras_log_whose_entries_are_not_ledger_entries() {
    let (_, vkey) = note::parse_verifier_key(TESSERA_KEY).unwrap();
    let old = std::fs::read_to_string(tessera_log().join("checkpoint.7")).unwrap();
    let source = TileSource::new(tessera_log().to_str().unwrap(), "test").unwrap();
    let verdict = verify(
        &source,
        &TilesTrust {
            trusted: &[],
            checkpoint_key: &vkey,
            origin: "example.com/log/testdata",
            old_checkpoint: Some(&old),
        },
    )
    .unwrap();
    assert_eq!(verdict.entries, 15);
    assert!(verdict.checkpoint_checked);
    // Signature, bundle, hash tile, root and consistency all hold; only the entries
    // ("one", "two", ...) are not cairn's.
    assert_eq!(verdict.problems.len(), 15, "{:#?}", verdict.problems);
    for (index, problem) in verdict.problems.iter().enumerate() {
        assert!(
            problem.starts_with(&format!(
                "tile/entries/000.p/15, entry at index {index}: not a ledger entry"
            )),
            "{problem}"
        );
    }
}

#[test]
fn the_root_from_the_tiles_is_the_ledgers_root_across_tile_and_level_boundaries() {
    let entries: Vec<[u8; 8]> = (0u64..65_540).map(u64::to_be_bytes).collect();
    let leaves: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
    let mut tiler = Tiler::default();
    let mut full = 0;
    for (size, entry) in entries.iter().enumerate() {
        let size = size as u64;
        let interesting = size < 600 || size.is_multiple_of(4099) || size >= 65_534;
        if interesting {
            assert_eq!(
                tiler.root(),
                merkle::root(&leaves[..size as usize]),
                "size {size}"
            );
        }
        tiler
            .push(entry, &mut |_| {
                full += 1;
                Ok(())
            })
            .unwrap();
    }
    // 256 full bundles and level-0 tiles, one full level-1 tile.
    assert_eq!(full, 256 + 256 + 1);
    let partial: Vec<String> = tiler.partial_tiles().into_iter().map(|t| t.path).collect();
    assert_eq!(
        partial,
        ["tile/entries/256.p/4", "tile/0/256.p/4", "tile/2/000.p/1"]
    );
}

#[test]
fn an_entry_over_65535_bytes_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let entries = [vec![b'a'; 10], vec![b'b'; MAX_ENTRY_BYTES + 1]];
    let err = write(
        dir.path(),
        entries.iter().map(Ok::<_, std::convert::Infallible>),
        "o",
        &key,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "entry 1 is 65536 bytes; a C2SP tile entry bundle holds entries of at most 65,535 bytes (a 2-byte length prefix), so this ledger cannot be published as tiles"
    );
    assert!(!dir.path().join("checkpoint").exists());
}

#[test]
fn a_bundle_with_a_cut_entry_or_the_wrong_count_is_malformed() {
    let err = split_bundle("b", &[0, 3, b'a', b'b'], 1).unwrap_err();
    assert_eq!(err.to_string(), "b: entry 0 is cut short (2 of 3 bytes)");
    let err = split_bundle("b", &[0, 1, b'a', 0], 1).unwrap_err();
    assert_eq!(err.to_string(), "b: ends inside a length prefix");
    let err = split_bundle("b", &[0, 1, b'a'], 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "b: holds 1 entries, but the checkpoint's size calls for 2"
    );
}

#[test]
fn a_checkpoint_for_another_origin_is_refused_even_when_signed_by_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let body = Checkpoint {
        origin: "other.example/log".into(),
        size: 0,
        root: merkle::empty_root(),
        extensions: Vec::new(),
    }
    .body();
    let text = note::sign(&body, "cairn.local/ledger", &key).unwrap();
    std::fs::write(dir.path().join("checkpoint"), text).unwrap();
    let source = TileSource::new(dir.path().to_str().unwrap(), "test").unwrap();
    let err = verify(
        &source,
        &TilesTrust {
            trusted: &[],
            checkpoint_key: &key.verifying_key(),
            origin: "cairn.local/ledger",
            old_checkpoint: None,
        },
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the checkpoint is for the log \"other.example/log\", not \"cairn.local/ledger\" (give the log's origin with --origin)"
    );
}
