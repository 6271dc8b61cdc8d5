//! Writing a [`LayerTree`] as a canonical tar stream.
//!
//! POSIX ustar headers, entries in the tree's byte-wise order, directories with a
//! trailing `/`, mtime = epoch, numeric uid/gid from the tree, empty user and group
//! names, no atime/ctime, no xattrs. A PAX extended header is added only where ustar
//! cannot hold a value (long path or link name, uid/gid or size too large), with its
//! records in a fixed order. File bytes are streamed and checked against the digest
//! recorded when the source was resolved.

use super::tree::{FileData, LayerTree, TreeEntryKind};
use crate::diag::{Diagnose, Interrupted};
use crate::digest::HashingReader;
use sha1::{Digest as _, Sha1};
use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing the layer failed: {0}")]
    Write(#[source] io::Error),
    #[error("{path} changed while the image was being built (expected {expected}, read {actual})")]
    SourceChanged {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Interrupted(#[from] Interrupted),
}

impl Diagnose for TarError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            TarError::SourceChanged { .. } => {
                Some("do not modify sources during a build; run the build again".into())
            }
            TarError::Read { .. } | TarError::Write(_) | TarError::Interrupted(_) => None,
        }
    }
}

const USTAR_MAX_OCTAL_7: u64 = 0o7777777;
const USTAR_MAX_OCTAL_11: u64 = 0o77777777777;

/// Writes the layer's tar stream to `out` and returns it. `on_bytes` is told how many
/// content bytes were written, for progress display; `sha1` receives one item per
/// entry, in the tree's order: the SHA-1 of a regular file's bytes, `None` otherwise.
pub fn write_tar<W: Write>(
    tree: &LayerTree,
    epoch: u64,
    out: W,
    cancel: &AtomicBool,
    on_bytes: &dyn Fn(u64),
    sha1: &mut Vec<Option<[u8; 20]>>,
) -> Result<W, TarError> {
    let mut builder = tar::Builder::new(out);
    for (key, entry) in &tree.entries {
        if cancel.load(Ordering::Relaxed) {
            return Err(Interrupted.into());
        }
        let mut header = tar::Header::new_ustar();
        let mut pax: Vec<(&str, String)> = Vec::new();
        let (entry_type, size, link) = match &entry.kind {
            TreeEntryKind::File(FileData::Source(c)) => (tar::EntryType::Regular, c.size, None),
            TreeEntryKind::File(FileData::Inline(bytes)) => {
                (tar::EntryType::Regular, bytes.len() as u64, None)
            }
            TreeEntryKind::Dir => (tar::EntryType::Directory, 0, None),
            TreeEntryKind::Symlink { target } => {
                (tar::EntryType::Symlink, 0, Some(target.as_str()))
            }
            TreeEntryKind::Hardlink { target } => (tar::EntryType::Link, 0, Some(target.as_str())),
            TreeEntryKind::Whiteout => (tar::EntryType::Regular, 0, None),
        };
        header.set_entry_type(entry_type);
        header.set_mode(entry.mode);
        header.set_mtime(epoch.min(USTAR_MAX_OCTAL_11));

        let name = if entry.kind == TreeEntryKind::Dir {
            format!("{key}/")
        } else {
            key.clone()
        };
        if !set_ustar_name(&mut header, name.as_bytes()) {
            pax.push(("path", name.clone()));
            // ustar readers that ignore PAX still see a truncated, recognisable name.
            set_ustar_name(&mut header, truncate_utf8(&name, 100).as_bytes());
        }
        if let Some(link) = link {
            if link.len() <= 100 {
                header
                    .set_link_name_literal(link.as_bytes())
                    .map_err(TarError::Write)?;
            } else {
                pax.push(("linkpath", link.to_string()));
                header
                    .set_link_name_literal(truncate_utf8(link, 100).as_bytes())
                    .map_err(TarError::Write)?;
            }
        }
        for (key, value, set) in [
            (
                "uid",
                entry.owner.uid,
                &mut header_set_uid as &mut dyn FnMut(&mut tar::Header, u64),
            ),
            ("gid", entry.owner.gid, &mut header_set_gid),
        ] {
            let value = u64::from(value);
            if value > USTAR_MAX_OCTAL_7 {
                pax.push((key, value.to_string()));
                set(&mut header, 0);
            } else {
                set(&mut header, value);
            }
        }
        if size > USTAR_MAX_OCTAL_11 {
            pax.push(("size", size.to_string()));
            header.set_size(0);
        } else {
            header.set_size(size);
        }
        header.set_cksum();

        if !pax.is_empty() {
            pax.sort();
            append_pax(&mut builder, &name, &pax)?;
        }

        match &entry.kind {
            TreeEntryKind::File(FileData::Source(content)) => {
                let path = content.path_in(entry.origin.rel_path());
                let file = std::fs::File::open(&path).map_err(|source| TarError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let mut reader = ProgressReader {
                    inner: HashingReader::new(file.take(content.size)),
                    on_bytes,
                    sha1: Sha1::new(),
                };
                builder
                    .append(&header, &mut reader)
                    .map_err(TarError::Write)?;
                let file_sha1 = reader.sha1.finalize().into();
                let (digest, read) = reader.inner.finish();
                sha1.push(Some(file_sha1));
                if digest != content.sha256 || read != content.size {
                    return Err(TarError::SourceChanged {
                        path: path.into_owned(),
                        expected: format!("{} ({} bytes)", content.sha256, content.size),
                        actual: format!("{digest} ({read} bytes)"),
                    });
                }
            }
            TreeEntryKind::File(FileData::Inline(bytes)) => {
                builder
                    .append(&header, &bytes[..])
                    .map_err(TarError::Write)?;
                sha1.push(Some(Sha1::digest(bytes).into()));
                on_bytes(bytes.len() as u64);
            }
            _ => {
                builder
                    .append(&header, io::empty())
                    .map_err(TarError::Write)?;
                sha1.push(None);
            }
        }
    }
    builder.into_inner().map_err(TarError::Write)
}

fn header_set_uid(h: &mut tar::Header, v: u64) {
    h.set_uid(v);
}

fn header_set_gid(h: &mut tar::Header, v: u64) {
    h.set_gid(v);
}

/// Reports progress and computes the SHA-1 of what passes through.
struct ProgressReader<'a, R> {
    inner: R,
    on_bytes: &'a dyn Fn(u64),
    sha1: Sha1,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha1.update(&buf[..n]);
        (self.on_bytes)(n as u64);
        Ok(n)
    }
}

/// Stores `name` in the ustar `name` (100 bytes) and `prefix` (155 bytes) fields,
/// splitting at a `/`. Returns false if it does not fit.
fn set_ustar_name(header: &mut tar::Header, name: &[u8]) -> bool {
    let ustar = header.as_ustar_mut().expect("header is ustar");
    ustar.name = [0; 100];
    ustar.prefix = [0; 155];
    if name.len() <= 100 {
        ustar.name[..name.len()].copy_from_slice(name);
        return true;
    }
    // Split at the last `/` that leaves both halves within their limits; the
    // trailing `/` of a directory name belongs to the name part.
    let search_end = name.len().saturating_sub(1);
    for (i, &b) in name[..search_end].iter().enumerate().rev() {
        if b != b'/' {
            continue;
        }
        let (prefix, rest) = (&name[..i], &name[i + 1..]);
        if rest.len() > 100 {
            return false;
        }
        if prefix.len() <= 155 && !prefix.is_empty() {
            ustar.prefix[..prefix.len()].copy_from_slice(prefix);
            ustar.name[..rest.len()].copy_from_slice(rest);
            return true;
        }
    }
    false
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Appends a PAX extended header (`x`) carrying `records` for the entry named `name`.
fn append_pax<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    records: &[(&str, String)],
) -> Result<(), TarError> {
    let mut data = Vec::new();
    for (key, value) in records {
        // Each record is "<len> <key>=<value>\n", where <len> counts itself.
        let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
    }
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    let base = name
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(name);
    set_ustar_name(
        &mut header,
        truncate_utf8(&format!("PaxHeaders/{base}"), 100).as_bytes(),
    );
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_mtime(0);
    header.set_cksum();
    builder
        .append(&header, data.as_slice())
        .map_err(TarError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::tree::{Origin, TreeEntry};
    use crate::recipe::Owner;

    fn entry(kind: TreeEntryKind, mode: u32, uid: u32) -> TreeEntry {
        TreeEntry {
            kind,
            mode,
            owner: Owner { uid, gid: uid },
            origin: Origin::Parent,
        }
    }

    fn tree(entries: Vec<(&str, TreeEntry)>) -> LayerTree {
        LayerTree {
            name: "t".into(),
            entries: entries
                .into_iter()
                .map(|(k, e)| (k.to_string(), e))
                .collect(),
        }
    }

    fn write(tree: &LayerTree) -> Vec<u8> {
        write_tar(
            tree,
            1_700_000_000,
            Vec::new(),
            &AtomicBool::new(false),
            &|_| {},
            &mut Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn entries_read_back_with_exact_metadata() {
        let long_dir = "d".repeat(120);
        let long_file = format!("{long_dir}/{}", "f".repeat(150));
        let t = tree(vec![
            (
                "a",
                entry(
                    TreeEntryKind::File(FileData::Inline(b"hi".as_slice().into())),
                    0o4755,
                    7,
                ),
            ),
            (
                "b",
                entry(
                    TreeEntryKind::Symlink {
                        target: "../x/y".into(),
                    },
                    0o777,
                    0,
                ),
            ),
            (
                "c",
                entry(TreeEntryKind::Hardlink { target: "a".into() }, 0o644, 0),
            ),
            (&long_dir, entry(TreeEntryKind::Dir, 0o1777, 0)),
            (
                &long_file,
                entry(
                    TreeEntryKind::File(FileData::Inline(b"long".as_slice().into())),
                    0o644,
                    3_000_000,
                ),
            ),
        ]);
        let bytes = write(&t);
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let mut content = String::new();
            e.read_to_string(&mut content).unwrap();
            seen.push((
                e.path().unwrap().to_string_lossy().into_owned(),
                h.entry_type(),
                h.mode().unwrap(),
                e.header().uid().unwrap(),
                h.mtime().unwrap(),
                h.username_bytes().map(|u| u.to_vec()),
                e.link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned()),
                content,
            ));
        }
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[0].0, "a");
        assert_eq!(
            (seen[0].2, seen[0].3, seen[0].4),
            (0o4755, 7, 1_700_000_000)
        );
        assert_eq!(seen[0].5.as_deref(), Some(&b""[..]));
        assert_eq!(seen[0].7, "hi");
        assert_eq!(seen[1].6.as_deref(), Some("../x/y"));
        assert_eq!(
            (seen[2].1, seen[2].6.as_deref()),
            (tar::EntryType::Link, Some("a"))
        );
        assert_eq!(seen[3].0, format!("{long_dir}/"));
        assert_eq!(seen[3].2, 0o1777);
        assert_eq!(seen[4].0, long_file);
        assert_eq!((seen[4].3, seen[4].7.as_str()), (3_000_000, "long"));
    }

    #[test]
    fn ustar_split_names_do_not_need_pax() {
        let name = format!("{}/{}", "p".repeat(150), "n".repeat(90));
        let mut h = tar::Header::new_ustar();
        assert!(set_ustar_name(&mut h, name.as_bytes()));
        assert!(!set_ustar_name(&mut h, "x".repeat(101).as_bytes()));
    }

    #[test]
    fn a_source_that_changed_since_it_was_hashed_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"original").unwrap();
        let content = crate::snapshot::Content {
            location: crate::snapshot::Location::Path(std::sync::Arc::new(path.clone())),
            size: 8,
            sha256: crate::digest::Sha256Digest::of(b"original"),
        };
        std::fs::write(&path, b"tampered").unwrap();
        let t = tree(vec![(
            "f",
            entry(TreeEntryKind::File(FileData::Source(content)), 0o644, 0),
        )]);
        let err = write_tar(
            &t,
            0,
            Vec::new(),
            &AtomicBool::new(false),
            &|_| {},
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(err, TarError::SourceChanged { .. }), "{err}");
    }
}
