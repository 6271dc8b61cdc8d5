//! Tests of archive unpacking: every format round-trips its members, sorted and staged
//! once; unsafe names, links through symlinks, duplicates and corrupt or truncated
//! archives are refused, and so are hostile ones: names no file system holds, huge
//! PAX and GNU long-name records (by their header), too many entries or bytes.

use super::*;
use crate::snapshot::limits::RECORD_MAX;
use tar::{Builder, Header};

const ROOT: (u64, u64) = (0, 0);

fn header(kind: EntryType, mode: u32, (uid, gid): (u64, u64), size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(uid);
    header.set_gid(gid);
    header.set_size(size);
    header
}

fn ustar(kind: EntryType) -> Header {
    let mut header = Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header
}

/// Appends a member with `name` (and `link`) written byte for byte into the header,
/// bypassing the tar crate's setters, which refuse hostile names.
fn append_raw(
    tar: &mut Builder<Vec<u8>>,
    mut header: Header,
    name: &[u8],
    link: &[u8],
    data: &[u8],
) {
    let old = header.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name);
    old.linkname = [0; 100];
    old.linkname[..link.len()].copy_from_slice(link);
    header.set_size(data.len() as u64);
    header.set_cksum();
    tar.append(&header, data).unwrap();
}

fn file(tar: &mut Builder<Vec<u8>>, name: &str, mode: u32, owner: (u64, u64), data: &[u8]) {
    append_raw(
        tar,
        header(EntryType::Regular, mode, owner, 0),
        name.as_bytes(),
        b"",
        data,
    );
}

fn dir(tar: &mut Builder<Vec<u8>>, name: &str, mode: u32, owner: (u64, u64)) {
    append_raw(
        tar,
        header(EntryType::Directory, mode, owner, 0),
        name.as_bytes(),
        b"",
        b"",
    );
}

fn link(tar: &mut Builder<Vec<u8>>, kind: EntryType, name: &str, target: &str) {
    append_raw(
        tar,
        header(kind, 0o777, ROOT, 0),
        name.as_bytes(),
        target.as_bytes(),
        b"",
    );
}

/// A PAX extended header (`x`) carrying `records` for the next member.
fn pax(tar: &mut Builder<Vec<u8>>, records: &[(&str, &[u8])]) {
    let mut data = Vec::new();
    for (key, value) in records {
        let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut total = body_len + 1;
        while total != body_len + total.to_string().len() {
            total = body_len + total.to_string().len();
        }
        data.extend_from_slice(format!("{total} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    append_raw(
        tar,
        ustar(EntryType::XHeader),
        b"PaxHeaders/member",
        b"",
        &data,
    );
}

fn tar_bytes(build: impl FnOnce(&mut Builder<Vec<u8>>)) -> Vec<u8> {
    let mut tar = Builder::new(Vec::new());
    build(&mut tar);
    tar.into_inner().unwrap()
}

fn compress(format: ArchiveFormat, tar: &[u8]) -> Vec<u8> {
    match format {
        ArchiveFormat::Tar => tar.to_vec(),
        ArchiveFormat::TarGz => gzip(tar),
        ArchiveFormat::TarZst => zstd::encode_all(tar, 3).unwrap(),
        ArchiveFormat::TarXz => {
            let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 6);
            encoder.write_all(tar).unwrap();
            encoder.finish().unwrap()
        }
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// An archive file and an output directory whose only child must be `staging`.
struct Fixture {
    _dir: tempfile::TempDir,
    archive: PathBuf,
    out: PathBuf,
    staging: PathBuf,
}

impl Fixture {
    fn new(bytes: &[u8]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // A misleading extension: the format must come from the magic bytes.
        let archive = dir.path().join("tools.zip");
        fs::write(&archive, bytes).unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let staging = out.join("staging");
        Self {
            _dir: dir,
            archive,
            out,
            staging,
        }
    }

    fn unpack(&self) -> Result<(SourceTree, Sha256Digest), ArchiveError> {
        self.unpack_within(Limits::DEFAULT)
    }

    fn unpack_within(&self, limits: Limits) -> Result<(SourceTree, Sha256Digest), ArchiveError> {
        let result = unpack(&self.archive, &self.staging, limits);
        self.assert_nothing_outside_staging();
        result
    }

    /// `out` holds only `staging`, and `staging` only files named by their digest.
    fn assert_nothing_outside_staging(&self) {
        let children: Vec<_> = fs::read_dir(&self.out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(children, ["staging"], "unpack wrote outside staging");
        for staged in fs::read_dir(&self.staging).unwrap() {
            let staged = staged.unwrap();
            assert!(staged.file_type().unwrap().is_file());
            let bytes = fs::read(staged.path()).unwrap();
            assert_eq!(
                staged.file_name().to_str().unwrap(),
                Sha256Digest::of(&bytes).hex(),
                "staged file not named by its digest"
            );
        }
    }

    fn staged_count(&self) -> usize {
        fs::read_dir(&self.staging).unwrap().count()
    }

    fn expect_err(&self) -> ArchiveError {
        match self.unpack() {
            Ok((tree, _)) => panic!("expected an error, got {tree:?}"),
            Err(e) => e,
        }
    }
}

fn unpack_err(build: impl FnOnce(&mut Builder<Vec<u8>>)) -> ArchiveError {
    Fixture::new(&tar_bytes(build)).expect_err()
}

fn entry(rel_path: &str, kind: SourceEntryKind, mode: u32, owner: (u32, u32)) -> SourceEntry {
    SourceEntry {
        rel_path: rel_path.into(),
        kind,
        mode,
        owner: Some(owner),
    }
}

fn staged(fixture: &Fixture, data: &[u8]) -> SourceEntryKind {
    let sha256 = Sha256Digest::of(data);
    SourceEntryKind::File(Content {
        location: Location::Staged {
            dir: Arc::new(fixture.staging.clone()),
        },
        size: data.len() as u64,
        sha256,
    })
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

const TOOL: &[u8] = b"#!/bin/sh\necho hi\n";
const CONF: &[u8] = b"answer = 42\n";

/// Members in deliberately unsorted order, with every accepted kind and a few
/// names that need normalising.
fn mixed_tar(big: &[u8]) -> Vec<u8> {
    tar_bytes(|tar| {
        dir(tar, "./", 0o755, ROOT);
        dir(tar, "zeta/", 0o700, ROOT);
        file(tar, "zeta/tool", 0o4755, ROOT, TOOL);
        dir(tar, "./etc//conf/", 0o750, (1000, 1000));
        // Old-style regular file: type flag NUL instead of `0`.
        let mut old = header(EntryType::Regular, 0o100644, (1000, 100), 0);
        old.as_old_mut().linkflag[0] = 0;
        append_raw(tar, old, b"etc/conf/app.toml", b"", CONF);
        let contiguous = header(EntryType::Continuous, 0o600, ROOT, 0);
        append_raw(tar, contiguous, b"data/big.bin", b"", big);
        file(tar, "empty", 0o644, ROOT, b"");
        link(tar, EntryType::Symlink, "alink", "zeta/tool");
        link(tar, EntryType::Symlink, "abs-link", "/etc/passwd");
        link(tar, EntryType::Link, "zeta/hard", "./zeta/tool");
    })
}

fn mixed_expected(fixture: &Fixture, big: &[u8]) -> Vec<SourceEntry> {
    let symlink = |target: &str| SourceEntryKind::Symlink {
        target: target.to_string(),
    };
    vec![
        entry("abs-link", symlink("/etc/passwd"), 0o777, (0, 0)),
        entry("alink", symlink("zeta/tool"), 0o777, (0, 0)),
        entry("data/big.bin", staged(fixture, big), 0o600, (0, 0)),
        entry("empty", staged(fixture, b""), 0o644, (0, 0)),
        entry("etc/conf", SourceEntryKind::Dir, 0o750, (1000, 1000)),
        entry(
            "etc/conf/app.toml",
            staged(fixture, CONF),
            0o644,
            (1000, 100),
        ),
        entry("zeta", SourceEntryKind::Dir, 0o700, (0, 0)),
        entry(
            "zeta/hard",
            SourceEntryKind::Hardlink {
                target: "zeta/tool".to_string(),
            },
            0o777,
            (0, 0),
        ),
        entry("zeta/tool", staged(fixture, TOOL), 0o4755, (0, 0)),
    ]
}

fn assert_staged_contents(tree: &SourceTree) {
    for entry in &tree.entries {
        if let SourceEntryKind::File(content) = &entry.kind {
            let bytes = fs::read(content.path()).unwrap();
            assert_eq!(bytes.len() as u64, content.size, "{}", entry.rel_path);
            assert_eq!(
                Sha256Digest::of(&bytes),
                content.sha256,
                "{}",
                entry.rel_path
            );
        }
    }
}

#[test]
fn every_format_round_trips_members_sorted() {
    let big = pseudo_random(700_000);
    let tar = mixed_tar(&big);
    for format in [
        ArchiveFormat::Tar,
        ArchiveFormat::TarGz,
        ArchiveFormat::TarZst,
        ArchiveFormat::TarXz,
    ] {
        let bytes = compress(format, &tar);
        assert_eq!(ArchiveFormat::detect(&bytes), format);
        let fixture = Fixture::new(&bytes);
        let (tree, digest) = fixture.unpack().unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(tree.entries, mixed_expected(&fixture, &big), "{format}");
        assert_staged_contents(&tree);
        assert_eq!(digest, Sha256Digest::of(&bytes), "{format}");
        // big.bin, empty, app.toml, tool: the hard link shares tool's content.
        assert_eq!(fixture.staged_count(), 4, "{format}");
    }
}

#[test]
fn multi_member_gzip_is_read_to_its_last_member() {
    let big = pseudo_random(100_000);
    let tar = mixed_tar(&big);
    let (first, second) = tar.split_at(tar.len() / 2);
    let bytes = [gzip(first), gzip(second)].concat();
    let fixture = Fixture::new(&bytes);
    let (tree, digest) = fixture.unpack().unwrap();
    assert_eq!(tree.entries, mixed_expected(&fixture, &big));
    assert_eq!(digest, Sha256Digest::of(&bytes));
}

#[test]
fn digest_covers_bytes_after_the_end_of_archive_marker() {
    let mut bytes = tar_bytes(|tar| file(tar, "a", 0o644, ROOT, b"a"));
    bytes.resize(10240, 0); // record padding, as GNU tar writes
    bytes.extend_from_slice(b"trailing bytes that are not tar");
    let fixture = Fixture::new(&bytes);
    let (tree, digest) = fixture.unpack().unwrap();
    assert_eq!(tree.entries.len(), 1);
    assert_eq!(digest, Sha256Digest::of(&bytes));
}

#[test]
fn pax_and_gnu_long_names_and_link_names_work() {
    let long_dir = "d".repeat(60);
    let long_file = format!("{long_dir}/{}", "f".repeat(80));
    let long_link = format!("{long_dir}/{}", "l".repeat(80));
    let long_hard = format!("{long_dir}/{}", "h".repeat(80));
    let bytes = tar_bytes(|tar| {
        // GNU: the builder emits `L`/`K` records for names over 100 bytes.
        let mut gnu = header(EntryType::Regular, 0o644, ROOT, 3);
        tar.append_data(&mut gnu, &long_file, &b"gnu"[..]).unwrap();
        let mut gnu_link = header(EntryType::Symlink, 0o777, ROOT, 0);
        tar.append_link(&mut gnu_link, &long_link, &long_file)
            .unwrap();
        // PAX: `path`/`linkpath` records override the truncated ustar fields.
        pax(tar, &[("path", format!("{long_file}.pax").as_bytes())]);
        append_raw(
            tar,
            ustar(EntryType::Regular),
            b"truncated-name",
            b"",
            b"pax",
        );
        pax(
            tar,
            &[
                ("path", long_hard.as_bytes()),
                ("linkpath", long_file.as_bytes()),
            ],
        );
        append_raw(
            tar,
            ustar(EntryType::Link),
            b"truncated-link",
            b"truncated-target",
            b"",
        );
    });
    let fixture = Fixture::new(&bytes);
    let (tree, _) = fixture.unpack().unwrap();
    let listed: Vec<(&str, &SourceEntryKind)> = tree
        .entries
        .iter()
        .map(|e| (&*e.rel_path, &e.kind))
        .collect();
    assert_eq!(
        listed,
        [
            (long_file.as_str(), &staged(&fixture, b"gnu")),
            (
                format!("{long_file}.pax").as_str(),
                &staged(&fixture, b"pax")
            ),
            (
                long_hard.as_str(),
                &SourceEntryKind::Hardlink {
                    target: long_file.clone()
                }
            ),
            (
                long_link.as_str(),
                &SourceEntryKind::Symlink {
                    target: long_file.clone()
                }
            ),
        ]
    );
}

#[test]
fn gnu_sparse_members_are_staged_expanded() {
    let data = pseudo_random(512);
    let bytes = tar_bytes(|tar| {
        // 4 KiB file: a hole, 512 bytes of data at 1 KiB, a hole up to the end.
        let mut sparse = header(EntryType::GNUSparse, 0o644, ROOT, 0);
        let gnu = sparse.as_gnu_mut().unwrap();
        gnu.set_real_size(4096);
        gnu.sparse[0].set_offset(1024);
        gnu.sparse[0].set_length(512);
        // GNU tar marks a trailing hole with an empty chunk at the real size.
        gnu.sparse[1].set_offset(4096);
        gnu.sparse[1].set_length(0);
        append_raw(tar, sparse, b"disk.img", b"", &data);
    });
    let fixture = Fixture::new(&bytes);
    let (tree, _) = fixture.unpack().unwrap();
    let expanded = [vec![0; 1024], data, vec![0; 2560]].concat();
    assert_eq!(
        tree.entries,
        [entry(
            "disk.img",
            staged(&fixture, &expanded),
            0o644,
            (0, 0)
        )]
    );
    assert_staged_contents(&tree);
}

/// Archives written by the real GNU tar, in GNU format (with a sparse member) and
/// PAX format (with a long name), compressed by tar's own filters.
#[test]
fn archives_written_by_gnu_tar_unpack() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let src = tempfile::tempdir().unwrap();
    let long_name = format!("pkg/share/{}.txt", "n".repeat(120));
    let disk = {
        let mut disk = vec![0u8; 1 << 20];
        disk[512 * 1024..516 * 1024].copy_from_slice(&pseudo_random(4096));
        disk
    };
    let set_mode = |path: &str, mode| {
        fs::set_permissions(src.path().join(path), fs::Permissions::from_mode(mode)).unwrap()
    };
    for dir in ["pkg", "pkg/bin", "pkg/share"] {
        fs::create_dir(src.path().join(dir)).unwrap();
        set_mode(dir, 0o755);
    }
    fs::write(src.path().join("pkg/bin/tool"), TOOL).unwrap();
    set_mode("pkg/bin/tool", 0o750);
    fs::hard_link(
        src.path().join("pkg/bin/tool"),
        src.path().join("pkg/bin/tool-link"),
    )
    .unwrap();
    symlink("bin/tool", src.path().join("pkg/current")).unwrap();
    fs::write(src.path().join(&long_name), CONF).unwrap();
    set_mode(&long_name, 0o644);
    // Written with a hole on either side of the data, so GNU tar can store it sparse.
    {
        let mut file = File::create(src.path().join("pkg/disk.img")).unwrap();
        file.set_len(disk.len() as u64).unwrap();
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(512 * 1024)).unwrap();
        file.write_all(&disk[512 * 1024..516 * 1024]).unwrap();
    }
    set_mode("pkg/disk.img", 0o600);

    for (tar_format, filter, expected_format) in [
        ("--format=gnu", None, ArchiveFormat::Tar),
        ("--format=gnu", Some("--gzip"), ArchiveFormat::TarGz),
        ("--format=posix", Some("--zstd"), ArchiveFormat::TarZst),
        ("--format=posix", Some("--xz"), ArchiveFormat::TarXz),
    ] {
        let out = tempfile::tempdir().unwrap();
        let archive = out.path().join("pkg.archive");
        let mut tar = std::process::Command::new("tar");
        tar.arg("-C")
            .arg(src.path())
            .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner"])
            .arg(tar_format);
        if tar_format == "--format=gnu" {
            tar.arg("--sparse");
        }
        tar.args(filter).arg("-cf").arg(&archive).arg("pkg");
        let status = tar
            .status()
            .expect("GNU tar must be installed to run this test");
        assert!(status.success(), "{tar:?}");

        let staging = out.path().join("staging");
        let (tree, digest) = unpack(&archive, &staging, Limits::DEFAULT).unwrap();
        assert_eq!(
            ArchiveFormat::detect(&fs::read(&archive).unwrap()),
            expected_format
        );
        assert_eq!(digest, Sha256Digest::of(&fs::read(&archive).unwrap()));
        let stage = |data: &[u8]| {
            let sha256 = Sha256Digest::of(data);
            SourceEntryKind::File(Content {
                location: Location::Staged {
                    dir: Arc::new(staging.clone()),
                },
                size: data.len() as u64,
                sha256,
            })
        };
        let expected = vec![
            entry("pkg", SourceEntryKind::Dir, 0o755, (0, 0)),
            entry("pkg/bin", SourceEntryKind::Dir, 0o755, (0, 0)),
            entry("pkg/bin/tool", stage(TOOL), 0o750, (0, 0)),
            entry(
                "pkg/bin/tool-link",
                SourceEntryKind::Hardlink {
                    target: "pkg/bin/tool".to_string(),
                },
                0o750,
                (0, 0),
            ),
            entry(
                "pkg/current",
                SourceEntryKind::Symlink {
                    target: "bin/tool".to_string(),
                },
                0o777,
                (0, 0),
            ),
            entry("pkg/disk.img", stage(&disk), 0o600, (0, 0)),
            entry("pkg/share", SourceEntryKind::Dir, 0o755, (0, 0)),
            entry(&long_name, stage(CONF), 0o644, (0, 0)),
        ];
        assert_eq!(tree.entries, expected, "{tar_format} {filter:?}");
        assert_staged_contents(&tree);
    }
}

#[test]
fn identical_content_is_staged_once() {
    // Members above the copy buffer are streamed to a temporary file, smaller ones
    // hashed in memory first: both are staged once per content.
    let big = pseudo_random(COPY_BUFFER + 1);
    let bytes = tar_bytes(|tar| {
        file(tar, "one", 0o644, ROOT, b"same bytes");
        file(tar, "two", 0o755, (1, 1), b"same bytes");
        file(tar, "three", 0o644, ROOT, b"other bytes");
        file(tar, "big-1", 0o644, ROOT, &big);
        file(tar, "big-2", 0o644, ROOT, &big);
    });
    let fixture = Fixture::new(&bytes);
    let (tree, _) = fixture.unpack().unwrap();
    assert_eq!(
        fixture.staged_count(),
        3,
        "no temporary file is left either"
    );
    let kind = |name: &str| {
        let entry = tree.entries.iter().find(|e| &*e.rel_path == name);
        entry.map(|e| e.kind.clone()).unwrap()
    };
    assert_eq!(kind("one"), kind("two"));
    assert_eq!(kind("big-1"), kind("big-2"));
    assert_staged_contents(&tree);
}

#[test]
fn a_directory_may_repeat_with_the_same_mode_and_owner() {
    let bytes = tar_bytes(|tar| {
        dir(tar, "d/", 0o755, ROOT);
        file(tar, "d/f", 0o644, ROOT, b"f");
        dir(tar, "./d", 0o755, ROOT);
    });
    let (tree, _) = Fixture::new(&bytes).unpack().unwrap();
    let paths: Vec<_> = tree.entries.iter().map(|e| &*e.rel_path).collect();
    assert_eq!(paths, ["d", "d/f"]);
}

fn assert_unsafe_name(err: ArchiveError, expected_member: &str) {
    match &err {
        ArchiveError::UnsafeName { member, .. } => assert_eq!(member, expected_member),
        other => panic!("expected UnsafeName, got {other:?}"),
    }
}

#[test]
fn absolute_names_are_refused() {
    let err = unpack_err(|tar| file(tar, "/etc/passwd", 0o644, ROOT, b"root::0:0::/:/bin/sh\n"));
    assert_unsafe_name(err, "/etc/passwd");
}

#[test]
fn dot_dot_components_are_refused() {
    let err = unpack_err(|tar| {
        dir(tar, "a/", 0o755, ROOT);
        file(tar, "a/../../escaped", 0o644, ROOT, b"x");
    });
    assert_unsafe_name(err, "a/../../escaped");
}

#[test]
fn nul_in_a_long_name_is_refused() {
    let err = unpack_err(|tar| {
        let long_name = header(EntryType::GNULongName, 0o644, ROOT, 0);
        append_raw(
            tar,
            long_name,
            b"././@LongLink",
            b"",
            b"innocent\0/../../etc/passwd",
        );
        file(tar, "placeholder", 0o644, ROOT, b"x");
    });
    assert_unsafe_name(err, "innocent\\u{0}/../../etc/passwd");
}

#[test]
fn empty_names_and_non_directory_roots_are_refused() {
    assert_unsafe_name(unpack_err(|tar| file(tar, "", 0o644, ROOT, b"x")), "");
    assert_unsafe_name(unpack_err(|tar| file(tar, "./.", 0o644, ROOT, b"x")), "./.");
}

#[test]
fn non_utf8_names_and_empty_symlink_targets_are_refused() {
    let latin1 = unpack_err(|tar| {
        append_raw(
            tar,
            header(EntryType::Regular, 0o644, ROOT, 0),
            b"caf\xe9",
            b"",
            b"x",
        )
    });
    assert_unsafe_name(latin1, "caf\u{fffd}");
    let err = unpack_err(|tar| link(tar, EntryType::Symlink, "dangling", ""));
    assert!(
        matches!(&err, ArchiveError::BadSymlink { member, .. } if member == "dangling"),
        "{err:?}"
    );
}

fn assert_through_symlink(err: ArchiveError, expected_member: &str, expected_symlink: &str) {
    match &err {
        ArchiveError::ThroughSymlink {
            member, symlink, ..
        } => assert_eq!(
            (member.as_str(), symlink.as_str()),
            (expected_member, expected_symlink)
        ),
        other => panic!("expected ThroughSymlink, got {other:?}"),
    }
}

#[test]
fn members_below_a_symlink_member_are_refused_in_either_order() {
    let err = unpack_err(|tar| {
        link(tar, EntryType::Symlink, "lib", "/etc");
        file(tar, "lib/passwd", 0o644, ROOT, b"pwned");
    });
    assert_through_symlink(err, "lib/passwd", "lib");

    let err = unpack_err(|tar| {
        link(tar, EntryType::Symlink, "a", "..");
        dir(tar, "a/x/", 0o755, ROOT);
    });
    assert_through_symlink(err, "a/x", "a");

    let err = unpack_err(|tar| {
        file(tar, "lib/deep/passwd", 0o644, ROOT, b"pwned");
        link(tar, EntryType::Symlink, "lib", "/etc");
    });
    assert_through_symlink(err, "lib/deep/passwd", "lib");
}

#[test]
fn members_below_a_file_member_are_refused() {
    let err = unpack_err(|tar| {
        file(tar, "a", 0o644, ROOT, b"a");
        file(tar, "a/b", 0o644, ROOT, b"b");
    });
    assert!(
        matches!(&err, ArchiveError::ParentNotDirectory { member, parent, .. } if member == "a/b" && parent == "a"),
        "{err:?}"
    );
}

fn assert_bad_hardlink(err: ArchiveError, needle: &str) {
    match &err {
        ArchiveError::BadHardlink { member, reason, .. } => {
            assert_eq!(member, "h");
            assert!(reason.contains(needle), "{reason}");
        }
        other => panic!("expected BadHardlink, got {other:?}"),
    }
}

#[test]
fn hard_links_must_name_an_earlier_regular_file() {
    let missing = unpack_err(|tar| link(tar, EntryType::Link, "h", "nowhere"));
    assert_bad_hardlink(missing, "not an earlier member");

    let later = unpack_err(|tar| {
        link(tar, EntryType::Link, "h", "f");
        file(tar, "f", 0o644, ROOT, b"f");
    });
    assert_bad_hardlink(later, "not an earlier member");

    let to_dir = unpack_err(|tar| {
        dir(tar, "d/", 0o755, ROOT);
        link(tar, EntryType::Link, "h", "d");
    });
    assert_bad_hardlink(to_dir, "is a directory");

    let absolute = unpack_err(|tar| link(tar, EntryType::Link, "h", "/etc/shadow"));
    assert_bad_hardlink(absolute, "absolute");

    let climbing = unpack_err(|tar| {
        file(tar, "f", 0o644, ROOT, b"f");
        link(tar, EntryType::Link, "h", "x/../../f");
    });
    assert_bad_hardlink(climbing, "`..`");
}

fn assert_duplicate(err: ArchiveError, expected_member: &str) {
    match &err {
        ArchiveError::Duplicate { member, .. } => assert_eq!(member, expected_member),
        other => panic!("expected Duplicate, got {other:?}"),
    }
}

#[test]
fn duplicate_paths_are_refused() {
    let err = unpack_err(|tar| {
        file(tar, "f", 0o644, ROOT, b"first");
        file(tar, "./f", 0o644, ROOT, b"second");
    });
    assert_duplicate(err, "./f");
    assert!(unpack_err(|tar| {
        file(tar, "f", 0o644, ROOT, b"first");
        file(tar, "f", 0o644, ROOT, b"second");
    })
    .to_string()
    .contains("appears twice in the archive"));

    // A symlink later "filled" by a directory of the same path.
    let err = unpack_err(|tar| {
        link(tar, EntryType::Symlink, "lib", "/etc");
        dir(tar, "lib/", 0o755, ROOT);
    });
    assert_duplicate(err, "lib/");

    let err = unpack_err(|tar| {
        dir(tar, "d/", 0o755, ROOT);
        dir(tar, "d/", 0o700, ROOT);
    });
    assert_duplicate(err, "d/");
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    for (kind, name, described) in [
        (EntryType::Char, "dev/null", "a character device"),
        (EntryType::Block, "dev/sda", "a block device"),
        (EntryType::Fifo, "run/pipe", "a FIFO"),
    ] {
        let err = unpack_err(|tar| {
            append_raw(tar, header(kind, 0o666, ROOT, 0), name.as_bytes(), b"", b"")
        });
        match &err {
            ArchiveError::UnsupportedType { member, kind, .. } => {
                assert_eq!((member.as_str(), kind.as_str()), (name, described))
            }
            other => panic!("expected UnsupportedType, got {other:?}"),
        }
        assert!(err.to_string().contains("create them at runtime"), "{err}");
    }
}

#[test]
fn pax_sparse_files_are_refused() {
    let err = unpack_err(|tar| {
        pax(
            tar,
            &[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")],
        );
        file(tar, "GNUSparseFile.0/disk.img", 0o644, ROOT, b"1\n0\n0\n");
    });
    assert!(
        matches!(err, ArchiveError::UnsupportedType { .. }),
        "{err:?}"
    );
}

fn assert_not_tar(err: ArchiveError) {
    assert!(matches!(err, ArchiveError::NotTar { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("not a tar archive (supported: tar, tar.gz, tar.zst, tar.xz)"),
        "{err}"
    );
}

#[test]
fn garbage_and_empty_files_are_not_tar() {
    assert_not_tar(Fixture::new(&pseudo_random(5000)).expect_err());
    assert_not_tar(Fixture::new(b"PK\x03\x04 a zip file").expect_err());
    assert_not_tar(Fixture::new(b"").expect_err());
    assert_not_tar(Fixture::new(&gzip(&pseudo_random(5000))).expect_err());
    assert_not_tar(Fixture::new(&gzip(b"")).expect_err());
}

fn assert_corrupt(err: ArchiveError) {
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err:?}");
}

fn two_files() -> Vec<u8> {
    tar_bytes(|tar| {
        file(tar, "a", 0o644, ROOT, &pseudo_random(50_000));
        file(tar, "b", 0o644, ROOT, &pseudo_random(50_000));
    })
}

#[test]
fn truncated_archives_are_refused() {
    let tar = two_files();
    for format in [
        ArchiveFormat::TarGz,
        ArchiveFormat::TarZst,
        ArchiveFormat::TarXz,
    ] {
        let compressed = compress(format, &tar);
        for cut in [compressed.len() / 2, compressed.len() - 4] {
            let err = Fixture::new(&compressed[..cut]).expect_err();
            assert!(
                matches!(err, ArchiveError::Corrupt { .. }),
                "{format} cut at {cut}: {err:?}"
            );
        }
    }
    // Plain tar cut inside a member's data, and cut right before the end marker.
    assert_corrupt(Fixture::new(&tar[..30_000]).expect_err());
    let without_marker = tar.len() - 1024;
    assert_corrupt(Fixture::new(&tar[..without_marker]).expect_err());
}

#[test]
fn a_bad_header_after_valid_members_is_corruption_not_a_foreign_format() {
    let mut tar = two_files();
    // The second header starts after the first header and a's 50,000 bytes (padded).
    let second_header = 512 + 50_176;
    tar[second_header] ^= 0x01;
    let err = Fixture::new(&tar).expect_err();
    match &err {
        ArchiveError::Corrupt { place, detail, .. } => {
            assert_eq!(place, "after member `a`");
            assert!(detail.contains("checksum"), "{detail}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_bad_gzip_checksum_is_caught_after_the_last_member() {
    let mut bytes = gzip(&two_files());
    let crc = bytes.len() - 8;
    bytes[crc] ^= 0xff;
    assert_corrupt(Fixture::new(&bytes).expect_err());
}

#[test]
fn data_after_a_compressed_stream_is_refused() {
    let tar = two_files();
    for format in [
        ArchiveFormat::TarGz,
        ArchiveFormat::TarZst,
        ArchiveFormat::TarXz,
    ] {
        let bytes = [compress(format, &tar), b"junk after the stream".to_vec()].concat();
        let err = Fixture::new(&bytes).expect_err();
        assert!(
            matches!(err, ArchiveError::Corrupt { .. }),
            "{format}: {err:?}"
        );
    }
}

/// The limit an archive was refused for.
fn limit_error(err: ArchiveError) -> LimitError {
    match err {
        ArchiveError::Limit { source, .. } => source,
        other => panic!("expected a limit error, got: {other}"),
    }
}

/// A member written the way GNU tar writes long names: a GNU long-name record, then
/// the member.
fn long_named(tar: &mut Builder<Vec<u8>>, kind: EntryType, name: &str, data: &[u8]) {
    let mut header = header(kind, 0o755, ROOT, data.len() as u64);
    tar.append_data(&mut header, name, data).unwrap();
}

#[test]
fn names_longer_than_a_file_system_holds_are_refused() {
    let component = "c".repeat(256);
    let err = limit_error(unpack_err(|t| {
        long_named(t, EntryType::Regular, &format!("dir/{component}"), b"x")
    }));
    assert!(
        matches!(&err, LimitError::LongComponent { length: 256, member } if member.starts_with("dir/ccc")),
        "{err}"
    );

    // 17 components of 240 bytes: 4,096 bytes with their slashes, then one more.
    let longest = vec!["p".repeat(240); 17].join("/");
    assert_eq!(longest.len(), 4096);
    Fixture::new(&tar_bytes(|t| {
        long_named(t, EntryType::Regular, &longest, b"x")
    }))
    .unpack()
    .unwrap();
    let err = limit_error(unpack_err(|t| {
        long_named(t, EntryType::Regular, &format!("{longest}/q"), b"x")
    }));
    assert!(
        matches!(err, LimitError::LongPath { length: 4098, .. }),
        "{err}"
    );
    assert!(err.hint().unwrap().contains("cannot be raised"));

    let target = "t/".repeat(40_000);
    let err = limit_error(unpack_err(|t| {
        let mut header = header(EntryType::Symlink, 0o777, ROOT, 0);
        t.append_link(&mut header, "link", &target).unwrap();
    }));
    assert!(
        matches!(&err, LimitError::LongTarget { member, length: 80_000 } if member == "link"),
        "{err}"
    );
}

/// A header of `kind` declaring `size` bytes, followed by only `actual` bytes.
fn extension_header(kind: EntryType, size: u64, actual: &[u8]) -> Vec<u8> {
    let mut header = ustar(kind);
    header.set_path("././@LongLink").unwrap();
    header.set_size(size);
    header.set_cksum();
    let mut bytes = header.as_bytes().to_vec();
    bytes.extend_from_slice(actual);
    bytes.resize(bytes.len().div_ceil(512) * 512, 0);
    bytes
}

#[test]
fn huge_pax_and_long_name_records_are_refused_by_their_header() {
    // 200 MB declared, a few bytes present: the header alone is refused; the tar crate
    // would otherwise try to read (and hold) the record.
    for (kind, record) in [
        (EntryType::XHeader, "a PAX extended header"),
        (EntryType::GNULongName, "a GNU long-name record"),
        (EntryType::GNULongLink, "a GNU long-link record"),
    ] {
        let mut tar = tar_bytes(|t| file(t, "first", 0o644, ROOT, b"1"));
        tar.truncate(tar.len() - 1024); // the end-of-archive marker
        tar.extend(extension_header(
            kind,
            200 << 20,
            b"30 path=aaaaaaaaaaaaaaaaaaaaa\n",
        ));
        let err = limit_error(Fixture::new(&gzip(&tar)).expect_err());
        match &err {
            LimitError::LargeRecord {
                place,
                record: refused,
                size,
                ..
            } => {
                assert_eq!((*refused, *size), (record, 200 << 20), "{err}");
                assert_eq!(place, "after member `first`");
            }
            other => panic!("{other}"),
        }
    }
    // A record over the limit that is all there is refused the same way.
    let data = vec![b'x'; (RECORD_MAX + 1) as usize];
    let err = limit_error(unpack_err(|t| {
        append_raw(t, ustar(EntryType::XHeader), b"PaxHeaders/m", b"", &data);
        file(t, "m", 0o644, ROOT, b"1");
    }));
    assert!(
        matches!(err, LimitError::LargeRecord { size, .. } if size == RECORD_MAX + 1),
        "{err}"
    );
    // Records within the limits still name members.
    let (tree, _) = Fixture::new(&tar_bytes(|t| {
        pax(t, &[("path", "p".repeat(250).as_bytes())]);
        file(t, "short", 0o644, ROOT, b"1");
    }))
    .unpack()
    .unwrap();
    assert_eq!(&*tree.entries[0].rel_path, "p".repeat(250));
}

fn three_files_in_a_dir() -> Vec<u8> {
    tar_bytes(|t| {
        for name in ["d/a", "d/b", "d/c"] {
            file(t, name, 0o644, ROOT, b"0123456789");
        }
    })
}

#[test]
fn entry_and_byte_limits_refuse_and_raised_limits_let_the_same_archive_through() {
    let fixture = Fixture::new(&three_files_in_a_dir());
    // Four entries: three files and the directory they imply.
    let at_limit = Limits {
        entries: 4,
        bytes: 30,
    };
    let (tree, _) = fixture.unpack_within(at_limit).unwrap();
    assert_eq!(tree.entries.len(), 3);

    let err = fixture
        .unpack_within(Limits {
            entries: 3,
            ..at_limit
        })
        .unwrap_err();
    assert!(err.hint().unwrap().contains("limits: { entries:"));
    assert_eq!(
        limit_error(err),
        LimitError::TooManyEntries {
            member: "d/c".into(),
            limit: 3
        }
    );
    let err = limit_error(
        fixture
            .unpack_within(Limits {
                bytes: 29,
                ..at_limit
            })
            .unwrap_err(),
    );
    assert_eq!(
        err,
        LimitError::TooManyBytes {
            member: "d/c".into(),
            limit: 29
        }
    );
}

#[test]
fn a_member_declaring_more_bytes_than_the_limit_is_refused_before_it_is_read() {
    // 1 TiB declared, one byte present: refused by the header, not as truncated.
    let mut tar = tar_bytes(|t| file(t, "big", 0o644, ROOT, b"x"));
    let mut header = Header::from_byte_slice(&tar[..512]).clone();
    header.set_size(1 << 40);
    header.set_cksum();
    tar[..512].copy_from_slice(header.as_bytes());
    let err = limit_error(Fixture::new(&tar).expect_err());
    assert!(
        matches!(&err, LimitError::TooManyBytes { member, .. } if member == "big"),
        "{err}"
    );
}

/// The deepest nesting a path of 4,096 bytes allows (2,048 one-byte directories), in
/// archive order and deepest first: each is accepted, and one level more is refused
/// by the path limit. (The placement check looks at the nearest parent only; see
/// `limits::place`.)
#[test]
fn the_deepest_nesting_a_path_allows_unpacks_in_any_order() {
    let paths: Vec<String> = (1..=2048).map(|depth| vec!["d"; depth].join("/")).collect();
    for order in [paths.clone(), paths.iter().rev().cloned().collect()] {
        let fixture = Fixture::new(&tar_bytes(|t| {
            for path in &order {
                long_named(t, EntryType::Directory, path, b"");
            }
            long_named(t, EntryType::Regular, &format!("{}/f", paths[2046]), b"x");
        }));
        let (tree, _) = fixture.unpack().unwrap();
        assert_eq!(tree.entries.len(), 2049);
    }
    let too_deep = format!("{}/d", paths[2047]);
    let err = limit_error(unpack_err(|t| {
        long_named(t, EntryType::Directory, &too_deep, b"")
    }));
    assert!(
        matches!(err, LimitError::LongPath { length: 4097, .. }),
        "{err}"
    );
}
