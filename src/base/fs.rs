//! The file system of a base image, read from its layers as they are copied: what the
//! recipe's layers build on (parent directory modes, symlinks that must not be written
//! through, paths `remove:` may delete) and every regular file with its SHA-256 and
//! SHA-1, for the SBOM.

use crate::digest::Sha1Index;
use crate::digest::Sha256Digest;
use crate::oci::whiteout;
use crate::recipe::Owner;
use sha1::Digest as _;
use std::collections::BTreeMap;
use std::io::{self, Read};

/// The base image's file system after all its layers (whiteouts applied), keyed by
/// path relative to the root without a trailing `/` (`usr/bin/x`).
#[derive(Debug, Default, Clone)]
pub struct BaseFs {
    pub entries: BTreeMap<String, BaseEntry>,
    /// SHA-1 of every regular file's content, by SHA-256.
    pub sha1: Sha1Index,
    /// The content of the base's `etc/passwd` and `etc/group`, which `accounts:`
    /// extends rather than replaces.
    pub account_files: BTreeMap<String, Vec<u8>>,
}

/// The files whose content [`BaseFs`] keeps.
pub const ACCOUNT_FILES: [&str; 2] = ["etc/passwd", "etc/group"];
/// Larger account files are not kept (and so not merged): no real one is this big.
const ACCOUNT_FILE_LIMIT: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseEntry {
    pub kind: BaseKind,
    pub mode: u32,
    pub owner: Owner,
    /// Index of the base layer that wrote the entry (0 = the lowest).
    pub layer: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseKind {
    Dir,
    Symlink {
        target: String,
    },
    /// A regular file (or a hard link to one) with its content's digest.
    File {
        sha256: Sha256Digest,
        size: u64,
    },
    /// Device nodes, FIFOs: present, never a parent, not listed in the SBOM.
    Other,
}

/// The name of base layer `index` wherever cairn names layers (errors, SBOM traces).
pub fn layer_name(index: usize) -> String {
    format!("base:{index}")
}

/// Why a base layer's tar cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum BaseFsError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("member `{0}` leaves the image root")]
    Escapes(String),
    #[error("hard link `{0}` points to `{1}`, which no earlier member wrote")]
    DanglingHardlink(String, String),
}

impl BaseFs {
    /// Reads one uncompressed layer tar and applies it on top of what is there:
    /// first the layer's whiteouts, then its entries (a whiteout hides lower layers
    /// only).
    pub fn apply_layer(&mut self, index: usize, tar: impl Read) -> Result<(), BaseFsError> {
        let mut layer: BTreeMap<String, BaseEntry> = BTreeMap::new();
        let mut account_files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut whiteouts = Vec::new();
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            let key = normalise(&name).ok_or_else(|| BaseFsError::Escapes(name.clone()))?;
            if key.is_empty() {
                continue;
            }
            if let Some(w) = whiteout::whiteout(&key) {
                whiteouts.push(w);
                continue;
            }
            let header = entry.header();
            let mode = header.mode()? & 0o7777;
            let owner = Owner {
                uid: u32::try_from(header.uid()?).unwrap_or(u32::MAX),
                gid: u32::try_from(header.gid()?).unwrap_or(u32::MAX),
            };
            let kind = match header.entry_type() {
                tar::EntryType::Directory => BaseKind::Dir,
                tar::EntryType::Symlink => BaseKind::Symlink {
                    target: entry
                        .link_name()?
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                },
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()?
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let target_key =
                        normalise(&target).ok_or_else(|| BaseFsError::Escapes(target.clone()))?;
                    match layer.get(&target_key).or(self.entries.get(&target_key)) {
                        Some(e) => e.kind.clone(),
                        None => return Err(BaseFsError::DanglingHardlink(name, target)),
                    }
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.size();
                    let (sha256, sha1) =
                        if ACCOUNT_FILES.contains(&key.as_str()) && size <= ACCOUNT_FILE_LIMIT {
                            let mut bytes = Vec::with_capacity(size as usize);
                            entry.read_to_end(&mut bytes)?;
                            let hashes = hash_both(bytes.as_slice())?;
                            account_files.insert(key.clone(), bytes);
                            hashes
                        } else {
                            account_files.remove(&key);
                            hash_both(&mut entry)?
                        };
                    self.sha1.insert(sha256, sha1);
                    BaseKind::File { sha256, size }
                }
                // PAX and GNU long-name records are consumed by the tar reader.
                _ => BaseKind::Other,
            };
            layer.insert(
                key,
                BaseEntry {
                    kind,
                    mode,
                    owner,
                    layer: index,
                },
            );
        }
        // Read to the end, so that a compressed stream's checksum is checked.
        io::copy(&mut archive.into_inner(), &mut io::sink())?;
        for w in &whiteouts {
            whiteout::apply(&mut self.entries, w);
        }
        for (key, entry) in layer {
            if entry.kind != BaseKind::Dir {
                whiteout::remove_subtree(&mut self.entries, &key);
            }
            self.entries.insert(key, entry);
        }
        // Keep the content only of account files that are still there, as written
        // last.
        self.account_files.extend(account_files);
        let entries = &self.entries;
        self.account_files.retain(|key, bytes| {
            matches!(entries.get(key), Some(BaseEntry { kind: BaseKind::File { sha256, .. }, .. })
                if *sha256 == Sha256Digest::of(bytes))
        });
        Ok(())
    }
}

/// `./usr/bin/` -> `usr/bin`; `None` for a path with `..`.
fn normalise(name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn hash_both(mut r: impl Read) -> io::Result<(Sha256Digest, [u8; 20])> {
    let mut sha256 = sha2::Sha256::new();
    let mut sha1 = sha1::Sha1::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha256.update(&buf[..n]);
        sha1.update(&buf[..n]);
    }
    Ok((Sha256Digest::from_hasher(sha256), sha1.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory {
                0o1777
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn layers_apply_whiteouts_hard_links_and_keep_modes() {
        use tar::EntryType::*;
        let mut fs = BaseFs::default();
        fs.apply_layer(
            0,
            layer(&[
                ("tmp/", Directory, b"", ""),
                ("etc/motd", Regular, b"hi", ""),
                ("etc/old", Regular, b"old", ""),
                ("bin", Symlink, b"", "usr/bin"),
            ])
            .as_slice(),
        )
        .unwrap();
        fs.apply_layer(
            1,
            layer(&[
                ("etc/.wh.old", Regular, b"", ""),
                ("etc/hi", Link, b"", "etc/motd"),
            ])
            .as_slice(),
        )
        .unwrap();
        let keys: Vec<&str> = fs.entries.keys().map(String::as_str).collect();
        assert_eq!(keys, ["bin", "etc/hi", "etc/motd", "tmp"]);
        assert_eq!(fs.entries["tmp"].mode, 0o1777);
        assert_eq!(fs.entries["etc/hi"].kind, fs.entries["etc/motd"].kind);
        assert_eq!(fs.entries["etc/hi"].layer, 1);
        assert!(fs.sha1.contains_key(&Sha256Digest::of(b"hi")));
        assert!(matches!(fs.entries["bin"].kind, BaseKind::Symlink { .. }));
    }

    #[test]
    fn account_files_keep_the_content_of_their_last_version() {
        use tar::EntryType::*;
        let mut fs = BaseFs::default();
        fs.apply_layer(
            0,
            layer(&[("etc/passwd", Regular, b"root:x:0:0::/:/bin/sh\n", "")]).as_slice(),
        )
        .unwrap();
        fs.apply_layer(
            1,
            layer(&[("etc/passwd", Regular, b"new\n", "")]).as_slice(),
        )
        .unwrap();
        assert_eq!(fs.account_files["etc/passwd"], b"new\n");
        fs.apply_layer(2, layer(&[("etc/.wh.passwd", Regular, b"", "")]).as_slice())
            .unwrap();
        assert!(fs.account_files.is_empty());
    }

    #[test]
    fn member_names_normalise_and_dot_dot_is_refused() {
        assert_eq!(normalise("./usr/bin/").as_deref(), Some("usr/bin"));
        assert_eq!(normalise("/etc//motd").as_deref(), Some("etc/motd"));
        assert_eq!(normalise("usr/../../etc"), None);
    }
}
