//! Safe unpacking of untrusted archive sources into a content-addressed staging area.
//!
//! [`unpack`] takes an archive file (tar, or tar compressed with gzip, zstd or xz; the
//! format is decided by magic bytes, never by the file name) and reads it in one
//! streaming pass; memory grows with the number of members, not their size (only GNU
//! long-name and PAX records are held whole, by the tar crate, and they are capped
//! before they are read). It reads under the rules of [`super::limits`], which
//! base-image layers share: name lengths, record sizes, and the entry and byte
//! [`Limits`] the recipe may raise.
//! It guarantees:
//! - Nothing is ever created at a member's path. A regular file's bytes go to
//!   `staging/<sha256-hex>` (temp file, then rename, so a staged name only ever holds
//!   the bytes it names); everything else is described in the returned [`SourceTree`].
//! - Every member name is relative and normalised (`./a//b/` becomes `a/b`), with no
//!   `..` component and no NUL; no member lies below a symlink member or a
//!   non-directory member of the same archive. A tree that passes can be laid out below
//!   any directory without leaving it. Symlink targets are kept verbatim and never
//!   followed: whether a target may point elsewhere depends on where the archive lands
//!   in the image, which the layers stage checks.
//! - The result never depends on member order: each path appears once (a directory may
//!   repeat with the same mode and owner), hard links point at an earlier regular file,
//!   and entries come back sorted byte-wise by path. Parent directories that the
//!   archive does not list are not invented here (the layers stage adds them).
//! - Device nodes, FIFOs and any other special member are refused, as are PAX sparse
//!   files (GNU sparse members are expanded).
//! - The whole file is read and checked: compressed streams to their end (so their
//!   checksums are verified, and data after them is refused, apart from the stream
//!   padding xz allows); a plain tar up to the end of the file, where anything after
//!   the end-of-archive marker is ignored, as GNU tar does. The returned digest covers
//!   every byte of the file.
//!
//! Kept from each member: path, type, permission bits (`mode & 0o7777`), numeric uid
//! and gid (PAX `uid`/`gid` included), link target and content. Ignored: mtimes (cairn
//! writes every time as the epoch), user and group names, xattrs, PAX global headers
//! and every PAX record other than `path`, `linkpath`, `size`, `uid` and `gid`.

use super::limits::{
    self, display_member as display_name, first_below, link_target, member_name, Budget,
    LimitError, Limits, MemberName as Name, NameError, Placed, RecordGuard, TreeSoFar,
};
use super::{Content, Location, SourceEntry, SourceEntryKind, SourceTree};
use crate::diag::Diagnose;
use crate::digest::{HashingReader, HashingWriter, Sha256Digest};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tar::EntryType;

const TAR_BLOCK: usize = 512;

/// Size of the buffers the archive is read through and member contents are copied
/// through on their way to staging.
const COPY_BUFFER: usize = 256 * 1024;

/// The tar stream format of an archive file, as told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Tar,
    TarGz,
    TarZst,
    TarXz,
}

impl ArchiveFormat {
    const GZIP_MAGIC: &'static [u8] = &[0x1f, 0x8b];
    const ZSTD_MAGIC: &'static [u8] = &[0x28, 0xb5, 0x2f, 0xfd];
    const XZ_MAGIC: &'static [u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
    /// Enough bytes to tell every format apart.
    const MAGIC_LEN: usize = 6;

    fn detect(magic: &[u8]) -> Self {
        if magic.starts_with(Self::GZIP_MAGIC) {
            Self::TarGz
        } else if magic.starts_with(Self::ZSTD_MAGIC) {
            Self::TarZst
        } else if magic.starts_with(Self::XZ_MAGIC) {
            Self::TarXz
        } else {
            Self::Tar
        }
    }

    /// Where the tar stream comes from, for messages about its content.
    fn content_description(self) -> &'static str {
        match self {
            Self::Tar => "the file",
            Self::TarGz => "its gzip-decompressed content",
            Self::TarZst => "its zstd-decompressed content",
            Self::TarXz => "its xz-decompressed content",
        }
    }
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tar => "tar",
            Self::TarGz => "tar.gz",
            Self::TarZst => "tar.zst",
            Self::TarXz => "tar.xz",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read archive `{}`: {source}", archive.display())]
    Read { archive: PathBuf, source: io::Error },

    #[error(
        "`{}` is not a tar archive (supported: tar, tar.gz, tar.zst, tar.xz): {detail}",
        archive.display()
    )]
    NotTar { archive: PathBuf, detail: String },

    #[error(
        "archive `{}` ({format}) is truncated or corrupt {place}: {detail}; \
         re-create or re-download it (and update its sha256)",
        archive.display()
    )]
    Corrupt {
        archive: PathBuf,
        format: ArchiveFormat,
        /// Where in the archive: "at its start", "inside member `x`", "after member `x`".
        place: String,
        detail: String,
    },

    #[error(
        "member `{member}` of archive `{}` {reason}; \
         cairn only unpacks relative names that stay inside the target directory",
        archive.display()
    )]
    UnsafeName {
        archive: PathBuf,
        member: String,
        reason: &'static str,
    },

    #[error(
        "member `{member}` of archive `{}` lies below the symlink member `{symlink}`: \
         unpacking it would follow the symlink, possibly out of the target directory; \
         re-create the archive with a real directory at `{symlink}`",
        archive.display()
    )]
    ThroughSymlink {
        archive: PathBuf,
        member: String,
        symlink: String,
    },

    #[error(
        "member `{member}` of archive `{}` lies below member `{parent}`, which is not a \
         directory; re-create the archive with only one of them",
        archive.display()
    )]
    ParentNotDirectory {
        archive: PathBuf,
        member: String,
        parent: String,
    },

    #[error(
        "hard link `{member}` in archive `{}` is invalid: {reason}; a hard link must name \
         a regular file archived before it",
        archive.display()
    )]
    BadHardlink {
        archive: PathBuf,
        member: String,
        reason: String,
    },

    #[error("symlink `{member}` in archive `{}` {reason}", archive.display())]
    BadSymlink {
        archive: PathBuf,
        member: String,
        reason: &'static str,
    },

    #[error(
        "member `{member}` appears twice in the archive `{}`; cairn requires each path \
         once so the result never depends on member order (a directory may repeat only \
         with the same mode and owner); re-create the archive without the duplicate",
        archive.display()
    )]
    Duplicate { archive: PathBuf, member: String },

    /// `refusal` says why cairn refuses the member and what to do instead; it is part
    /// of the message, since the diagnostic's hint is about archive sources in general.
    #[error("member `{member}` of archive `{}` is {kind}; {refusal}", archive.display())]
    UnsupportedType {
        archive: PathBuf,
        member: String,
        kind: String,
        refusal: &'static str,
    },

    #[error("member `{member}` of archive `{}` has an invalid header: {reason}", archive.display())]
    BadHeader {
        archive: PathBuf,
        member: String,
        reason: String,
    },

    #[error("archive `{}`: {source}", archive.display())]
    Limit {
        archive: PathBuf,
        source: LimitError,
    },

    #[error(
        "cannot stage content of archive `{}` in `{}`: {source}",
        archive.display(),
        path.display()
    )]
    Staging {
        archive: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
}

/// A limit's hint says how to raise it or why it cannot be; other errors leave the
/// hint to the caller, who knows what the archive is for.
impl Diagnose for ArchiveError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            ArchiveError::Limit { source, .. } => source.hint(),
            _ => None,
        }
    }
}

/// Reads the archive at `archive` (tar, tar.gz, tar.zst or tar.xz, detected by magic
/// bytes) within `limits`, writing each regular member's bytes to
/// `staging/<sha256-hex>` (creating `staging` if needed) and returning the sorted tree
/// of members plus the SHA-256 of the archive file itself.
pub fn unpack(
    archive: &Path,
    staging: &Path,
    limits: Limits,
) -> Result<(SourceTree, Sha256Digest), ArchiveError> {
    let read_error = |source| ArchiveError::Read {
        archive: archive.to_path_buf(),
        source,
    };
    let file = File::open(archive).map_err(read_error)?;
    fs::create_dir_all(staging).map_err(|source| ArchiveError::Staging {
        archive: archive.to_path_buf(),
        path: staging.to_path_buf(),
        source,
    })?;

    // Hash the raw file bytes: every read below, by whichever decoder, passes here.
    let mut raw = HashingReader::new(BufReader::with_capacity(COPY_BUFFER, file));
    let mut magic = [0u8; ArchiveFormat::MAGIC_LEN];
    let magic_len = read_up_to(&mut raw, &mut magic).map_err(read_error)?;
    let format = ArchiveFormat::detect(&magic[..magic_len]);
    let unpacker = Unpacker {
        archive,
        staging,
        staging_shared: Arc::new(staging.to_path_buf()),
        format,
        limits,
    };

    let tree = {
        let stream = (&magic[..magic_len]).chain(&mut raw);
        let decoded: Box<dyn Read + '_> = match format {
            ArchiveFormat::Tar => Box::new(stream),
            // Concatenated gzip members form one valid gzip file (RFC 1952, 2.2).
            ArchiveFormat::TarGz => Box::new(flate2::read::MultiGzDecoder::new(stream)),
            ArchiveFormat::TarZst => {
                Box::new(zstd::stream::read::Decoder::new(stream).map_err(read_error)?)
            }
            // Like xz(1), accept concatenated streams.
            ArchiveFormat::TarXz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(stream)),
        };
        unpacker.read_tar(decoded)?
    };

    // Decoders stop at the end of their stream; the digest must still cover the file.
    io::copy(&mut raw, &mut io::sink()).map_err(read_error)?;
    let (digest, _) = raw.finish();
    Ok((tree, digest))
}

/// Fills as much of `buf` as the reader has, returning how much that was.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What happened on the decoded stream the tar parser reads, so that its errors can be
/// told apart (bad compression vs. bad tar) and a missing end-of-archive marker noticed.
#[derive(Default)]
struct StreamState {
    /// A read hit the end of the stream. The tar parser only reads what headers and
    /// sizes announce, so it gets here only if the stream ends before the marker.
    hit_end: Cell<bool>,
    /// A read below the tar parser (decompression or file I/O) failed.
    failed: Cell<bool>,
    /// The first tar block, to tell "not tar at all" from "tar with a bad member".
    first_block: RefCell<Vec<u8>>,
}

struct ObservedStream<'s, R> {
    inner: R,
    state: &'s StreamState,
}

impl<R: Read> Read for ObservedStream<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.state.hit_end.set(true);
                Ok(0)
            }
            Ok(n) => {
                let mut first_block = self.state.first_block.borrow_mut();
                let wanted = TAR_BLOCK.saturating_sub(first_block.len()).min(n);
                first_block.extend_from_slice(&buf[..wanted]);
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.state.failed.set(true);
                }
                Err(e)
            }
        }
    }
}

struct Unpacker<'a> {
    archive: &'a Path,
    staging: &'a Path,
    /// `staging`, shared by the location of every staged member.
    staging_shared: Arc<PathBuf>,
    format: ArchiveFormat,
    limits: Limits,
}

/// Member kinds cairn accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MemberKind {
    File,
    Dir,
    Symlink,
    Hardlink,
}

/// The members read so far, keyed (and so sorted) by normalised path. The key is the
/// entry's own `rel_path`, not a copy.
struct Members {
    by_path: BTreeMap<Arc<str>, SourceEntry>,
    /// The name of the last member read, as written in the archive.
    last: Option<String>,
    budget: Budget,
}

impl TreeSoFar for Members {
    fn placed(&self, path: &str) -> Option<Placed> {
        self.by_path.get(path).map(|e| match e.kind {
            SourceEntryKind::Dir => Placed::Dir,
            SourceEntryKind::Symlink { .. } => Placed::Symlink,
            SourceEntryKind::File(_) | SourceEntryKind::Hardlink { .. } => Placed::Other,
        })
    }

    fn member_below(&self, path: &str) -> Option<&str> {
        first_below(&self.by_path, path)
    }
}

impl Unpacker<'_> {
    fn read_tar(&self, decoded: impl Read) -> Result<SourceTree, ArchiveError> {
        let state = StreamState::default();
        let mut stream = ObservedStream {
            inner: decoded,
            state: &state,
        };
        let mut members = Members {
            by_path: BTreeMap::new(),
            last: None,
            budget: Budget::new(self.limits),
        };
        let mut buffer = vec![0u8; COPY_BUFFER];
        let guard = RecordGuard::default();
        {
            let mut tar = tar::Archive::new(guard.wrap(&mut stream));
            let mut entries = tar
                .entries()
                .map_err(|e| self.tar_error(e, &state, &members))?;
            while let Some(entry) = guard.next_member(&mut entries) {
                let mut entry = entry.map_err(|e| match guard.refusal(place_after(&members)) {
                    Some(source) => self.limit(source),
                    None => self.tar_error(e, &state, &members),
                })?;
                self.add_member(&mut entry, &mut members, &mut buffer)?;
                // The guard finds the next header after this member's data.
                io::copy(&mut entry, &mut io::sink()).map_err(|e| {
                    self.corrupt(
                        format!("inside member `{}`", members.last.as_deref().unwrap_or("")),
                        e.to_string(),
                    )
                })?;
            }
        }

        if state.hit_end.get() {
            return Err(if state.first_block.borrow().is_empty() {
                self.not_tar(format!("{} is empty", self.format.content_description()))
            } else {
                self.corrupt(
                    place_after(&members),
                    "the tar stream ends without its end-of-archive marker".to_string(),
                )
            });
        }
        // Read to the end of the decoded stream: that is where decoders check their
        // checksums (gzip CRC-32, xz and zstd checks).
        io::copy(&mut stream, &mut io::sink()).map_err(|e| {
            self.corrupt(
                "after the tar end-of-archive marker".to_string(),
                e.to_string(),
            )
        })?;
        Ok(SourceTree {
            entries: members.by_path.into_values().collect(),
        })
    }

    fn add_member<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        members: &mut Members,
        buffer: &mut [u8],
    ) -> Result<(), ArchiveError> {
        let name_bytes = entry.path_bytes().into_owned();
        let member = display_name(&name_bytes);
        members.last = Some(member.clone());

        let header = entry.header();
        let entry_type = header.entry_type();
        let kind = match entry_type {
            // Global PAX records only carry defaults (times, names) that cairn ignores.
            EntryType::XGlobalHeader => return Ok(()),
            // GNU tar's rule, from old BSD tar: a "file" whose name ends in `/` is a
            // directory.
            EntryType::Regular | EntryType::Continuous if name_bytes.ends_with(b"/") => {
                MemberKind::Dir
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => MemberKind::File,
            EntryType::Directory => MemberKind::Dir,
            EntryType::Symlink => MemberKind::Symlink,
            EntryType::Link => MemberKind::Hardlink,
            other => return Err(self.unsupported_type(member, other)),
        };
        let mode = header
            .mode()
            .map_err(|e| self.bad_header(&member, "mode", e))?
            & 0o7777;
        let owner = (
            id_field(header.uid()).map_err(|e| self.bad_header(&member, "uid", e))?,
            id_field(header.gid()).map_err(|e| self.bad_header(&member, "gid", e))?,
        );
        members
            .budget
            .add_bytes(entry.size(), &member)
            .map_err(|e| self.limit(e))?;
        if kind == MemberKind::File && self.is_pax_sparse(entry, &member)? {
            return Err(ArchiveError::UnsupportedType {
                archive: self.archive.to_path_buf(),
                member,
                kind: "a PAX-format sparse file (GNU.sparse.* records)".to_string(),
                refusal: "cairn reads GNU-format sparse members but not PAX ones; re-create the \
                       archive without --sparse, or with --format=gnu",
            });
        }

        let rel_path = match member_name(&name_bytes) {
            Ok(Name::Path(path)) => path,
            Ok(Name::Root) if kind == MemberKind::Dir => return Ok(()),
            Ok(Name::Root) => {
                return Err(
                    self.unsafe_name(member, "names the archive root but is not a directory")
                )
            }
            Err(NameError::Unsafe(reason)) => return Err(self.unsafe_name(member, reason)),
            Err(NameError::TooLong(e)) => return Err(self.limit(e)),
        };

        if let Some(existing) = members.by_path.get(rel_path.as_str()) {
            let same_directory = kind == MemberKind::Dir
                && existing.kind == SourceEntryKind::Dir
                && existing.mode == mode
                && existing.owner == Some(owner);
            return if same_directory {
                Ok(())
            } else {
                Err(ArchiveError::Duplicate {
                    archive: self.archive.to_path_buf(),
                    member,
                })
            };
        }
        let added = self.check_placement(&rel_path, kind, members)?;
        members
            .budget
            .add_entries(added, &member)
            .map_err(|e| self.limit(e))?;

        let entry_kind = match kind {
            MemberKind::Dir => SourceEntryKind::Dir,
            MemberKind::File => SourceEntryKind::File(self.stage(entry, &member, buffer)?),
            MemberKind::Symlink => SourceEntryKind::Symlink {
                target: self.symlink_target(entry, &member)?,
            },
            MemberKind::Hardlink => SourceEntryKind::Hardlink {
                target: self.hardlink_target(entry, &member, members)?,
            },
        };
        let rel_path: Arc<str> = rel_path.into();
        members.by_path.insert(
            Arc::clone(&rel_path),
            SourceEntry {
                rel_path,
                kind: entry_kind,
                mode,
                owner: Some(owner),
            },
        );
        Ok(())
    }

    /// Refuses a member below a symlink or non-directory member, whichever of the two
    /// the archive lists first; gives the number of entries it adds to the tree
    /// ([`limits::place`]).
    fn check_placement(
        &self,
        rel_path: &str,
        kind: MemberKind,
        members: &Members,
    ) -> Result<u64, ArchiveError> {
        let placed = match kind {
            MemberKind::Dir => Placed::Dir,
            MemberKind::Symlink => Placed::Symlink,
            MemberKind::File | MemberKind::Hardlink => Placed::Other,
        };
        limits::place(members, rel_path, placed).map_err(|blocked| {
            if blocked.parent_is_symlink {
                ArchiveError::ThroughSymlink {
                    archive: self.archive.to_path_buf(),
                    member: blocked.member,
                    symlink: blocked.parent,
                }
            } else {
                ArchiveError::ParentNotDirectory {
                    archive: self.archive.to_path_buf(),
                    member: blocked.member,
                    parent: blocked.parent,
                }
            }
        })
    }

    /// Copies a regular member's bytes to `staging/<sha256-hex>`. A member that fits in
    /// `buffer` is hashed there first and written only if no earlier member had the same
    /// bytes: an archive of a million empty files stages one file, not a million
    /// temporary files.
    fn stage<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        member: &str,
        buffer: &mut [u8],
    ) -> Result<Content, ArchiveError> {
        let staging_error = |path: &Path, source| ArchiveError::Staging {
            archive: self.archive.to_path_buf(),
            path: path.to_path_buf(),
            source,
        };
        let inside = || format!("inside member `{member}`");
        let expected_size = entry.size();
        let short = |size: u64| {
            self.corrupt(
                inside(),
                format!("the archive ends after {size} of its {expected_size} bytes"),
            )
        };
        let new_temp = || {
            tempfile::Builder::new()
                .prefix(".member-")
                .tempfile_in(self.staging)
                .map_err(|e| staging_error(self.staging, e))
        };
        let is_staged =
            |sha256: &Sha256Digest| fs::symlink_metadata(self.staging.join(sha256.hex())).is_ok();
        let small = usize::try_from(expected_size)
            .ok()
            .filter(|&len| len <= buffer.len());
        let (sha256, temp) = if let Some(len) = small {
            let read = read_up_to(entry, &mut buffer[..len])
                .map_err(|e| self.corrupt(inside(), e.to_string()))?;
            if read != len {
                return Err(short(read as u64));
            }
            let sha256 = Sha256Digest::of(&buffer[..len]);
            if is_staged(&sha256) {
                (sha256, None)
            } else {
                let mut temp = new_temp()?;
                temp.write_all(&buffer[..len])
                    .map_err(|e| staging_error(temp.path(), e))?;
                (sha256, Some(temp))
            }
        } else {
            let mut temp = new_temp()?;
            let temp_path = temp.path().to_path_buf();
            let mut writer = HashingWriter::new(temp.as_file_mut());
            loop {
                let n = match entry.read(buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(self.corrupt(inside(), e.to_string())),
                };
                writer
                    .write_all(&buffer[..n])
                    .map_err(|e| staging_error(&temp_path, e))?;
            }
            let (sha256, size, _) = writer.finish();
            if size != expected_size {
                return Err(short(size));
            }
            (sha256, (!is_staged(&sha256)).then_some(temp))
        };
        // Content-addressed: an existing file of that name already holds these bytes,
        // and dropping a temporary file deletes it.
        if let Some(temp) = temp {
            let location = self.staging.join(sha256.hex());
            temp.persist(&location)
                .map_err(|e| staging_error(&location, e.error))?;
        }
        Ok(Content {
            location: Location::Staged {
                dir: Arc::clone(&self.staging_shared),
            },
            size: expected_size,
            sha256,
        })
    }

    fn symlink_target<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        member: &str,
    ) -> Result<String, ArchiveError> {
        let target = entry.link_name_bytes().unwrap_or_default();
        link_target(member, &target).map_err(|e| match e {
            NameError::Unsafe(reason) => ArchiveError::BadSymlink {
                archive: self.archive.to_path_buf(),
                member: member.to_string(),
                reason,
            },
            NameError::TooLong(e) => self.limit(e),
        })
    }

    fn hardlink_target<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        member: &str,
        members: &Members,
    ) -> Result<String, ArchiveError> {
        let bad = |reason: String| ArchiveError::BadHardlink {
            archive: self.archive.to_path_buf(),
            member: member.to_string(),
            reason,
        };
        let raw_target = entry.link_name_bytes().unwrap_or_default();
        let shown = display_name(&raw_target);
        let target = match member_name(&raw_target) {
            Ok(Name::Path(target)) => target,
            Ok(Name::Root) => return Err(bad(format!("its target `{shown}` is the archive root"))),
            Err(NameError::Unsafe(reason)) => {
                return Err(bad(format!("its target `{shown}` {reason}")))
            }
            Err(NameError::TooLong(e)) => return Err(self.limit(e)),
        };
        match members.by_path.get(target.as_str()).map(|e| &e.kind) {
            Some(SourceEntryKind::File(_)) => Ok(target),
            Some(other) => Err(bad(format!(
                "its target `{shown}` is {}, not a regular file",
                kind_name(other)
            ))),
            None => Err(bad(format!(
                "its target `{shown}` is not an earlier member of the archive"
            ))),
        }
    }

    /// Whether the member is a PAX-format sparse file, whose data is a sparse map plus
    /// fragments that would be staged as if they were the file's bytes.
    fn is_pax_sparse<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        member: &str,
    ) -> Result<bool, ArchiveError> {
        let corrupt = |e: io::Error| {
            self.corrupt(
                format!("in the PAX header of member `{member}`"),
                e.to_string(),
            )
        };
        let Some(extensions) = entry.pax_extensions().map_err(corrupt)? else {
            return Ok(false);
        };
        for extension in extensions {
            if extension
                .map_err(corrupt)?
                .key_bytes()
                .starts_with(b"GNU.sparse.")
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Classifies an error from the tar parser.
    fn tar_error(&self, error: io::Error, state: &StreamState, members: &Members) -> ArchiveError {
        let detail = error.to_string();
        if state.failed.get() {
            // Decompression or reading failed: the bytes, not the tar layout, are bad.
            return self.corrupt(place_after(members), detail);
        }
        if !is_tar_header(&state.first_block.borrow()) {
            return self.not_tar(format!(
                "{} does not start with a valid tar header",
                self.format.content_description()
            ));
        }
        self.corrupt(place_after(members), detail)
    }

    fn not_tar(&self, detail: String) -> ArchiveError {
        ArchiveError::NotTar {
            archive: self.archive.to_path_buf(),
            detail,
        }
    }

    /// `detail` may quote header bytes (the tar crate's messages do): it is escaped.
    fn corrupt(&self, place: String, detail: String) -> ArchiveError {
        ArchiveError::Corrupt {
            archive: self.archive.to_path_buf(),
            format: self.format,
            place,
            detail: display_name(detail.as_bytes()),
        }
    }

    fn limit(&self, source: LimitError) -> ArchiveError {
        ArchiveError::Limit {
            archive: self.archive.to_path_buf(),
            source,
        }
    }

    fn unsafe_name(&self, member: String, reason: &'static str) -> ArchiveError {
        ArchiveError::UnsafeName {
            archive: self.archive.to_path_buf(),
            member,
            reason,
        }
    }

    fn bad_header(&self, member: &str, field: &str, error: io::Error) -> ArchiveError {
        ArchiveError::BadHeader {
            archive: self.archive.to_path_buf(),
            member: member.to_string(),
            reason: format!(
                "its {field} field: {}",
                display_name(error.to_string().as_bytes())
            ),
        }
    }

    fn unsupported_type(&self, member: String, entry_type: EntryType) -> ArchiveError {
        let (kind, refusal) = limits::unsupported_type(entry_type);
        ArchiveError::UnsupportedType {
            archive: self.archive.to_path_buf(),
            member,
            kind,
            refusal,
        }
    }
}

/// Whether `block` is a whole tar header with a correct checksum.
fn is_tar_header(block: &[u8]) -> bool {
    if block.len() != TAR_BLOCK {
        return false;
    }
    let mut header = tar::Header::new_old();
    header.as_mut_bytes().copy_from_slice(block);
    let stored = header.cksum();
    header.set_cksum();
    matches!((stored, header.cksum()), (Ok(stored), Ok(computed)) if stored == computed)
}

fn place_after(members: &Members) -> String {
    match &members.last {
        Some(member) => format!("after member `{member}`"),
        None => "at its start".to_string(),
    }
}

fn id_field(value: io::Result<u64>) -> io::Result<u32> {
    let value = value?;
    u32::try_from(value).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{value} does not fit in 32 bits"),
        )
    })
}

fn kind_name(kind: &SourceEntryKind) -> &'static str {
    match kind {
        SourceEntryKind::File(_) => "a regular file",
        SourceEntryKind::Dir => "a directory",
        SourceEntryKind::Symlink { .. } => "a symlink",
        SourceEntryKind::Hardlink { .. } => "a hard link",
    }
}

#[cfg(test)]
mod tests;
