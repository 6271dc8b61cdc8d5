//! Snapshots of `path:` sources on the host: a single file, or a directory walked
//! without following symlinks and sorted byte-wise.
//!
//! Host metadata never reaches the image: times, owners and most mode bits are
//! dropped. What a host file contributes is its bytes, its type, its link target and
//! whether the owner may execute it (0o755 vs 0o644, the one bit git records too), so a
//! fresh checkout under any umask gives the same digest.

use super::hash_index::{FileStamp, HashIndex};
use crate::digest::{sha256_reader, Sha256Digest};
use crate::snapshot::{Content, Location, SourceEntry, SourceEntryKind, SourceTree};
use rayon::prelude::*;
use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
/// unchanged since it was recorded, else by reading it. Also gives the index record to
/// keep for the next build, if any. `location` is `path`, as the content records it.
fn hash_file(
    path: &Path,
    location: Location,
    rel_path: &Arc<str>,
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
/// inside a directory are kept as symlinks. `index` saves reading unchanged files, and
/// keeps what this snapshot saw for the next build ([`HashIndex::save`]).
pub fn snapshot(path: &Path, index: Option<&HashIndex>) -> Result<HostSnapshot, HostError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.is_file() {
        let content = hash_file(
            path,
            Location::Path(Arc::new(path.into())),
            &"".into(),
            &meta,
            index,
        )?;
        let entry = SourceEntry {
            rel_path: "".into(),
            kind: SourceEntryKind::File(content),
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

/// What reading a directory tells about an entry, before it is `lstat`ed. No path:
/// it is the root joined with the entry's own, built again when examined, rather than
/// a second path per file held through the listing.
enum Listed {
    File,
    Dir,
    Symlink,
    Bad(Box<HostError>),
}

/// Lists everything below `dir` (whose path below the root is `rel`, empty for the
/// root) into `out`, without `lstat` (the type comes from the directory entry). Runs
/// on the calling thread (measured with glibc's malloc, a parallel listing cost a cold
/// build at 40,000 files 10 MiB more peak RSS). A failure is kept at the path it
/// concerns, so the caller reports the first in sorted order.
fn list(dir: &Path, rel: &str, out: &mut Vec<(Arc<str>, Listed)>) {
    let bad = |e: HostError| Listed::Bad(Box::new(e));
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) => return out.push((rel.into(), bad(io_err(dir)(e)))),
    };
    for item in read {
        let item = match item {
            Ok(item) => item,
            Err(e) => return out.push((rel.into(), bad(io_err(dir)(e)))),
        };
        let path = item.path();
        let Some(name) = item.file_name().to_str().map(str::to_string) else {
            out.push((rel.into(), bad(HostError::NotUtf8 { path })));
            continue;
        };
        let child: Arc<str> = if rel.is_empty() {
            name.into()
        } else {
            format!("{rel}/{name}").into()
        };
        let listed = match item.file_type() {
            Err(e) => bad(io_err(&path)(e)),
            Ok(ft) if ft.is_dir() => {
                list(&path, &child, out);
                Listed::Dir
            }
            Ok(ft) if ft.is_symlink() => Listed::Symlink,
            Ok(ft) if ft.is_file() => Listed::File,
            Ok(ft) => bad(HostError::Unsupported {
                path,
                kind: file_type_name(&ft),
            }),
        };
        out.push((child, listed));
    }
}

/// What examining a listed entry found.
struct Examined {
    kind: SourceEntryKind,
    mode: u32,
    /// (device, inode) of a file with several links.
    inode: Option<(u64, u64)>,
}

impl Examined {
    fn new(kind: SourceEntryKind, mode: u32) -> Self {
        Examined {
            kind,
            mode,
            inode: None,
        }
    }
}

/// `lstat`s (and hashes) one listed entry; runs on the worker threads. A file's index
/// record goes to the index's own list, not a small allocation per file beside its
/// content (freed, those left holes that kept 90 MB resident at a million files).
/// A directory file's content records its place as `root` + `rel` (see [`Location::InDir`]).
fn examine(
    root: &Arc<PathBuf>,
    rel: &Arc<str>,
    listed: Listed,
    index: Option<&HashIndex>,
) -> Result<Examined, HostError> {
    let path = || root.join(&**rel);
    match listed {
        Listed::Dir => Ok(Examined::new(SourceEntryKind::Dir, DIR_MODE)),
        Listed::Bad(e) => Err(*e),
        Listed::Symlink => {
            let path = path();
            let target = std::fs::read_link(&path).map_err(io_err(&path))?;
            let target = target
                .into_os_string()
                .into_string()
                .map_err(|_| HostError::NotUtf8 { path })?;
            Ok(Examined::new(SourceEntryKind::Symlink { target }, 0o777))
        }
        Listed::File => {
            let path = path();
            let meta = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
            if !meta.is_file() {
                // Replaced by something else since it was listed.
                return Err(HostError::Unsupported {
                    path,
                    kind: file_type_name(&meta.file_type()),
                });
            }
            let location = Location::InDir {
                dir: Arc::clone(root),
            };
            let content = hash_file(&path, location, rel, &meta, index)?;
            Ok(Examined {
                kind: SourceEntryKind::File(content),
                mode: normalised_file_mode(meta.permissions().mode()),
                inode: (meta.nlink() > 1).then(|| (meta.dev(), meta.ino())),
            })
        }
    }
}

fn snapshot_dir(root: &Path, index: Option<&HashIndex>) -> Result<SourceTree, HostError> {
    let mut listed = Vec::new();
    list(root, "", &mut listed);
    let shared_root: Arc<PathBuf> = Arc::new(root.into());
    // Byte-wise order of the whole path, independent of directory read order.
    listed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    // `lstat` and hash on all cores, straight into the source's entries (the order is
    // kept): at a million files a second list of what was found, converted after, was
    // the walk's peak. A failure leaves a placeholder; the first in sorted order is
    // reported.
    let first_error: Mutex<Option<(usize, HostError)>> = Mutex::new(None);
    let linked: Mutex<Vec<(usize, (u64, u64))>> = Mutex::new(Vec::new());
    let mut entries: Vec<SourceEntry> = listed
        .into_par_iter()
        .enumerate()
        .map(|(at, (rel_path, listed))| {
            let (kind, mode) = match examine(&shared_root, &rel_path, listed, index) {
                Ok(Examined { kind, mode, inode }) => {
                    if let Some(inode) = inode {
                        linked.lock().expect("not poisoned").push((at, inode));
                    }
                    (kind, mode)
                }
                Err(e) => {
                    let mut first = first_error.lock().expect("not poisoned");
                    if first.as_ref().is_none_or(|(earlier, _)| at < *earlier) {
                        *first = Some((at, e));
                    }
                    (SourceEntryKind::Dir, DIR_MODE)
                }
            };
            SourceEntry {
                rel_path,
                kind,
                mode,
                owner: None,
            }
        })
        .collect();
    if let Some((_, e)) = first_error.into_inner().expect("not poisoned") {
        return Err(e);
    }

    // The first path (in sorted order) of each multiply-linked inode carries the bytes;
    // later ones become hard links to it, so the result never depends on walk order.
    let mut linked = linked.into_inner().expect("not poisoned");
    linked.sort_unstable();
    let mut first_link: HashMap<(u64, u64), Arc<str>> = HashMap::new();
    for (at, inode) in linked {
        let entry = &mut entries[at];
        match first_link.get(&inode) {
            Some(target) => {
                entry.kind = SourceEntryKind::Hardlink {
                    target: target.to_string(),
                }
            }
            None => {
                first_link.insert(inode, Arc::clone(&entry.rel_path));
            }
        }
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
    // One record at a time into a reused buffer: tens of thousands of entries.
    let mut record: Vec<u8> = Vec::with_capacity(256);
    let mut hex = [0u8; 64];
    for e in &tree.entries {
        record.clear();
        let (ty, payload): (u8, &[u8]) = match &e.kind {
            SourceEntryKind::File(c) => {
                hex::encode_to_slice(c.sha256.as_bytes(), &mut hex).expect("64 hex digits fit");
                (b'f', &hex)
            }
            SourceEntryKind::Dir => (b'd', b""),
            SourceEntryKind::Symlink { target } => (b'l', target.as_bytes()),
            SourceEntryKind::Hardlink { target } => (b'h', target.as_bytes()),
        };
        record.push(ty);
        // The mode as at least four octal digits (`{:04o}`).
        if e.mode <= 0o7777 {
            record.push(b' ');
            for shift in [9, 6, 3, 0] {
                record.push(b'0' + ((e.mode >> shift) & 7) as u8);
            }
            record.push(b' ');
        } else {
            record.extend_from_slice(format!(" {:04o} ", e.mode).as_bytes());
        }
        record.extend_from_slice(e.rel_path.as_bytes());
        record.push(0);
        record.extend_from_slice(payload);
        record.push(b'\n');
        hasher.update(&record);
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

    #[test]
    fn dir_digest_is_sha256_of_the_documented_listing() {
        let a = tempfile::tempdir().unwrap();
        make_tree(a.path(), &["a", "d/x"]);
        fs::set_permissions(a.path().join("a"), fs::Permissions::from_mode(0o755)).unwrap();
        let HostSnapshot::Dir(t) = snapshot(a.path(), None).unwrap() else {
            panic!("dir")
        };
        let hex = |s: &str| Sha256Digest::of(s.as_bytes()).hex();
        let listing = format!(
            "cairn-dir-v1\nf 0755 a\0{}\nd 0755 d\0\nl 0777 d/link\0../a\nf 0644 d/x\0{}\n",
            hex("a"),
            hex("d/x")
        );
        assert_eq!(dir_digest(&t), Sha256Digest::of(listing.as_bytes()));
    }

    #[test]
    fn of_several_bad_entries_the_first_in_sorted_order_is_reported() {
        let a = tempfile::tempdir().unwrap();
        for dir in ["m", "z/y", "b/c/d"] {
            fs::create_dir_all(a.path().join(dir)).unwrap();
            let status = std::process::Command::new("mkfifo")
                .arg(a.path().join(dir).join("pipe"))
                .status()
                .unwrap();
            assert!(status.success());
        }
        for _ in 0..5 {
            let err = snapshot(a.path(), None).err().unwrap().to_string();
            assert!(err.contains("b/c/d/pipe"), "{err}");
        }
    }
}
