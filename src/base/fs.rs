//! The file system of a base image, read from its layers as they are copied: what the
//! recipe's layers build on (parent directory modes, symlinks that must not be written
//! through, paths `remove:` may delete), every regular file with its SHA-256 and
//! SHA-1, for the SBOM, and the content of the few files cairn reads ([`kept_limit`]):
//! the account files and the dpkg status.

use crate::diag::Diagnose;
use crate::digest::Sha1Index;
use crate::digest::Sha256Digest;
use crate::oci::whiteout;
use crate::recipe::Owner;
use crate::snapshot::limits::{
    display_member, first_below, link_target, member_name, place, unsupported_type, Budget,
    LimitError, MemberName, NameError, Placed, RecordGuard, TreeSoFar,
};
use sha1::Digest as _;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Read};

/// The base image's file system after all its layers (whiteouts applied), keyed by
/// path relative to the root without a trailing `/` (`usr/bin/x`).
#[derive(Debug, Default, Clone)]
pub struct BaseFs {
    pub entries: BTreeMap<String, BaseEntry>,
    /// SHA-1 of every regular file's content, by SHA-256.
    pub sha1: Sha1Index,
    /// The content of the files [`kept_limit`] names, as written last: `etc/passwd`
    /// and `etc/group`, which `accounts:` extends rather than replaces, and the dpkg
    /// status, whose installed packages the recipe's `packages:` build on.
    pub kept_files: BTreeMap<String, Vec<u8>>,
    /// Files [`kept_limit`] names that were too large to keep, with their size: a
    /// reader that needs one refuses the base rather than read it as absent.
    pub too_large: BTreeMap<String, u64>,
    /// Bytes kept so far over all layers (rewritten files count each time), bounded by
    /// [`KEPT_TOTAL_LIMIT`].
    kept_bytes: u64,
}

/// The account files whose content [`BaseFs`] keeps.
pub const ACCOUNT_FILES: [&str; 2] = ["etc/passwd", "etc/group"];
/// dpkg's status file (Debian images).
pub const DPKG_STATUS: &str = "var/lib/dpkg/status";
/// The directory of per-package status files (distroless images, and cairn's own).
pub const DPKG_STATUS_DIR: &str = "var/lib/dpkg/status.d";
/// Larger account files are not kept (and so not merged): no real one is this big.
const ACCOUNT_FILE_LIMIT: u64 = 4 << 20;
/// A dpkg status of every package of Debian's archive is about 60 MiB; a real
/// image's is a few MiB at most.
pub const DPKG_STATUS_LIMIT: u64 = 64 << 20;
/// All kept files together: the bound on what the base's files cost in memory.
pub const KEPT_TOTAL_LIMIT: u64 = 128 << 20;

/// Whether [`BaseFs`] keeps the content of the file at `key`, and up to what size:
/// the account files, `var/lib/dpkg/status` and each file directly in
/// `var/lib/dpkg/status.d` (except the `.md5sums` lists).
pub fn kept_limit(key: &str) -> Option<u64> {
    if ACCOUNT_FILES.contains(&key) {
        return Some(ACCOUNT_FILE_LIMIT);
    }
    let status_d = key
        .strip_prefix(DPKG_STATUS_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| !name.contains('/') && !name.ends_with(".md5sums"));
    (key == DPKG_STATUS || status_d).then_some(DPKG_STATUS_LIMIT)
}

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
    #[error(
        "member `{member}` {reason}; cairn reads only relative names that stay inside the \
         image root"
    )]
    UnsafeName {
        member: String,
        reason: &'static str,
    },
    #[error("symlink `{member}` {reason}")]
    BadSymlink {
        member: String,
        reason: &'static str,
    },
    #[error("{0}")]
    Limit(#[from] LimitError),
    #[error("member `{member}` is {kind}; {refusal}")]
    UnsupportedType {
        member: String,
        kind: String,
        refusal: &'static str,
    },
    #[error(
        "member `{member}` lies below `{parent}`, which is a {} in this or an earlier \
         layer; unpacking it would write through it",
        if *parent_is_symlink { "symlink" } else { "non-directory" }
    )]
    Blocked {
        member: String,
        parent: String,
        parent_is_symlink: bool,
    },
    #[error("hard link `{0}` points to `{1}`, which no earlier member wrote")]
    DanglingHardlink(String, String),
}

/// A limit says how to raise it; the other refusals say the base image cannot be
/// used as it is.
impl Diagnose for BaseFsError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            BaseFsError::Limit(e) => e.hint(),
            BaseFsError::Io(_) => None,
            _ => Some(
                "base image layers are read under the rules of archive sources; rebuild \
                 the base image without this member, or use another base"
                    .into(),
            ),
        }
    }
}

impl BaseFs {
    /// The content of kept file `key` (e.g. `etc/passwd`) as text, if the base has it.
    pub fn kept_text(&self, key: &str) -> Option<String> {
        let bytes = self.kept_files.get(key)?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    }

    /// Reads one uncompressed layer tar and applies it on top of what is there:
    /// first the layer's whiteouts, then its entries (a whiteout hides lower layers
    /// only). Every member is read under the rules of archive sources
    /// ([`crate::snapshot::limits`]) and counted against `budget`, which the caller
    /// shares between the layers of one image.
    pub fn apply_layer(
        &mut self,
        index: usize,
        tar: impl Read,
        budget: &mut Budget,
    ) -> Result<(), BaseFsError> {
        let mut reader = LayerReader {
            index,
            lower: &self.entries,
            entries: BTreeMap::new(),
            sha1: Vec::new(),
            kept_files: BTreeMap::new(),
            too_large: BTreeMap::new(),
            kept_bytes: self.kept_bytes,
            whiteouts: Vec::new(),
            budget,
        };
        let guard = RecordGuard::default();
        let mut archive = tar::Archive::new(guard.wrap(tar));
        {
            let mut entries = archive.entries()?;
            let mut last = None;
            while let Some(entry) = guard.next_member(&mut entries) {
                let mut entry =
                    entry.map_err(|e| match guard.refusal(place_after(last.as_deref())) {
                        Some(refusal) => BaseFsError::Limit(refusal),
                        None => e.into(),
                    })?;
                last = Some(display_member(&entry.path_bytes()));
                reader.read_member(&mut entry)?;
                // The guard finds the next header after this member's data.
                io::copy(&mut entry, &mut io::sink())?;
            }
        }
        // Read to the end, so that a compressed stream's checksum is checked.
        io::copy(&mut archive.into_inner(), &mut io::sink())?;
        let LayerReader {
            entries: layer,
            sha1,
            kept_files,
            too_large,
            kept_bytes,
            whiteouts,
            ..
        } = reader;
        self.kept_bytes = kept_bytes;
        self.sha1.extend(sha1);
        for w in &whiteouts {
            whiteout::apply(&mut self.entries, w);
        }
        for (key, entry) in layer {
            if entry.kind != BaseKind::Dir {
                whiteout::remove_subtree(&mut self.entries, &key);
            }
            self.entries.insert(key, entry);
        }
        // Keep the content only of files that are still there, as written last.
        for key in kept_files.keys() {
            self.too_large.remove(key);
        }
        for key in too_large.keys() {
            self.kept_files.remove(key);
        }
        self.kept_files.extend(kept_files);
        self.too_large.extend(too_large);
        let entries = &self.entries;
        self.kept_files.retain(|key, bytes| {
            matches!(entries.get(key), Some(BaseEntry { kind: BaseKind::File { sha256, .. }, .. })
                if *sha256 == Sha256Digest::of(bytes))
        });
        self.too_large.retain(|key, size| {
            matches!(entries.get(key), Some(BaseEntry { kind: BaseKind::File { size: s, .. }, .. })
                if s == size)
        });
        Ok(())
    }
}

fn place_after(member: Option<&str>) -> String {
    match member {
        Some(member) => format!("after member `{member}`"),
        None => "at the layer's start".to_string(),
    }
}

/// One layer being read, over the layers below it.
struct LayerReader<'a> {
    index: usize,
    lower: &'a BTreeMap<String, BaseEntry>,
    entries: BTreeMap<String, BaseEntry>,
    /// SHA-1 of each regular file, by SHA-256.
    sha1: Vec<(Sha256Digest, [u8; 20])>,
    kept_files: BTreeMap<String, Vec<u8>>,
    too_large: BTreeMap<String, u64>,
    kept_bytes: u64,
    whiteouts: Vec<whiteout::Whiteout>,
    budget: &'a mut Budget,
}

fn placed(entry: &BaseEntry) -> Placed {
    match entry.kind {
        BaseKind::Dir => Placed::Dir,
        BaseKind::Symlink { .. } => Placed::Symlink,
        BaseKind::File { .. } => Placed::Other,
    }
}

impl TreeSoFar for LayerReader<'_> {
    fn placed(&self, path: &str) -> Option<Placed> {
        self.entries.get(path).map(placed)
    }

    fn member_below(&self, path: &str) -> Option<&str> {
        first_below(&self.entries, path)
    }

    fn beneath(&self, path: &str) -> Option<Placed> {
        self.lower.get(path).map(placed)
    }
}

impl LayerReader<'_> {
    fn read_member<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), BaseFsError> {
        let name_bytes = entry.path_bytes().into_owned();
        let member = display_member(&name_bytes);
        let entry_type = entry.header().entry_type();
        if entry_type == tar::EntryType::XGlobalHeader {
            // Global PAX records only carry defaults (times, names) that cairn ignores.
            return Ok(());
        }
        self.budget.add_bytes(entry.size(), &member)?;
        let key = match member_name(&name_bytes) {
            Ok(MemberName::Path(key)) => key,
            Ok(MemberName::Root) => return Ok(()),
            Err(NameError::Unsafe(reason)) => {
                return Err(BaseFsError::UnsafeName { member, reason })
            }
            Err(NameError::TooLong(e)) => return Err(e.into()),
        };
        if let Some(w) = whiteout::whiteout(&key) {
            self.budget.add_entries(1, &member)?;
            self.whiteouts.push(w);
            return Ok(());
        }
        let header = entry.header();
        let mode = header.mode()? & 0o7777;
        let owner = Owner {
            uid: u32::try_from(header.uid()?).unwrap_or(u32::MAX),
            gid: u32::try_from(header.gid()?).unwrap_or(u32::MAX),
        };
        let kind = match entry_type {
            tar::EntryType::Directory => BaseKind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous if name_bytes.ends_with(b"/") => {
                BaseKind::Dir
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let target = link_target(&member, &target).map_err(|e| match e {
                    NameError::Unsafe(reason) => BaseFsError::BadSymlink {
                        member: member.clone(),
                        reason,
                    },
                    NameError::TooLong(e) => e.into(),
                })?;
                BaseKind::Symlink { target }
            }
            tar::EntryType::Link => self.hardlink(entry, &member)?,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let size = entry.size();
                self.kept_files.remove(&key);
                self.too_large.remove(&key);
                let (sha256, sha1) = match kept_limit(&key) {
                    Some(limit) if size <= limit && self.kept_bytes + size <= KEPT_TOTAL_LIMIT => {
                        self.kept_bytes += size;
                        let mut bytes = Vec::with_capacity(size as usize);
                        entry.read_to_end(&mut bytes)?;
                        let hashes = hash_both(bytes.as_slice())?;
                        self.kept_files.insert(key.clone(), bytes);
                        hashes
                    }
                    Some(_) => {
                        self.too_large.insert(key.clone(), size);
                        hash_both(&mut *entry)?
                    }
                    None => hash_both(&mut *entry)?,
                };
                self.sha1.push((sha256, sha1));
                BaseKind::File { sha256, size }
            }
            other => {
                let (kind, refusal) = unsupported_type(other);
                return Err(BaseFsError::UnsupportedType {
                    member,
                    kind,
                    refusal,
                });
            }
        };
        let new = BaseEntry {
            kind,
            mode,
            owner,
            layer: self.index,
        };
        let added = place(self, &key, placed(&new)).map_err(|b| BaseFsError::Blocked {
            member: b.member,
            parent: b.parent,
            parent_is_symlink: b.parent_is_symlink,
        })?;
        // A path the same layer writes again replaces the first (as unpacking would).
        let replaced = u64::from(self.entries.contains_key(&key));
        self.budget
            .add_entries(added.saturating_sub(replaced), &member)?;
        self.entries.insert(key, new);
        Ok(())
    }

    /// A hard link is what its target (in this layer or below) is.
    fn hardlink<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        member: &str,
    ) -> Result<BaseKind, BaseFsError> {
        let raw_target = entry.link_name_bytes().unwrap_or_default();
        let target = display_member(&raw_target);
        let dangling = || BaseFsError::DanglingHardlink(member.to_string(), target.clone());
        let key = match member_name(&raw_target) {
            Ok(MemberName::Path(key)) => key,
            Ok(MemberName::Root) => return Err(dangling()),
            Err(NameError::Unsafe(reason)) => {
                return Err(BaseFsError::UnsafeName {
                    member: target.clone(),
                    reason,
                })
            }
            Err(NameError::TooLong(e)) => return Err(e.into()),
        };
        match self.entries.get(&key).or(self.lower.get(&key)) {
            Some(e) => Ok(e.kind.clone()),
            None => Err(dangling()),
        }
    }
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
    use crate::snapshot::limits::Limits;

    fn layer(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
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
            // Written raw so that names the builder would refuse (absolute ones) get in.
            let name = h.as_old_mut();
            name.name.fill(0);
            name.name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// Applies the layers in order, each under the default limits.
    fn apply(layers: &[Vec<u8>]) -> Result<BaseFs, BaseFsError> {
        let mut fs = BaseFs::default();
        let mut budget = Budget::new(Limits::DEFAULT);
        for (index, bytes) in layers.iter().enumerate() {
            fs.apply_layer(index, bytes.as_slice(), &mut budget)?;
        }
        Ok(fs)
    }

    #[test]
    fn layers_apply_whiteouts_hard_links_and_keep_modes() {
        use tar::EntryType::*;
        let fs = apply(&[
            layer(&[
                ("tmp/", Directory, b"", ""),
                ("etc/motd", Regular, b"hi", ""),
                ("etc/old", Regular, b"old", ""),
                ("bin", Symlink, b"", "usr/bin"),
            ]),
            layer(&[
                ("etc/.wh.old", Regular, b"", ""),
                ("etc/hi", Link, b"", "etc/motd"),
            ]),
        ])
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
    fn kept_files_keep_the_content_of_their_last_version() {
        use tar::EntryType::*;
        let first = layer(&[("etc/passwd", Regular, b"root:x:0:0::/:/bin/sh\n", "")]);
        let second = layer(&[("etc/passwd", Regular, b"new\n", "")]);
        let fs = apply(&[first.clone(), second.clone()]).unwrap();
        assert_eq!(fs.kept_files["etc/passwd"], b"new\n");
        let removed = layer(&[("etc/.wh.passwd", Regular, b"", "")]);
        let fs = apply(&[first, second, removed]).unwrap();
        assert!(fs.kept_files.is_empty());
    }

    #[test]
    fn the_dpkg_status_is_kept_in_both_layouts_and_its_size_is_bounded() {
        use tar::EntryType::*;
        let fs = apply(&[layer(&[
            ("var/lib/dpkg/status", Regular, b"Package: a\n", ""),
            ("var/lib/dpkg/status.d/b", Regular, b"Package: b\n", ""),
            (
                "var/lib/dpkg/status.d/b.md5sums",
                Regular,
                b"x  usr/b\n",
                "",
            ),
            ("var/lib/dpkg/status.d/sub/c", Regular, b"Package: c\n", ""),
            ("var/lib/dpkg/available", Regular, b"Package: d\n", ""),
        ])])
        .unwrap();
        let kept: Vec<&str> = fs.kept_files.keys().map(String::as_str).collect();
        assert_eq!(kept, ["var/lib/dpkg/status", "var/lib/dpkg/status.d/b"]);
        // Too large to keep: recorded with its size, until a later layer replaces it.
        let big = vec![b'x'; DPKG_STATUS_LIMIT as usize + 1];
        let huge = layer(&[("var/lib/dpkg/status", Regular, &big, "")]);
        let fs = apply(std::slice::from_ref(&huge)).unwrap();
        assert!(fs.kept_files.is_empty());
        assert_eq!(fs.too_large["var/lib/dpkg/status"], DPKG_STATUS_LIMIT + 1);
        let small = layer(&[("var/lib/dpkg/status", Regular, b"Package: a\n", "")]);
        let fs = apply(&[huge, small]).unwrap();
        assert!(fs.too_large.is_empty());
        assert_eq!(fs.kept_files["var/lib/dpkg/status"], b"Package: a\n");
    }

    #[test]
    fn base_layers_refuse_what_archive_sources_refuse() {
        use tar::EntryType::*;
        let absolute = apply(&[layer(&[("/etc/motd", Regular, b"hi", "")])]).unwrap_err();
        assert!(
            matches!(&absolute, BaseFsError::UnsafeName { member, reason }
                if member == "/etc/motd" && reason.contains("absolute")),
            "{absolute}"
        );
        let climbing = apply(&[layer(&[("usr/../../etc", Directory, b"", "")])]).unwrap_err();
        assert!(
            matches!(climbing, BaseFsError::UnsafeName { .. }),
            "{climbing}"
        );
        let device = apply(&[layer(&[("dev/sda", Block, b"", "")])]).unwrap_err();
        assert!(device.to_string().contains("a block device"), "{device}");
        let fifo = apply(&[layer(&[("run/pipe", Fifo, b"", "")])]).unwrap_err();
        assert!(fifo.to_string().contains("FIFO"), "{fifo}");
    }

    #[test]
    fn base_layers_refuse_members_below_a_symlink_in_any_layer() {
        use tar::EntryType::*;
        let blocked = |err: BaseFsError| match err {
            BaseFsError::Blocked {
                member,
                parent,
                parent_is_symlink,
            } => (member, parent, parent_is_symlink),
            other => panic!("{other}"),
        };
        // The symlink first, then a file below it, in one layer.
        let err = apply(&[layer(&[
            ("lib", Symlink, b"", "/etc"),
            ("lib/cron.d/x", Regular, b"x", ""),
        ])])
        .unwrap_err();
        assert_eq!(blocked(err), ("lib/cron.d/x".into(), "lib".into(), true));
        // The file first, then the symlink above it.
        let err = apply(&[layer(&[
            ("lib/x", Regular, b"x", ""),
            ("lib", Symlink, b"", "/etc"),
        ])])
        .unwrap_err();
        assert_eq!(blocked(err), ("lib/x".into(), "lib".into(), true));
        // The symlink in a lower layer.
        let err = apply(&[
            layer(&[("lib", Symlink, b"", "usr/lib")]),
            layer(&[("lib/x", Regular, b"x", "")]),
        ])
        .unwrap_err();
        assert_eq!(blocked(err), ("lib/x".into(), "lib".into(), true));
        // A later layer may replace the symlink with a directory and fill it.
        let fs = apply(&[
            layer(&[("lib", Symlink, b"", "usr/lib")]),
            layer(&[("lib", Directory, b"", ""), ("lib/x", Regular, b"x", "")]),
        ])
        .unwrap();
        assert_eq!(fs.entries["lib"].kind, BaseKind::Dir);
    }

    #[test]
    fn base_layers_share_one_budget() {
        use tar::EntryType::*;
        let mut fs = BaseFs::default();
        let mut budget = Budget::new(Limits {
            entries: 3,
            ..Limits::DEFAULT
        });
        let two = layer(&[("a", Regular, b"1", ""), ("b", Regular, b"2", "")]);
        fs.apply_layer(0, two.as_slice(), &mut budget).unwrap();
        let err = fs.apply_layer(1, two.as_slice(), &mut budget).unwrap_err();
        assert!(
            matches!(&err, BaseFsError::Limit(LimitError::TooManyEntries { member, limit: 3 }) if member == "b"),
            "{err}"
        );
    }
}
