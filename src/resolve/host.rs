//! Snapshots of `path:` sources on the host: a single file, or a directory walked
//! without following symlinks and sorted byte-wise.
//!
//! Host metadata never reaches the image: times, owners and most mode bits are
//! dropped. What a host file contributes is its bytes, its type, its link target and
//! whether the owner may execute it (0o755 vs 0o644, the one bit git records too), so a
//! fresh checkout under any umask gives the same digest.

use super::hash_index::{FileStamp, HashIndex};
use super::tree::{Content, Location, SourceEntry, SourceEntryKind, SourceTree};
use crate::digest::{sha256_reader, Sha256Digest};
use rayon::prelude::*;
use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is a {kind}; a source may hold only regular files, directories and symlinks")]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("{path}: the name is not valid UTF-8; rename it")]
    NotUtf8 { path: PathBuf },
}

pub enum HostSnapshot {
    File(SourceTree),
    Dir(SourceTree),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HostError + '_ {
    move |source| HostError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Mode cairn writes for a host file: only the owner-execute bit survives.
pub fn normalised_file_mode(host_mode: u32) -> u32 {
    if host_mode & 0o100 != 0 {
        0o755
    } else {
        0o644
    }
}

const DIR_MODE: u32 = 0o755;

/// The file's content digest: from `index` when its stamp (`meta`, taken before) is
/// unchanged since it was recorded, else by reading it (and recording it). `location`
/// is `path`, as the content records it.
fn hash_file(
    path: &Path,
    location: Location,
    rel_path: &str,
    meta: &std::fs::Metadata,
    index: Option<&HashIndex>,
) -> Result<Content, HostError> {
    let before = FileStamp::of(meta);
    if let Some(sha256) = index.and_then(|index| index.lookup(rel_path, &before)) {
        return Ok(Content {
            location,
            size: meta.len(),
            sha256,
        });
    }
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let (sha256, size) = sha256_reader(&mut file).map_err(io_err(path))?;
    if let Some(index) = index {
        let after = FileStamp::of(&file.metadata().map_err(io_err(path))?);
        index.record(rel_path, &before, &after, sha256);
    }
    Ok(Content {
        location,
        size,
        sha256,
    })
}

/// Reads a `path:` source. A symlink given as the source itself is followed; symlinks
/// inside a directory are kept as symlinks. `index` saves reading unchanged files.
pub fn snapshot(path: &Path, index: Option<&HashIndex>) -> Result<HostSnapshot, HostError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.is_file() {
        let entry = SourceEntry {
            rel_path: "".into(),
            kind: SourceEntryKind::File(
                hash_file(path, Location::Path(path.into()), "", &meta, index)?.into(),
            ),
            mode: normalised_file_mode(meta.permissions().mode()),
            owner: None,
        };
        Ok(HostSnapshot::File(SourceTree {
            entries: vec![entry],
        }))
    } else if meta.is_dir() {
        snapshot_dir(path, index).map(HostSnapshot::Dir)
    } else {
        Err(HostError::Unsupported {
            path: path.into(),
            kind: file_type_name(&meta.file_type()),
        })
    }
}

fn file_type_name(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

enum Walked {
    File {
        meta: std::fs::Metadata,
        inode: Option<(u64, u64)>,
    },
    Dir,
    Symlink(String),
}

fn snapshot_dir(root: &Path, index: Option<&HashIndex>) -> Result<SourceTree, HostError> {
    // Entries share the root's path and their own path (see [`Location::InDir`]).
    let dir: Arc<Path> = root.into();
    let mut walked: Vec<(Arc<str>, Walked)> = Vec::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            HostError::Io {
                path,
                source: e.into(),
            }
        })?;
        let rel = item
            .path()
            .strip_prefix(root)
            .expect("walkdir yields paths below its root");
        let rel = rel
            .to_str()
            .ok_or_else(|| HostError::NotUtf8 {
                path: item.path().into(),
            })?
            .into();
        let ft = item.file_type();
        let kind = if ft.is_dir() {
            Walked::Dir
        } else if ft.is_symlink() {
            let target = std::fs::read_link(item.path()).map_err(io_err(item.path()))?;
            let target = target
                .into_os_string()
                .into_string()
                .map_err(|_| HostError::NotUtf8 {
                    path: item.path().into(),
                })?;
            Walked::Symlink(target)
        } else if ft.is_file() {
            let meta = item.metadata().map_err(|e| HostError::Io {
                path: item.path().into(),
                source: e.into(),
            })?;
            Walked::File {
                inode: (meta.nlink() > 1).then(|| (meta.dev(), meta.ino())),
                meta,
            }
        } else {
            return Err(HostError::Unsupported {
                path: item.path().into(),
                kind: file_type_name(&ft),
            });
        };
        walked.push((rel, kind));
    }
    // Byte-wise order of the whole path, independent of directory read order.
    walked.sort_by(|a, b| a.0.cmp(&b.0));

    // Hash all regular files on all cores; order is restored by index.
    let contents: Vec<Option<Result<Content, HostError>>> = walked
        .par_iter()
        .map(|(rel_path, w)| match w {
            Walked::File { meta, .. } => {
                let location = Location::InDir {
                    dir: Arc::clone(&dir),
                    rel_path: Arc::clone(rel_path),
                };
                let path = root.join(&**rel_path);
                Some(hash_file(&path, location, rel_path, meta, index))
            }
            _ => None,
        })
        .collect();

    // The first path (in sorted order) of each multiply-linked inode carries the bytes;
    // later ones become hard links to it, so the result never depends on walk order.
    let mut first_link: HashMap<(u64, u64), Arc<str>> = HashMap::new();
    let mut entries = Vec::with_capacity(walked.len());
    for ((rel_path, walked), content) in walked.into_iter().zip(contents) {
        let (kind, mode) = match walked {
            Walked::Dir => (SourceEntryKind::Dir, DIR_MODE),
            Walked::Symlink(target) => (SourceEntryKind::Symlink { target }, 0o777),
            Walked::File { meta, inode, .. } => {
                let content = content.expect("files were hashed")?;
                let mode = normalised_file_mode(meta.permissions().mode());
                match inode.and_then(|i| first_link.get(&i).map(|t| (i, t))) {
                    Some((_, target)) => (
                        SourceEntryKind::Hardlink {
                            target: target.to_string(),
                        },
                        mode,
                    ),
                    None => {
                        if let Some(i) = inode {
                            first_link.insert(i, rel_path.clone());
                        }
                        (SourceEntryKind::File(content.into()), mode)
                    }
                }
            }
        };
        entries.push(SourceEntry {
            rel_path,
            kind,
            mode,
            owner: None,
        });
    }
    Ok(SourceTree { entries })
}

/// The digest of a directory source: SHA-256 over a canonical listing of its sorted
/// entries. Each entry is one record
/// `<type> <mode, 4 octal digits> <path>\0<payload>\n`, where type is `f` (payload:
/// hex SHA-256 of the content), `d` (empty), `l` (symlink target) or `h` (hard-link
/// target path), preceded by the line `cairn-dir-v1\n`.
pub fn dir_digest(tree: &SourceTree) -> Sha256Digest {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(b"cairn-dir-v1\n");
    for e in &tree.entries {
        let (ty, payload) = match &e.kind {
            SourceEntryKind::File(c) => ('f', c.sha256.hex()),
            SourceEntryKind::Dir => ('d', String::new()),
            SourceEntryKind::Symlink { target } => ('l', target.clone()),
            SourceEntryKind::Hardlink { target } => ('h', target.clone()),
        };
        hasher.update(format!("{ty} {:04o} {}\0{payload}\n", e.mode, e.rel_path).as_bytes());
    }
    Sha256Digest::from_hasher(hasher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn make_tree(root: &Path, order: &[&str]) {
        for name in order {
            let p = root.join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, name.as_bytes()).unwrap();
        }
        std::os::unix::fs::symlink("../a", root.join("d/link")).unwrap();
    }

    #[test]
    fn digest_ignores_creation_order_times_and_non_exec_mode_bits() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        make_tree(a.path(), &["a", "d/x", "d/y", "a-b"]);
        make_tree(b.path(), &["d/y", "a-b", "d/x", "a"]);
        fs::set_permissions(b.path().join("a"), fs::Permissions::from_mode(0o600)).unwrap();
        let f = fs::File::options()
            .write(true)
            .open(b.path().join("d/x"))
            .unwrap();
        f.set_modified(std::time::UNIX_EPOCH).unwrap();
        let (HostSnapshot::Dir(ta), HostSnapshot::Dir(tb)) = (
            snapshot(a.path(), None).unwrap(),
            snapshot(b.path(), None).unwrap(),
        ) else {
            panic!("expected directories")
        };
        assert_eq!(dir_digest(&ta), dir_digest(&tb));
        let paths: Vec<_> = ta.entries.iter().map(|e| &*e.rel_path).collect();
        assert_eq!(paths, ["a", "a-b", "d", "d/link", "d/x", "d/y"]);
    }

    #[test]
    fn digest_changes_with_content_exec_bit_and_link_target() {
        let a = tempfile::tempdir().unwrap();
        make_tree(a.path(), &["a", "d/x"]);
        let digest = || match snapshot(a.path(), None).unwrap() {
            HostSnapshot::Dir(t) => dir_digest(&t),
            HostSnapshot::File(_) => panic!("dir"),
        };
        let d0 = digest();
        fs::set_permissions(a.path().join("a"), fs::Permissions::from_mode(0o744)).unwrap();
        let d1 = digest();
        fs::write(a.path().join("d/x"), b"changed").unwrap();
        let d2 = digest();
        fs::remove_file(a.path().join("d/link")).unwrap();
        std::os::unix::fs::symlink("../other", a.path().join("d/link")).unwrap();
        let d3 = digest();
        assert!(d0 != d1 && d1 != d2 && d2 != d3);
    }

    #[test]
    fn hard_links_point_at_the_first_path_in_sorted_order() {
        let a = tempfile::tempdir().unwrap();
        fs::write(a.path().join("z"), b"same").unwrap();
        fs::hard_link(a.path().join("z"), a.path().join("b")).unwrap();
        let HostSnapshot::Dir(t) = snapshot(a.path(), None).unwrap() else {
            panic!("dir")
        };
        assert!(matches!(t.entries[0].kind, SourceEntryKind::File(_)));
        assert_eq!(&*t.entries[0].rel_path, "b");
        assert_eq!(
            t.entries[1].kind,
            SourceEntryKind::Hardlink { target: "b".into() }
        );
    }

    #[test]
    fn special_files_are_refused_by_name() {
        let a = tempfile::tempdir().unwrap();
        let fifo = a.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let err = snapshot(a.path(), None).err().unwrap().to_string();
        assert!(err.contains("pipe") && err.contains("FIFO"), "{err}");
    }
}
