//! Unit tests of the image's file list that the SBOMs and provenance describe: the
//! final version of each regular file after the base and every layer, whiteouts and
//! replaced subtrees applied, each attributed to the layer that wrote it.

use super::*;
use crate::base::BaseLayer;
use crate::resolve::Lockfile;
use std::collections::BTreeMap;
use std::sync::Arc;

fn entry(kind: TreeEntryKind, origin: Origin) -> TreeEntry {
    TreeEntry {
        mode: if kind == TreeEntryKind::Dir {
            0o755
        } else {
            0o644
        },
        kind,
        owner: Owner::ROOT,
        origin,
    }
}

fn file(bytes: &[u8], line: u32) -> TreeEntry {
    entry(
        TreeEntryKind::File(FileData::Inline(Arc::from(bytes))),
        Origin::Recipe { line },
    )
}

fn layer(name: &str, entries: Vec<(&str, TreeEntry)>) -> LayerTree {
    LayerTree {
        name: name.into(),
        entries: entries
            .into_iter()
            .map(|(k, e)| (k.to_string(), e))
            .collect(),
    }
}

fn base() -> (BaseImage, BaseFs) {
    let config = serde_json::from_value(serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap();
    let image = BaseImage {
        reference: "layout:base".into(),
        pinned: Sha256Digest::of(b"index"),
        manifest_digest: Sha256Digest::of(b"manifest"),
        config,
        layers: Vec::<BaseLayer>::new(),
    };
    let base_entry = |kind, layer| BaseEntry {
        kind,
        mode: 0o644,
        owner: Owner::ROOT,
        layer,
    };
    let base_file = |bytes: &[u8], layer| {
        base_entry(
            BaseKind::File {
                sha256: Sha256Digest::of(bytes),
                size: bytes.len() as u64,
            },
            layer,
        )
    };
    let mut fs = BaseFs::default();
    for (path, e) in [
        ("etc", base_entry(BaseKind::Dir, 0)),
        ("etc/os-release", base_file(b"ID=base\n", 1)),
        ("usr", base_entry(BaseKind::Dir, 0)),
        ("usr/lib", base_entry(BaseKind::Dir, 0)),
        ("usr/lib/removed", base_file(b"gone", 0)),
    ] {
        fs.entries.insert(path.into(), e);
    }
    (image, fs)
}

fn no_sources() -> ResolvedSources {
    ResolvedSources {
        sources: BTreeMap::new(),
        lock: Lockfile::default(),
        lock_changed: false,
        warnings: Vec::new(),
        packages: None,
    }
}

fn recipe() -> (tempfile::TempDir, Recipe) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.yaml");
    std::fs::write(
        &path,
        "cairn: 1\nname: r\nepoch: 1700000000\nlayers:\n  - name: one\n    contents:\n      - dir: /tmp\n",
    )
    .unwrap();
    let recipe = crate::recipe::load(&path).unwrap();
    (dir, recipe)
}

#[test]
fn the_final_version_of_each_file_is_listed_with_the_layer_that_wrote_it() {
    let (_dir, recipe) = recipe();
    let (image, base_fs) = base();
    let layers = [
        layer(
            "one",
            vec![
                ("etc/motd", file(b"v1", 3)),
                (
                    "usr/lib/.wh.removed",
                    entry(TreeEntryKind::Whiteout, Origin::Recipe { line: 4 }),
                ),
                ("var", entry(TreeEntryKind::Dir, Origin::Parent)),
                (
                    "var/data",
                    entry(TreeEntryKind::Dir, Origin::Recipe { line: 5 }),
                ),
                ("var/data/x", file(b"under a dir", 6)),
            ],
        ),
        layer(
            "two",
            vec![
                ("bin", entry(TreeEntryKind::Dir, Origin::Parent)),
                (
                    "bin/link",
                    entry(
                        TreeEntryKind::Hardlink {
                            target: "bin/tool".into(),
                        },
                        Origin::Recipe { line: 9 },
                    ),
                ),
                (
                    "bin/sym",
                    entry(
                        TreeEntryKind::Symlink {
                            target: "tool".into(),
                        },
                        Origin::Recipe { line: 10 },
                    ),
                ),
                ("bin/tool", file(b"tool", 8)),
                ("etc/motd", file(b"v2", 11)),
                // A file where a directory was: its children go with it.
                ("var/data", file(b"now a file", 12)),
            ],
        ),
    ];
    let contents = image_contents(&recipe, &no_sources(), Some((&image, &base_fs)), &layers);
    let listed: Vec<(String, Sha256Digest, Cow<str>)> = contents
        .files
        .iter()
        .map(|f| (f.path(), f.sha256(), f.layer()))
        .collect();
    let expected = [
        ("/bin/link", Sha256Digest::of(b"tool"), "two"),
        ("/bin/tool", Sha256Digest::of(b"tool"), "two"),
        ("/etc/motd", Sha256Digest::of(b"v2"), "two"),
        ("/etc/os-release", Sha256Digest::of(b"ID=base\n"), "base:1"),
        ("/var/data", Sha256Digest::of(b"now a file"), "two"),
    ]
    .map(|(path, sha256, layer)| (path.to_string(), sha256, Cow::Borrowed(layer)));
    assert_eq!(listed, expected);
    let motd = contents.files.get(2);
    assert_eq!(motd.origin(), FileOrigin::Recipe { line: 11 });
    assert_eq!(motd.size(), 2);
    assert_eq!(contents.files.get(3).origin(), FileOrigin::Base);
    assert_eq!(
        contents.base,
        Some(BaseInfo {
            reference: "layout:base".into(),
            manifest_digest: Sha256Digest::of(b"manifest"),
            pinned: Sha256Digest::of(b"index"),
        })
    );
}

#[test]
fn an_opaque_whiteout_empties_a_base_directory() {
    let (_dir, recipe) = recipe();
    let (image, base_fs) = base();
    let layers = [layer(
        "one",
        vec![
            (
                "etc/.wh..wh..opq",
                entry(TreeEntryKind::Whiteout, Origin::Recipe { line: 3 }),
            ),
            ("etc/hostname", file(b"box", 4)),
        ],
    )];
    let contents = image_contents(&recipe, &no_sources(), Some((&image, &base_fs)), &layers);
    let paths: Vec<String> = contents.files.iter().map(|f| f.path()).collect();
    assert_eq!(paths, ["/etc/hostname", "/usr/lib/removed"]);
}

#[test]
fn a_file_replaces_only_its_own_subtree_and_a_directory_keeps_a_file() {
    let (_dir, recipe) = recipe();
    let (image, mut base_fs) = base();
    let base_file = |bytes: &[u8]| BaseEntry {
        kind: BaseKind::File {
            sha256: Sha256Digest::of(bytes),
            size: bytes.len() as u64,
        },
        mode: 0o644,
        owner: Owner::ROOT,
        layer: 0,
    };
    // `usr/lib-old` and `usr/lib.d` sort between `usr/lib` and `usr/lib/...`.
    base_fs
        .entries
        .insert("usr/lib-old".into(), base_file(b"old"));
    base_fs.entries.insert("usr/lib.d".into(), base_file(b"d"));
    let layers = [layer(
        "one",
        vec![
            ("etc/os-release", entry(TreeEntryKind::Dir, Origin::Parent)),
            ("usr/lib", file(b"a file now", 3)),
        ],
    )];
    let contents = image_contents(&recipe, &no_sources(), Some((&image, &base_fs)), &layers);
    let listed: Vec<(String, Cow<str>)> = contents
        .files
        .iter()
        .map(|f| (f.path(), f.layer()))
        .collect();
    let expected = [
        ("/etc/os-release", "base:1"),
        ("/usr/lib", "one"),
        ("/usr/lib-old", "base:0"),
        ("/usr/lib.d", "base:0"),
    ]
    .map(|(path, layer)| (path.to_string(), Cow::Borrowed(layer)));
    assert_eq!(listed, expected);
}

/// The SBOM stage turns the list of the image's files into that of their SHA-1s in
/// place ([`ImageFiles::into_sha1s`]), which needs a place to be laid out as a
/// reference is: otherwise both lists are alive at once (8 MB each at a million files).
#[test]
fn a_place_is_laid_out_as_a_reference() {
    assert_eq!(
        (std::mem::size_of::<Place>(), std::mem::align_of::<Place>()),
        (
            std::mem::size_of::<&[u8; 20]>(),
            std::mem::align_of::<&[u8; 20]>()
        )
    );
}
