//! The native ext4 writer checked with the real e2fsprogs: `e2fsck -fn` finds
//! nothing to fix, and `debugfs` reads back exactly the tree (contents, modes,
//! owners, link targets, hard links, times), byte-identical whatever the thread count.

use super::*;
use crate::disk::gpt::Guid;
use crate::disk::rootfs::RootEntry;
use crate::snapshot::{Content, Location};
use std::fs;
use std::process::{Command, Stdio};

const MIB: u64 = 1 << 20;

fn params(size: u64, epoch: u64) -> Ext4Params {
    Ext4Params {
        size,
        epoch,
        uuid: Guid::derived(&[b"uuid"]),
        hash_seed: Guid::derived(&[b"seed"]),
        label: "root",
    }
}

fn entry(kind: RootKind, mode: u32, uid: u32, gid: u32) -> RootEntry {
    RootEntry {
        kind,
        mode,
        owner: Owner { uid, gid },
    }
}

fn inline(bytes: &[u8]) -> RootKind {
    RootKind::File {
        data: FileData::Inline(bytes.into()),
        sha256: Sha256Digest::of(bytes),
    }
}

fn source(path: &Path, bytes: &[u8]) -> RootKind {
    fs::write(path, bytes).unwrap();
    RootKind::File {
        data: FileData::Source(Content {
            location: Location::Path(std::sync::Arc::new(path.to_path_buf())),
            size: bytes.len() as u64,
            sha256: Sha256Digest::of(bytes),
        }),
        sha256: Sha256Digest::of(bytes),
    }
}

fn symlink(target: &str) -> RootKind {
    RootKind::Symlink {
        target: target.into(),
    }
}

fn hardlink(target: &str) -> RootKind {
    RootKind::Hardlink {
        target: target.into(),
    }
}

/// A tree with every kind of entry `write` handles.
fn every_kind(src: &Path) -> RootTree {
    let mut t = BTreeMap::new();
    let mut add = |k: &str, e: RootEntry| {
        t.insert(k.to_string(), e);
    };
    add("bin", entry(RootKind::Dir, 0o755, 0, 0));
    add("bin/empty", entry(inline(b""), 0o644, 0, 0));
    add("bin/one", entry(inline(b"1"), 0o600, 0, 0));
    add(
        "bin/block",
        entry(source(&src.join("block"), &[7; 4096]), 0o644, 0, 0),
    );
    let multi: Vec<u8> = (0..3 * 4096 + 17).map(|i| (i % 251) as u8).collect();
    add(
        "bin/multi",
        entry(source(&src.join("multi"), &multi), 0o4755, 0, 0),
    );
    add("bin/multi-link", entry(hardlink("bin/multi"), 0o4755, 0, 0));
    add(
        "bin/multi-link2",
        entry(hardlink("bin/multi"), 0o4755, 0, 0),
    );
    add("bin/fast", entry(symlink("multi"), 0o777, 0, 0));
    let long = format!("/{}", "long-target/".repeat(20));
    add("bin/slow", entry(symlink(&long), 0o777, 0, 0));
    add("home", entry(RootKind::Dir, 0o755, 0, 0));
    add("home/user", entry(RootKind::Dir, 0o2750, 1000, 1001));
    add(
        "home/user/naïve file ☃.txt",
        entry(inline(b"snow\n"), 0o640, 1000, 1001),
    );
    add("tmp", entry(RootKind::Dir, 0o1777, 0, 0));
    add("big", entry(RootKind::Dir, 0o755, 65534, 65534));
    for i in 0..3000 {
        let name = format!("big/file-with-a-longish-name-{i:05}");
        add(
            &name,
            entry(inline(format!("{i}").as_bytes()), 0o644, 70000, 70001),
        );
    }
    let mut deep = String::from("deep");
    for _ in 0..40 {
        add(&deep, entry(RootKind::Dir, 0o700, 0, 0));
        deep.push_str("/d");
    }
    add(&deep, entry(inline(b"bottom"), 0o444, 0, 0));
    RootTree { entries: t }
}

fn e2fsck_clean(image: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "e2fsck -fn: {text}");
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| {
            let summary = l.starts_with("root: ") && l.contains(" files (");
            !(l.starts_with("e2fsck ") || l.starts_with("Pass ") || summary || l.trim().is_empty())
        })
        .collect();
    assert!(complaints.is_empty(), "e2fsck -fn: {text}");
}

/// Runs debugfs commands on `image`; each command's output.
fn debugfs(image: &Path, commands: &[String]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cmds");
    fs::write(&script, commands.join("\n") + "\n").unwrap();
    let out = Command::new("debugfs")
        .arg("-f")
        .arg(&script)
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut parts: Vec<String> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("debugfs: ") {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    assert_eq!(parts.len(), commands.len(), "{stdout}");
    parts
}

fn field<'a>(stat: &'a str, key: &str) -> &'a str {
    let at = stat
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {stat}"))
        + key.len();
    stat[at..].split_whitespace().next().unwrap()
}

fn build(tree: &RootTree, size: u64, epoch: u64, threads: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let image = pool
        .install(|| write(tree, &params(size, epoch), dir.path()))
        .unwrap();
    (dir, image)
}

#[test]
fn every_kind_of_entry_reads_back_and_e2fsck_finds_it_clean() {
    let src = tempfile::tempdir().unwrap();
    let tree = every_kind(src.path());
    let (_dir, image) = build(&tree, 64 * MIB, 0, 2);
    e2fsck_clean(&image);

    let dump = tempfile::tempdir().unwrap();
    debugfs(&image, &[format!("rdump / \"{}\"", dump.path().display())]);
    let root = dump.path().join("root");
    let root = if root.exists() {
        root
    } else {
        dump.path().to_path_buf()
    };
    let mut keys: Vec<String> = tree.entries.keys().cloned().collect();
    keys.push("lost+found".into());
    let stats = debugfs(
        &image,
        &keys
            .iter()
            .map(|k| format!("stat \"/{k}\""))
            .collect::<Vec<_>>(),
    );
    let mut inode_of = BTreeMap::new();
    for (key, stat) in keys.iter().zip(&stats) {
        let on_disk = root.join(key);
        let mode = u32::from_str_radix(field(stat, "Mode:"), 8).unwrap();
        let (uid, gid): (u32, u32) = (
            field(stat, "User:").parse().unwrap(),
            field(stat, "Group:").parse().unwrap(),
        );
        for time in ["ctime:", "atime:", "mtime:", "crtime:"] {
            assert_eq!(field(stat, time), "0x00000000:00000000", "{key} {time}");
        }
        inode_of.insert(key.as_str(), field(stat, "Inode:").to_string());
        let Some(e) = tree.entries.get(key) else {
            assert_eq!((mode, uid, gid), (0o700, 0, 0), "lost+found");
            assert_eq!(field(stat, "Size:"), "16384");
            continue;
        };
        assert_eq!(
            (mode, uid, gid),
            (e.mode, e.owner.uid, e.owner.gid),
            "{key}"
        );
        match &e.kind {
            RootKind::File { sha256, .. } => {
                assert_eq!(
                    Sha256Digest::of(&fs::read(&on_disk).unwrap()),
                    *sha256,
                    "{key}"
                );
            }
            RootKind::Hardlink { target } => {
                assert_eq!(inode_of[key.as_str()], inode_of[target.as_str()], "{key}");
                assert_eq!(field(stat, "Links:"), "3", "{key}");
            }
            RootKind::Symlink { target } => {
                assert_eq!(fs::read_link(&on_disk).unwrap(), Path::new(target), "{key}");
                let fast = target.len() < 60;
                assert_eq!(stat.contains("Fast link dest:"), fast, "{key}: {stat}");
            }
            RootKind::Dir => assert!(on_disk.is_dir(), "{key}"),
        }
    }
    let listed = fs::read_dir(root.join("big")).unwrap().count();
    assert_eq!(listed, 3000);
    let big = &stats[keys.iter().position(|k| k == "big").unwrap()];
    assert!(
        field(big, "Size:").parse::<u64>().unwrap() > 20 * 4096,
        "{big}"
    );
}

#[test]
fn builds_are_byte_identical_whatever_the_thread_count() {
    let src = tempfile::tempdir().unwrap();
    let tree = every_kind(src.path());
    let (_a, one) = build(&tree, 64 * MIB, 1_700_000_000, 1);
    let (_b, four) = build(&tree, 64 * MIB, 1_700_000_000, 4);
    assert!(fs::read(&one).unwrap() == fs::read(&four).unwrap());
    let stat = &debugfs(&one, &["stat /bin/one".into()])[0];
    assert!(stat.contains("mtime: 0x6553f100:00000000"), "{stat}");
}

/// A file in more pieces than an inode holds (it crosses four group boundaries) is
/// mapped through an extent block. The source is sparse, so it is cheap to make.
#[test]
fn a_file_across_many_groups_is_mapped_by_an_extent_block() {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("sparse");
    let size = 600 * MIB;
    let file = File::create(&path).unwrap();
    file.set_len(size).unwrap();
    file.write_all_at(b"head", 0).unwrap();
    file.write_all_at(b"tail", size - 4).unwrap();
    drop(file);
    let sha256 = crate::digest::sha256_reader(File::open(&path).unwrap())
        .unwrap()
        .0;
    let mut entries = BTreeMap::new();
    let data = FileData::Source(Content {
        location: Location::Path(std::sync::Arc::new(path)),
        size,
        sha256,
    });
    entries.insert(
        "huge".to_string(),
        entry(RootKind::File { data, sha256 }, 0o644, 0, 0),
    );
    let tree = RootTree { entries };
    let (_dir, image) = build(&tree, 700 * MIB, 0, 2);
    e2fsck_clean(&image);
    let stat = &debugfs(&image, &["stat /huge".into()])[0];
    assert!(stat.contains("(ETB0)"), "an extent block: {stat}");
    let mut cat = Command::new("debugfs")
        .arg("-R")
        .arg("cat /huge")
        .arg(&image)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (read, len) = crate::digest::sha256_reader(cat.stdout.take().unwrap()).unwrap();
    cat.wait().unwrap();
    assert_eq!((read, len), (sha256, size));
}

#[test]
fn a_tree_larger_than_the_root_says_how_much_it_needs() {
    let mut entries = BTreeMap::new();
    entries.insert(
        "f".to_string(),
        entry(inline(&vec![1; 20 << 20]), 0o644, 0, 0),
    );
    let tree = RootTree { entries };
    let dir = tempfile::tempdir().unwrap();
    let err = write(&tree, &params(16 * MIB, 0), dir.path()).unwrap_err();
    match err {
        DiskError::RootTooSmall {
            size,
            needed: Some(needed),
        } => {
            assert_eq!(size, 16 * MIB);
            assert!((21 * MIB..32 * MIB).contains(&needed), "{needed}");
            // And that much is enough.
            let dir = tempfile::tempdir().unwrap();
            let image = write(&tree, &params(needed, 0), dir.path()).unwrap();
            e2fsck_clean(&image);
        }
        other => panic!("{other:?}"),
    }
    assert!(!dir.path().join("root.ext4").exists(), "nothing written");
}

#[test]
fn names_ext4_cannot_hold_are_refused_by_path() {
    for (key, kind) in [
        ("x".repeat(256), RootKind::Dir),
        ("lost+found".into(), inline(b"not a directory")),
        ("l".into(), symlink(&"t".repeat(4096))),
    ] {
        let mut entries = BTreeMap::new();
        entries.insert(key.clone(), entry(kind, 0o644, 0, 0));
        let dir = tempfile::tempdir().unwrap();
        let err = write(&RootTree { entries }, &params(16 * MIB, 0), dir.path()).unwrap_err();
        assert!(
            matches!(&err, DiskError::Unrepresentable { path, .. } if *path == format!("/{key}")),
            "{err:?}"
        );
    }
}

#[test]
fn a_source_that_changed_since_it_was_recorded_is_refused() {
    let src = tempfile::tempdir().unwrap();
    let mut entries = BTreeMap::new();
    let kind = source(&src.path().join("f"), b"recorded");
    fs::write(src.path().join("f"), b"replaced").unwrap();
    entries.insert("f".to_string(), entry(kind, 0o644, 0, 0));
    let dir = tempfile::tempdir().unwrap();
    let err = write(&RootTree { entries }, &params(16 * MIB, 0), dir.path()).unwrap_err();
    match err {
        DiskError::SourceChanged {
            expected, found, ..
        } => {
            assert_eq!(expected, Sha256Digest::of(b"recorded"));
            assert_eq!(found, Sha256Digest::of(b"replaced"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn needs_counts_data_directories_and_long_links() {
    let mut entries = BTreeMap::new();
    entries.insert("d".to_string(), entry(RootKind::Dir, 0o755, 0, 0));
    entries.insert("d/f".to_string(), entry(inline(&[1u8; 5000]), 0o644, 0, 0));
    entries.insert(
        "d/l".to_string(),
        entry(symlink(&"x".repeat(80)), 0o777, 0, 0),
    );
    entries.insert("d/h".to_string(), entry(hardlink("d/f"), 0o644, 0, 0));
    // 2 data blocks, 1 for the long link, 1 for directory `d`.
    assert_eq!(
        needs(&RootTree { entries }),
        Needs {
            blocks: 4,
            inodes: 3
        }
    );
}
