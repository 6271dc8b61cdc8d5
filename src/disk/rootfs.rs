//! The image's final root file system as one tree: every layer applied in order
//! (whiteouts resolved, a non-directory replacing a whole subtree), which is what a
//! container runtime would see and what the disk's root file system holds.
//!
//! Hard links stay hard links when their target is still the file the same layer
//! wrote; a link whose target a later layer replaced or removed becomes a regular file
//! with the content it linked to (what an overlay mount shows).

use super::DiskError;
use crate::digest::Sha256Digest;
use crate::layers::{FileData, LayerTree, Origin, TreeEntryKind};
use crate::oci::whiteout;
use crate::recipe::Owner;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One entry of the merged tree, keyed by its path relative to the root (`usr/bin/x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootEntry {
    pub kind: RootKind,
    pub mode: u32,
    pub owner: Owner,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootKind {
    File {
        data: FileData,
        sha256: Sha256Digest,
    },
    Dir,
    Symlink {
        target: String,
    },
    /// Another path of the same file (the key of a `File` entry of this tree).
    Hardlink {
        target: String,
    },
}

/// The merged tree, sorted byte-wise by path: parents come before their children.
#[derive(Debug, Clone, Default)]
pub struct RootTree {
    pub entries: BTreeMap<String, RootEntry>,
}

#[derive(Clone)]
struct Placed {
    entry: RootEntry,
    layer: usize,
}

/// Applies `layers` in order.
pub fn merge(layers: &[LayerTree]) -> RootTree {
    let mut fs: BTreeMap<String, Placed> = BTreeMap::new();
    for (index, layer) in layers.iter().enumerate() {
        for key in layer.entries.keys() {
            if let Some(w) = whiteout::whiteout(key) {
                whiteout::apply(&mut fs, &w);
            }
        }
        for (key, entry) in &layer.entries {
            let kind = match &entry.kind {
                TreeEntryKind::Whiteout => continue,
                TreeEntryKind::Dir => RootKind::Dir,
                TreeEntryKind::File(data) => file_kind(data, entry.origin.rel_path()),
                TreeEntryKind::Symlink { target } => RootKind::Symlink {
                    target: target.clone(),
                },
                TreeEntryKind::Hardlink { target } => RootKind::Hardlink {
                    target: target.clone(),
                },
            };
            if kind != RootKind::Dir {
                whiteout::remove_subtree(&mut fs, key);
            }
            let placed = Placed {
                entry: RootEntry {
                    kind,
                    mode: entry.mode,
                    owner: entry.owner,
                },
                layer: index,
            };
            fs.insert(key.clone(), placed);
        }
    }
    // Links whose target no longer is the file their layer linked to become copies.
    let snapshot = fs.clone();
    for placed in fs.values_mut() {
        let RootKind::Hardlink { target } = &placed.entry.kind else {
            continue;
        };
        let intact = snapshot.get(target).is_some_and(|t| {
            t.layer == placed.layer && matches!(t.entry.kind, RootKind::File { .. })
        });
        if !intact {
            if let Some(target) = layers[placed.layer].entries.get(target) {
                if let TreeEntryKind::File(data) = &target.kind {
                    placed.entry.kind = file_kind(data, target.origin.rel_path());
                }
            }
        }
    }
    RootTree {
        entries: fs.into_iter().map(|(k, p)| (k, p.entry)).collect(),
    }
}

/// The bytes of a file of the tree, checked against the SHA-256 its layer recorded
/// (a source's file may have changed since it was hashed).
pub fn read_checked(data: &FileData, sha256: Sha256Digest) -> Result<Vec<u8>, DiskError> {
    match data {
        FileData::Inline(bytes) => Ok(bytes.to_vec()),
        FileData::Source(content) => {
            let path = content.path();
            let bytes = std::fs::read(&path).map_err(DiskError::io(&path))?;
            let found = Sha256Digest::of(&bytes);
            if found != sha256 {
                return Err(DiskError::SourceChanged {
                    path: path.into_owned(),
                    expected: sha256,
                    found,
                });
            }
            Ok(bytes)
        }
    }
}

/// What put the entry at `key` into the image: the source its layer took it from
/// (`deb:linux-image-6.1.0-28-cloud-amd64`), or how the recipe made it.
pub fn origin_of(layers: &[LayerTree], key: &str) -> String {
    let origin = layers
        .iter()
        .rev()
        .find_map(|l| l.entries.get(key))
        .map(|e| &e.origin);
    match origin {
        Some(Origin::Source { name, .. }) => name.to_string(),
        Some(Origin::Recipe { line }) => format!("recipe line {line}"),
        Some(Origin::Generated(g)) => g.by.to_string(),
        _ => "the image".into(),
    }
}

/// A layer's file, held apart from its entry (at `rel_path` in its source).
fn file_kind(data: &FileData, rel_path: &str) -> RootKind {
    let (data, sha256) = match data {
        FileData::Source(c) => (FileData::Source(c.standalone(rel_path)), c.sha256),
        FileData::Inline(bytes) => (data.clone(), Sha256Digest::of(bytes)),
    };
    RootKind::File { data, sha256 }
}

impl RootTree {
    /// SHA-256 of a canonical listing of the tree (type, mode, owner, path and content
    /// digest or link target per entry): what the file system's identifiers are
    /// derived from, so they change exactly when the content does.
    pub fn digest(&self) -> Sha256Digest {
        let mut h = Sha256::new();
        h.update(b"cairn-rootfs-v1\n");
        for (key, e) in &self.entries {
            let (kind, payload) = match &e.kind {
                RootKind::File { sha256, .. } => ("f", sha256.hex()),
                RootKind::Dir => ("d", String::new()),
                RootKind::Symlink { target } => ("l", target.clone()),
                RootKind::Hardlink { target } => ("h", target.clone()),
            };
            h.update(format!(
                "{kind} {:04o} {}:{} /{key}\0{payload}\n",
                e.mode, e.owner.uid, e.owner.gid
            ));
        }
        Sha256Digest::from_hasher(h)
    }

    /// Bytes of regular file content (each hard-linked file once).
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|e| match &e.kind {
                RootKind::File { data, .. } => match data {
                    FileData::Source(c) => c.size,
                    FileData::Inline(b) => b.len() as u64,
                },
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Origin, TreeEntry};

    fn entry(kind: TreeEntryKind) -> TreeEntry {
        TreeEntry {
            kind,
            mode: 0o644,
            owner: Owner::ROOT,
            origin: Origin::Parent,
        }
    }

    fn file(text: &str) -> TreeEntry {
        entry(TreeEntryKind::File(FileData::Inline(
            text.as_bytes().into(),
        )))
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

    #[test]
    fn later_layers_win_and_whiteouts_remove_subtrees() {
        let base = layer(
            "base",
            vec![
                ("etc", entry(TreeEntryKind::Dir)),
                ("etc/motd", file("old")),
                ("opt", entry(TreeEntryKind::Dir)),
                ("opt/a", file("a")),
                ("bin", entry(TreeEntryKind::Dir)),
                ("bin/x", file("x")),
                (
                    "bin/y",
                    entry(TreeEntryKind::Hardlink {
                        target: "bin/x".into(),
                    }),
                ),
                (
                    "bin/z",
                    entry(TreeEntryKind::Hardlink {
                        target: "bin/x".into(),
                    }),
                ),
            ],
        );
        let top = layer(
            "top",
            vec![
                ("etc", entry(TreeEntryKind::Dir)),
                ("etc/motd", file("new")),
                (".wh.opt", entry(TreeEntryKind::Whiteout)),
                ("bin", entry(TreeEntryKind::Dir)),
                ("bin/x", file("replaced")),
            ],
        );
        let tree = merge(&[base, top]);
        let keys: Vec<&str> = tree.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, ["bin", "bin/x", "bin/y", "bin/z", "etc", "etc/motd"]);
        let sha = |k: &str| match &tree.entries[k].kind {
            RootKind::File { sha256, .. } => *sha256,
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(sha("etc/motd"), Sha256Digest::of(b"new"));
        assert_eq!(sha("bin/x"), Sha256Digest::of(b"replaced"));
        // The links' target was replaced: they keep the content they linked to.
        assert_eq!(sha("bin/y"), Sha256Digest::of(b"x"));
        assert_eq!(sha("bin/z"), Sha256Digest::of(b"x"));
    }

    #[test]
    fn intact_hard_links_stay_links_and_the_digest_sees_every_field() {
        let l = layer(
            "l",
            vec![
                ("a", file("x")),
                ("b", entry(TreeEntryKind::Hardlink { target: "a".into() })),
            ],
        );
        let tree = merge(std::slice::from_ref(&l));
        assert_eq!(
            tree.entries["b"].kind,
            RootKind::Hardlink { target: "a".into() }
        );
        let mut changed = tree.clone();
        changed.entries.get_mut("a").unwrap().mode = 0o600;
        assert_ne!(tree.digest(), changed.digest());
    }
}
