//! Unit tests of the local layer cache: a hit serves the stored blob, and anything
//! damaged (a blob changed in place, an unreadable entry or image record) is a miss,
//! rewritten from the tree; the key and `prune` decide what is kept.

use super::*;
use crate::layers::{FileData, Origin, TreeEntry, TreeEntryKind};
use crate::recipe::Owner;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const EPOCH: u64 = 1_700_000_000;

fn file_entry(bytes: &[u8], mode: u32) -> TreeEntry {
    TreeEntry {
        kind: TreeEntryKind::File(FileData::Inline(Arc::from(bytes))),
        mode,
        owner: Owner::ROOT,
        origin: Origin::Sbom,
    }
}

fn tree(name: &str, content: &[u8]) -> LayerTree {
    let mut entries = BTreeMap::new();
    entries.insert(
        "etc".to_string(),
        TreeEntry {
            kind: TreeEntryKind::Dir,
            mode: 0o755,
            owner: Owner::ROOT,
            origin: Origin::Sbom,
        },
    );
    entries.insert("etc/motd".to_string(), file_entry(content, 0o644));
    LayerTree {
        name: name.to_string(),
        entries: entries.into_iter().collect(),
    }
}

/// A cache and an output directory in one temporary directory.
struct Scratch {
    dir: tempfile::TempDir,
    cache: LayerCache,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(&dir.path().join("cache")).unwrap();
        Scratch { dir, cache }
    }

    /// A new layout to write into (each build writes its own).
    fn layout(&self, name: &str) -> LayoutWriter {
        LayoutWriter::begin(&self.dir.path().join("out"), name).unwrap()
    }

    fn write(&self, tree: &LayerTree, layout: &LayoutWriter) -> LayerBlob {
        write_layer(
            Some(&self.cache),
            tree,
            EPOCH,
            Compression::Gzip,
            1,
            layout,
            &AtomicBool::new(false),
            &|_| {},
        )
        .unwrap()
    }

    fn key(&self, tree: &LayerTree) -> LayerKey {
        layer_key(tree, EPOCH, Compression::Gzip)
    }
}

/// The blob `digest` as the layout holds it, re-hashed: what a reader of the image gets.
fn layout_blob_digest(layout: &LayoutWriter, digest: &Sha256Digest) -> Sha256Digest {
    Sha256Digest::of(&fs::read(layout.blob_path(digest)).unwrap())
}

#[test]
fn a_hit_serves_the_stored_blob_with_its_sha1s() {
    let s = Scratch::new();
    let first_layout = s.layout("first");
    let written = s.write(&tree("app", b"hello\n"), &first_layout);
    assert!(!written.cached);

    let second_layout = s.layout("second");
    let hit = s.write(&tree("app", b"hello\n"), &second_layout);
    assert!(hit.cached, "the same tree again must come from the cache");
    assert_eq!(hit.digest, written.digest);
    assert_eq!(hit.size, written.size);
    assert_eq!(hit.diff_id, written.diff_id);
    assert_eq!(hit.uncompressed_size, written.uncompressed_size);
    assert_eq!(hit.entries, 2);
    // The SBOM needs the SHA-1 of every file, also on a hit.
    assert_eq!(hit.sha1, written.sha1);
    let file_sha1: [u8; 20] = <sha1::Sha1 as sha1::Digest>::digest(b"hello\n").into();
    let sha1s: Vec<_> = (0..hit.entries).map(|place| hit.sha1.get(place)).collect();
    assert_eq!(sha1s.iter().flatten().collect::<Vec<_>>(), [&&file_sha1]);
    assert_eq!(
        fs::read(second_layout.blob_path(&hit.digest)).unwrap(),
        fs::read(first_layout.blob_path(&written.digest)).unwrap()
    );
    assert!(s.cache.used_blob(&hit.digest).is_some());
}

#[test]
fn a_hit_is_reported_under_the_new_layer_name() {
    let s = Scratch::new();
    let written = s.write(&tree("app", b"same bytes"), &s.layout("a"));
    let renamed = s.write(&tree("renamed", b"same bytes"), &s.layout("b"));
    assert!(
        renamed.cached,
        "the layer name does not reach the blob's bytes"
    );
    assert_eq!(renamed.digest, written.digest);
    assert_eq!(renamed.name, "renamed");
}

#[test]
fn different_content_is_a_miss() {
    let s = Scratch::new();
    let a = s.write(&tree("app", b"one"), &s.layout("a"));
    let b = s.write(&tree("app", b"two"), &s.layout("b"));
    assert!(!b.cached);
    assert_ne!(a.digest, b.digest);
}

#[test]
fn a_blob_changed_in_place_is_refused_and_replaced() {
    let s = Scratch::new();
    let t = tree("app", b"hello\n");
    let written = s.write(&t, &s.layout("a"));
    let stored = s.cache.blob_path(&written.digest);
    // Changed in place, as through a hard link from an output layout: same inode,
    // other bytes.
    fs::set_permissions(&stored, fs::Permissions::from_mode(0o644)).unwrap();
    let mut damaged = fs::read(&stored).unwrap();
    damaged.push(0);
    fs::write(&stored, &damaged).unwrap();

    assert_written_anew_then_served(&s, &t, &written, "b");
}

/// Asserts that writing `t` (whose blob `written` the cache holds damaged) into a new
/// layout `name` is a miss that writes the blob anew, and that the cache then holds
/// and serves the intact blob.
fn assert_written_anew_then_served(s: &Scratch, t: &LayerTree, written: &LayerBlob, name: &str) {
    let layout = s.layout(name);
    let again = s.write(t, &layout);
    assert!(!again.cached, "a changed blob must not be served");
    assert_eq!(again.digest, written.digest);
    assert_eq!(layout_blob_digest(&layout, &again.digest), written.digest);
    assert_eq!(
        Sha256Digest::of(&fs::read(s.cache.blob_path(&written.digest)).unwrap()),
        written.digest
    );
    assert!(s.write(t, &s.layout(&format!("{name}-again"))).cached);
}

#[test]
fn an_entry_an_older_cairn_wrote_without_the_blobs_blake3_is_a_miss_and_is_replaced() {
    let s = Scratch::new();
    let t = tree("app", b"hello\n");
    let written = s.write(&t, &s.layout("a"));
    let entry = s.cache.entry_path(&s.key(&t));
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&entry).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("blob_blake3").unwrap();
    fs::write(&entry, serde_json::to_vec(&json).unwrap()).unwrap();

    let again = s.write(&t, &s.layout("b"));
    assert!(
        !again.cached,
        "an entry without the BLAKE3 to check the blob by is not served"
    );
    assert_eq!(again.digest, written.digest);
    assert!(s.write(&t, &s.layout("c")).cached);
}

#[test]
fn a_blob_changed_in_place_with_its_mtime_kept_is_refused_removed_and_replaced() {
    let s = Scratch::new();
    let t = tree("app", b"hello\n");
    let first = s.layout("a");
    let written = s.write(&t, &first);
    let stored = s.cache.blob_path(&written.digest);
    // The blob written into the layout is its own file, not the cache's.
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_ne!(ino(&stored), ino(&first.blob_path(&written.digest)));
    // Same inode, same size, other bytes, and the mtime put back: the cache's own
    // check (inode, size, mtime) passes; the hash does not.
    let meta = fs::metadata(&stored).unwrap();
    fs::set_permissions(&stored, fs::Permissions::from_mode(0o644)).unwrap();
    let file = fs::File::options().write(true).open(&stored).unwrap();
    io::Write::write_all(&mut &file, &vec![0x55; meta.len() as usize]).unwrap();
    file.set_modified(meta.modified().unwrap()).unwrap();
    drop(file);
    assert_eq!(
        Sha256Digest::of(&fs::read(first.blob_path(&written.digest)).unwrap()),
        written.digest,
        "the earlier layout's blob changed with the cache's"
    );

    assert_written_anew_then_served(&s, &t, &written, "b");
    let warnings = s.cache.take_warnings().join("\n");
    assert!(
        warnings.contains(&stored.display().to_string())
            && warnings.contains("changed after it was written"),
        "{warnings}"
    );
}

#[test]
fn temporaries_of_processes_that_are_gone_are_removed_on_open_and_by_prune() {
    let s = Scratch::new();
    let tmp = s.dir.path().join("cache/layers-v1/tmp");
    // A process that has exited: its pid names no process (or, recycled, another
    // start time).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let orphan = tmp.join(format!("{dead}-1-0"));
    fs::write(&orphan, b"partial blob of a build stopped by a full disk").unwrap();
    // This process, with another start time: a recycled pid.
    let recycled = tmp.join(format!("{}-1-0", std::process::id()));
    fs::write(&recycled, b"partial").unwrap();
    let live = s.cache.tmp_path();
    fs::write(&live, b"being written").unwrap();

    let reopened = LayerCache::open(&s.dir.path().join("cache")).unwrap();
    assert!(!orphan.exists() && !recycled.exists());
    assert!(live.exists(), "a live build's temporary file was removed");

    fs::write(&orphan, b"again").unwrap();
    reopened.prune(PrunePolicy::default(), EPOCH).unwrap();
    assert!(!orphan.exists());
    assert!(live.exists());
}

#[test]
fn a_blob_replaced_by_another_file_of_the_same_size_is_refused() {
    let s = Scratch::new();
    let t = tree("app", b"hello\n");
    let written = s.write(&t, &s.layout("a"));
    let stored = s.cache.blob_path(&written.digest);
    let size = fs::metadata(&stored).unwrap().len();
    let other = s.dir.path().join("other");
    fs::write(&other, vec![b'x'; size as usize]).unwrap();
    fs::rename(&other, &stored).unwrap();

    let layout = s.layout("b");
    let again = s.write(&t, &layout);
    assert!(!again.cached);
    assert_eq!(layout_blob_digest(&layout, &again.digest), written.digest);
}

#[test]
fn a_vanished_blob_is_a_miss() {
    let s = Scratch::new();
    let t = tree("app", b"hello\n");
    let written = s.write(&t, &s.layout("a"));
    fs::remove_file(s.cache.blob_path(&written.digest)).unwrap();
    let layout = s.layout("b");
    let again = s.write(&t, &layout);
    assert!(!again.cached);
    assert_eq!(layout_blob_digest(&layout, &again.digest), written.digest);
}

#[test]
fn a_damaged_entry_is_a_miss_and_rewritten() {
    let s = Scratch::new();
    let t = tree("app", b"hello\n");
    s.write(&t, &s.layout("a"));
    let entry = s.cache.entry_path(&s.key(&t));
    fs::write(&entry, b"{\"layer\": trunc").unwrap();

    assert!(!s.write(&t, &s.layout("b")).cached);
    assert!(s.write(&t, &s.layout("c")).cached);
}

#[test]
fn the_key_covers_what_reaches_the_bytes_and_nothing_else() {
    let base = tree("app", b"hello\n");
    let key = layer_key(&base, EPOCH, Compression::Gzip);
    assert_eq!(
        key,
        layer_key(&tree("other name", b"hello\n"), EPOCH, Compression::Gzip)
    );

    let mut mode = base.clone();
    mode.entries
        .insert("etc/motd".into(), file_entry(b"hello\n", 0o600));
    let mut owner = base.clone();
    owner.entries.get_mut("etc/motd").unwrap().owner = Owner { uid: 1, gid: 0 };
    let mut moved = base.clone();
    let motd = moved.entries.remove("etc/motd").unwrap();
    moved.entries.insert("etc/issue".into(), motd);
    let mut symlink = base.clone();
    symlink.entries.get_mut("etc/motd").unwrap().kind = TreeEntryKind::Symlink {
        target: "hello\n".into(),
    };
    let variants = [
        layer_key(&tree("app", b"hello!"), EPOCH, Compression::Gzip),
        layer_key(&base, EPOCH + 1, Compression::Gzip),
        layer_key(&base, EPOCH, Compression::Zstd),
        layer_key(&base, EPOCH, Compression::None),
        layer_key(&mode, EPOCH, Compression::Gzip),
        layer_key(&owner, EPOCH, Compression::Gzip),
        layer_key(&moved, EPOCH, Compression::Gzip),
        layer_key(&symlink, EPOCH, Compression::Gzip),
    ];
    for (n, v) in variants.iter().enumerate() {
        assert_ne!(*v, key, "variant {n} must change the key");
    }
}

#[test]
fn image_records_round_trip_and_a_damaged_one_is_dropped() {
    let s = Scratch::new();
    let layout = s.layout("a");
    let layer = s.write(&tree("app", b"hello\n"), &layout);
    let spdx = layout.put_blob(b"{\"spdx\":1}").unwrap();
    let cyclonedx = layout.put_blob(b"{\"cdx\":1}").unwrap();
    let (key, blob) = s.cache.used_blob(&layer.digest).unwrap();
    let record = ImageRecord {
        layers: vec![CachedLayer {
            name: layer.name.clone(),
            key: key.hex(),
            blob,
            diff_id: layer.diff_id,
            uncompressed_size: layer.uncompressed_size,
            entries: layer.entries,
            compression: layer.compression,
        }],
        foreign_elf: Vec::new(),
        spdx: s.cache.store_blob(&layout, spdx.digest, spdx.size).unwrap(),
        cyclonedx: s
            .cache
            .store_blob(&layout, cyclonedx.digest, cyclonedx.size)
            .unwrap(),
    };
    s.cache.store_image_record("image-key", &record);
    assert!(s.cache.take_warnings().is_empty());

    let read = s.cache.image_record("image-key").unwrap();
    let digests: Vec<_> = read.blobs().map(|b| b.digest).collect();
    assert_eq!(digests, [layer.digest, spdx.digest, cyclonedx.digest]);
    assert_eq!(read.layers[0].layer_blob().name, "app");
    assert!(read.layers[0].layer_blob().cached);
    let replay = s.layout("replay");
    assert!(read.blobs().all(|b| s.cache.copy_into(b, &replay)));
    assert_eq!(layout_blob_digest(&replay, &spdx.digest), spdx.digest);

    assert!(s.cache.image_record("no-such-key").is_none());
    let path = s.cache.image_path("image-key");
    fs::write(&path, b"not json").unwrap();
    assert!(s.cache.image_record("image-key").is_none());
    assert!(!path.exists(), "a damaged image record is removed");
}

#[test]
fn copy_into_refuses_a_changed_blob() {
    let s = Scratch::new();
    let layout = s.layout("a");
    let stored = layout.put_blob(b"sbom document").unwrap();
    let blob = s
        .cache
        .store_blob(&layout, stored.digest, stored.size)
        .unwrap();
    assert!(s.cache.is_intact(&blob));

    let path = s.cache.blob_path(&blob.digest);
    let other = s.dir.path().join("other");
    fs::write(&other, b"SBOM DOCUMENT").unwrap();
    fs::rename(&other, &path).unwrap();
    assert!(!s.cache.is_intact(&blob));
    let replay = s.layout("replay");
    assert!(!s.cache.copy_into(&blob, &replay));
    assert!(!replay.blob_path(&blob.digest).exists());
}

#[test]
fn info_counts_entries_images_and_blob_bytes() {
    let s = Scratch::new();
    let empty = s.cache.info().unwrap();
    assert_eq!(
        (empty.entries, empty.images, empty.blobs, empty.bytes),
        (0, 0, 0, 0)
    );
    let a = s.write(&tree("a", b"one"), &s.layout("a"));
    let b = s.write(&tree("b", b"two two"), &s.layout("b"));
    let info = s.cache.info().unwrap();
    assert_eq!((info.entries, info.images, info.blobs), (2, 0, 2));
    assert_eq!(info.bytes, a.size + b.size);
}

#[test]
fn prune_without_limits_removes_only_unreferenced_blobs() {
    let s = Scratch::new();
    let t = tree("app", b"hello\n");
    let kept = s.write(&t, &s.layout("a"));
    let orphan = s.cache.blobs.join("ab".repeat(32));
    let orphan_bytes = b"left by a dead build";
    fs::write(&orphan, orphan_bytes).unwrap();

    let report = s.cache.prune(PrunePolicy::default(), EPOCH).unwrap();
    assert_eq!(report.removed_entries, 0);
    assert_eq!(report.removed_blobs, 1);
    assert_eq!(report.freed_bytes, orphan_bytes.len() as u64);
    assert!(!orphan.exists());
    assert_eq!(report.after.blobs, 1);
    assert!(s.cache.blob_path(&kept.digest).exists());
    assert!(s.write(&t, &s.layout("b")).cached);
}

#[test]
fn prune_to_a_size_keeps_the_most_recently_used() {
    let s = Scratch::new();
    let old = tree("old", b"old layer");
    let new = tree("new", b"new layer, used last");
    let old_blob = s.write(&old, &s.layout("a"));
    let new_blob = s.write(&new, &s.layout("b"));
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH);
    fs::File::options()
        .write(true)
        .open(s.cache.entry_path(&s.key(&old)))
        .unwrap()
        .set_modified(long_ago)
        .unwrap();

    let policy = PrunePolicy {
        max_bytes: Some(new_blob.size),
        unused_since: None,
    };
    let report = s.cache.prune(policy, EPOCH).unwrap();
    assert_eq!(report.removed_entries, 1);
    assert_eq!(report.freed_bytes, old_blob.size);
    assert!(!s.cache.blob_path(&old_blob.digest).exists());
    assert!(s.write(&new, &s.layout("c")).cached);
    assert!(!s.write(&old, &s.layout("d")).cached);
}

#[test]
fn prune_by_age_removes_entries_unused_since() {
    let s = Scratch::new();
    let old = tree("old", b"old layer");
    let recent = tree("recent", b"recent layer");
    s.write(&old, &s.layout("a"));
    s.write(&recent, &s.layout("b"));
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH - 100);
    fs::File::options()
        .write(true)
        .open(s.cache.entry_path(&s.key(&old)))
        .unwrap()
        .set_modified(long_ago)
        .unwrap();

    let policy = PrunePolicy {
        max_bytes: None,
        unused_since: Some(EPOCH),
    };
    let report = s.cache.prune(policy, EPOCH).unwrap();
    assert_eq!(report.removed_entries, 1);
    assert_eq!(report.after.entries, 1);
    assert!(s.write(&recent, &s.layout("c")).cached);
    assert!(!s.write(&old, &s.layout("d")).cached);
}
