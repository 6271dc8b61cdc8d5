//! A snapshot of one source's contents: what every later stage reads instead of the
//! host file system, so that what is built is exactly what was hashed.
//!
//! Paths are shared (`Arc`), not copied, by the layer trees and the image's file list
//! built from a snapshot: a tree of tens of thousands of files is held once. A file's
//! [`Content`] is small (56 bytes) and copied inline, not shared behind its own
//! allocation: at a million files an `Arc` per content cost 96 bytes each. A directory
//! source's file does not hold its own path: whoever holds the content holds the entry
//! and its path too ([`Content::path_in`]).
//!
//! Below every stage: `resolve` snapshots the recipe's sources and `debian` its
//! packages, both unpacking archives with [`archive`].

pub mod archive;
pub mod limits;

use crate::digest::Sha256Digest;
use serde::Serialize;
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The entries of a source, sorted byte-wise by `rel_path`. A plain file source has a
/// single entry whose `rel_path` is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceTree {
    pub entries: Vec<SourceEntry>,
}

impl SourceTree {
    /// Calls `read` with each entry in order, freeing the list as it goes: at a million
    /// files the list (88 MB) would otherwise stay whole beside the layer its reader
    /// fills until the last entry is read. The entries are reversed in place and taken
    /// from the end, and the list is shrunk whenever an eighth of it is unused (at least
    /// [`FREE_STEP`] entries), so that a shrink that copies costs, in all, a few copies
    /// of the list at most: linear.
    pub fn read_freeing<E>(
        self,
        mut read: impl FnMut(&SourceEntry) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut entries = self.entries;
        entries.reverse();
        while let Some(entry) = entries.pop() {
            read(&entry)?;
            let unused = entries.capacity() - entries.len();
            if unused >= FREE_STEP && unused >= entries.len() / 8 {
                entries.shrink_to_fit();
            }
        }
        Ok(())
    }
}

/// The fewest entries [`SourceTree::read_freeing`] frees at once (some 350 KB).
const FREE_STEP: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceEntry {
    /// `/`-separated, relative, normalised (no `.`/`..`/empty components); empty only
    /// for a single-file source.
    pub rel_path: Arc<str>,
    pub kind: SourceEntryKind,
    /// Permission bits (0o7777 mask). For host directories this is normalised to what
    /// cairn writes (0o755 / 0o644 by the owner's execute bit); for archives, the
    /// member's own mode.
    pub mode: u32,
    /// uid/gid recorded in an archive member; `None` for host files (never the host's).
    pub owner: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SourceEntryKind {
    File(Content),
    Dir,
    Symlink {
        target: String,
    },
    /// A hard link to an earlier entry of the same source (its `rel_path`).
    Hardlink {
        target: String,
    },
}

/// Where to read a regular file's bytes, and what they must hash to. Serialises to
/// what the bytes are (size and SHA-256), for cache keys: where they live on the host
/// does not reach the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Content {
    #[serde(skip)]
    pub location: Location,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// Where a file's bytes are on the host: one pointer and a tag (16 bytes), so that a
/// [`Content`] is 56 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A host file (a single-file source), or a file cairn made.
    Path(Arc<PathBuf>),
    /// A staged copy of an archive member: `dir`/<hex SHA-256 of the content>, the
    /// directory shared by every member rather than a full path per member (an archive
    /// of a million files would otherwise hold a million staging paths).
    Staged { dir: Arc<PathBuf> },
    /// A file of a directory source: `dir`/<the path of the entry that holds it>. The
    /// directory is shared by every file, and the path is the entry's own (the source's
    /// entry, or the layer entry's origin), not held again here: at a million files
    /// each copy of it cost 16 bytes in the source's list and again in the layer's.
    InDir { dir: Arc<PathBuf> },
}

impl Content {
    /// The path to read the bytes from. `rel_path` is the path, in its source, of the
    /// entry that holds this content: a directory source's file is its directory joined
    /// with it; every other location stands alone and ignores it.
    pub fn path_in(&self, rel_path: &str) -> Cow<'_, Path> {
        match &self.location {
            Location::Path(path) => Cow::Borrowed(path),
            Location::Staged { dir } => Cow::Owned(dir.join(self.sha256.hex())),
            Location::InDir { dir } => Cow::Owned(dir.join(rel_path)),
        }
    }

    /// The path to read a content held apart from its source entry: any but a directory
    /// source's file, which is made one with [`Self::standalone`] first.
    pub fn path(&self) -> Cow<'_, Path> {
        assert!(
            !matches!(self.location, Location::InDir { .. }),
            "a directory source's file is read with its entry's path (Content::path_in)"
        );
        self.path_in("")
    }

    /// This content as one that stands alone, for a holder that keeps it apart from the
    /// entry at `rel_path` (a VM's kernel, the disk's file list): a directory source's
    /// file gets its full path.
    pub fn standalone(&self, rel_path: &str) -> Content {
        match &self.location {
            Location::InDir { .. } => Content {
                location: Location::Path(Arc::new(self.path_in(rel_path).into_owned())),
                ..self.clone()
            },
            _ => self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every regular file of every source holds one, in the source tree and again in
    /// each layer entry: its size is what a million-file build pays twice.
    #[test]
    fn a_content_is_56_bytes() {
        assert_eq!(std::mem::size_of::<Content>(), 56);
        assert_eq!(std::mem::size_of::<SourceEntry>(), 88);
    }

    /// Freed as read, the entries still come in order, every one, until one fails.
    #[test]
    fn entries_read_freeing_come_in_order_and_stop_at_an_error() {
        let entries: Vec<SourceEntry> = (0..10_000)
            .map(|i| SourceEntry {
                rel_path: format!("f{i:05}").into(),
                kind: SourceEntryKind::Dir,
                mode: 0o755,
                owner: None,
            })
            .collect();
        let tree = SourceTree { entries };
        let mut read = Vec::new();
        tree.clone()
            .read_freeing(|e| {
                read.push(e.rel_path.to_string());
                Ok::<_, ()>(())
            })
            .unwrap();
        let expected: Vec<String> = tree
            .entries
            .iter()
            .map(|e| e.rel_path.to_string())
            .collect();
        assert_eq!(read, expected);
        let mut count = 0;
        let stopped = tree.read_freeing(|e| {
            count += 1;
            if &*e.rel_path == "f05000" {
                return Err(e.rel_path.to_string());
            }
            Ok(())
        });
        assert_eq!((stopped, count), (Err("f05000".to_string()), 5001));
    }

    #[test]
    fn a_file_is_read_from_its_root_joined_with_its_path_or_digest() {
        let content = |location| Content {
            location,
            size: 0,
            sha256: Sha256Digest::of(b""),
        };
        let in_dir = content(Location::InDir {
            dir: Arc::new("/src/tree".into()),
        });
        assert_eq!(
            in_dir.path_in("usr/bin/x"),
            Path::new("/src/tree/usr/bin/x")
        );
        assert_eq!(
            in_dir.standalone("usr/bin/x").path(),
            Path::new("/src/tree/usr/bin/x")
        );
        let host = content(Location::Path(Arc::new("/host/file".into())));
        assert_eq!(host.path(), Path::new("/host/file"));
        assert_eq!(host.path_in("ignored"), Path::new("/host/file"));
        let staged = content(Location::Staged {
            dir: Arc::new("/staging".into()),
        });
        assert_eq!(
            staged.path(),
            Path::new("/staging").join(Sha256Digest::of(b"").hex())
        );
    }
}
