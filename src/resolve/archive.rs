//! Safe unpacking of untrusted archive sources into a content-addressed staging area.
//!
//! [`unpack`] takes an archive file (tar, or tar compressed with gzip, zstd or xz; the
//! format is decided by magic bytes, never by the file name) and reads it in one
//! streaming pass; memory grows with the number of members, not their size (only GNU
//! long-name and PAX records are held whole, by the tar crate).
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

use super::tree::{Content, SourceEntry, SourceEntryKind, SourceTree};
use crate::digest::{HashingReader, HashingWriter, Sha256Digest};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
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

    #[error("member `{member}` of archive `{}` is {kind}; {hint}", archive.display())]
    UnsupportedType {
        archive: PathBuf,
        member: String,
        kind: String,
        hint: &'static str,
    },

    #[error("member `{member}` of archive `{}` has an invalid header: {reason}", archive.display())]
    BadHeader {
        archive: PathBuf,
        member: String,
        reason: String,
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

/// Reads the archive at `archive` (tar, tar.gz, tar.zst or tar.xz, detected by magic
/// bytes), writing each regular member's bytes to `staging/<sha256-hex>` (creating
/// `staging` if needed) and returning the sorted tree of members plus the SHA-256 of
/// the archive file itself.
pub fn unpack(archive: &Path, staging: &Path) -> Result<(SourceTree, Sha256Digest), ArchiveError> {
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
        format,
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
    format: ArchiveFormat,
}

/// Member kinds cairn accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MemberKind {
    File,
    Dir,
    Symlink,
    Hardlink,
}

/// A member name after normalisation.
enum Name {
    /// `.`, `./` and the like: the directory the archive is unpacked in.
    Root,
    Path(String),
}

/// The members read so far, keyed (and so sorted) by normalised path.
struct Members {
    by_path: BTreeMap<String, SourceEntry>,
    /// The name of the last member read, as written in the archive.
    last: Option<String>,
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
        };
        let mut buffer = vec![0u8; COPY_BUFFER];
        {
            let mut tar = tar::Archive::new(&mut stream);
            let entries = tar
                .entries()
                .map_err(|e| self.tar_error(e, &state, &members))?;
            for entry in entries {
                let entry = entry.map_err(|e| self.tar_error(e, &state, &members))?;
                self.add_member(entry, &mut members, &mut buffer)?;
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
        mut entry: tar::Entry<'_, R>,
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
        if kind == MemberKind::File && self.is_pax_sparse(&mut entry, &member)? {
            return Err(ArchiveError::UnsupportedType {
                archive: self.archive.to_path_buf(),
                member,
                kind: "a PAX-format sparse file (GNU.sparse.* records)".to_string(),
                hint: "cairn reads GNU-format sparse members but not PAX ones; re-create the \
                       archive without --sparse, or with --format=gnu",
            });
        }

        let rel_path = match normalise(&name_bytes) {
            Ok(Name::Path(path)) => path,
            Ok(Name::Root) if kind == MemberKind::Dir => return Ok(()),
            Ok(Name::Root) => {
                return Err(
                    self.unsafe_name(member, "names the archive root but is not a directory")
                )
            }
            Err(reason) => return Err(self.unsafe_name(member, reason)),
        };

        if let Some(existing) = members.by_path.get(&rel_path) {
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
        self.check_placement(&rel_path, kind, members)?;

        let entry_kind = match kind {
            MemberKind::Dir => SourceEntryKind::Dir,
            MemberKind::File => SourceEntryKind::File(self.stage(&mut entry, &member, buffer)?),
            MemberKind::Symlink => SourceEntryKind::Symlink {
                target: self.symlink_target(&entry, &member)?,
            },
            MemberKind::Hardlink => SourceEntryKind::Hardlink {
                target: self.hardlink_target(&entry, &member, members)?,
            },
        };
        members.by_path.insert(
            rel_path.clone(),
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
    /// the archive lists first.
    fn check_placement(
        &self,
        rel_path: &str,
        kind: MemberKind,
        members: &Members,
    ) -> Result<(), ArchiveError> {
        let blocked = |member: &str, parent: &str, parent_is_symlink: bool| {
            if parent_is_symlink {
                ArchiveError::ThroughSymlink {
                    archive: self.archive.to_path_buf(),
                    member: member.to_string(),
                    symlink: parent.to_string(),
                }
            } else {
                ArchiveError::ParentNotDirectory {
                    archive: self.archive.to_path_buf(),
                    member: member.to_string(),
                    parent: parent.to_string(),
                }
            }
        };
        for (slash, _) in rel_path.match_indices('/') {
            let parent = &rel_path[..slash];
            match members.by_path.get(parent).map(|e| &e.kind) {
                None | Some(SourceEntryKind::Dir) => {}
                Some(other) => {
                    let is_symlink = matches!(other, SourceEntryKind::Symlink { .. });
                    return Err(blocked(rel_path, parent, is_symlink));
                }
            }
        }
        if kind != MemberKind::Dir {
            // Paths below `rel_path` sort right after `rel_path/`.
            let below = format!("{rel_path}/");
            if let Some((child, _)) = members.by_path.range(below.clone()..).next() {
                if child.starts_with(&below) {
                    return Err(blocked(child, rel_path, kind == MemberKind::Symlink));
                }
            }
        }
        Ok(())
    }

    /// Copies a regular member's bytes to `staging/<sha256-hex>`.
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
        let expected_size = entry.size();
        let mut temp = tempfile::Builder::new()
            .prefix(".member-")
            .tempfile_in(self.staging)
            .map_err(|e| staging_error(self.staging, e))?;
        let temp_path = temp.path().to_path_buf();
        let mut writer = HashingWriter::new(temp.as_file_mut());
        loop {
            let n = match entry.read(buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(self.corrupt(format!("inside member `{member}`"), e.to_string()))
                }
            };
            writer
                .write_all(&buffer[..n])
                .map_err(|e| staging_error(&temp_path, e))?;
        }
        let (sha256, size, _) = writer.finish();
        if size != expected_size {
            return Err(self.corrupt(
                format!("inside member `{member}`"),
                format!("the archive ends after {size} of its {expected_size} bytes"),
            ));
        }
        let location = self.staging.join(sha256.hex());
        // Content-addressed: an existing file of that name already holds these bytes,
        // and dropping `temp` deletes it.
        if fs::symlink_metadata(&location).is_err() {
            temp.persist(&location)
                .map_err(|e| staging_error(&location, e.error))?;
        }
        Ok(Content {
            location,
            size,
            sha256,
        })
    }

    fn symlink_target<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        member: &str,
    ) -> Result<String, ArchiveError> {
        let bad = |reason| ArchiveError::BadSymlink {
            archive: self.archive.to_path_buf(),
            member: member.to_string(),
            reason,
        };
        let target = entry.link_name_bytes().unwrap_or_default();
        if target.is_empty() {
            return Err(bad("has an empty target"));
        }
        if target.contains(&0) {
            return Err(bad("has a target containing a NUL byte"));
        }
        String::from_utf8(target.into_owned())
            .map_err(|_| bad("has a target that is not valid UTF-8 (cairn paths are UTF-8)"))
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
        let target = match normalise(&raw_target) {
            Ok(Name::Path(target)) => target,
            Ok(Name::Root) => return Err(bad(format!("its target `{shown}` is the archive root"))),
            Err(reason) => return Err(bad(format!("its target `{shown}` {reason}"))),
        };
        match members.by_path.get(&target).map(|e| &e.kind) {
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
        let (kind, hint) = match entry_type {
            EntryType::Char => ("a character device".to_string(), DEVICE_HINT),
            EntryType::Block => ("a block device".to_string(), DEVICE_HINT),
            EntryType::Fifo => (
                "a FIFO".to_string(),
                "cairn images cannot carry FIFOs; create them at runtime",
            ),
            other => (
                format!(
                    "of unsupported type `{}`",
                    char::from(other.as_byte()).escape_default()
                ),
                "cairn unpacks regular files, directories, symlinks and hard links; \
                 re-create the archive without this member",
            ),
        };
        ArchiveError::UnsupportedType {
            archive: self.archive.to_path_buf(),
            member,
            kind,
            hint,
        }
    }
}

const DEVICE_HINT: &str = "cairn images cannot carry device nodes; create them at runtime";

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

/// A member name for messages: lossy UTF-8 with control characters (NUL included)
/// escaped, so a hostile name cannot garble the terminal.
fn display_name(bytes: &[u8]) -> String {
    let mut shown = String::new();
    for c in String::from_utf8_lossy(bytes).chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// Normalises a member name (or hard-link target) to `/`-separated components without
/// `.` or empty ones, refusing anything that could point outside the archive.
fn normalise(bytes: &[u8]) -> Result<Name, &'static str> {
    if bytes.is_empty() {
        return Err("has an empty name");
    }
    if bytes.contains(&0) {
        return Err("has a name containing a NUL byte");
    }
    if bytes[0] == b'/' {
        return Err("has an absolute name");
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "has a name that is not valid UTF-8 (cairn paths are UTF-8)")?;
    let mut components = Vec::new();
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err("has a `..` component"),
            other => components.push(other),
        }
    }
    if components.is_empty() {
        Ok(Name::Root)
    } else {
        Ok(Name::Path(components.join("/")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
            let result = unpack(&self.archive, &self.staging);
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
            rel_path: rel_path.to_string(),
            kind,
            mode,
            owner: Some(owner),
        }
    }

    fn staged(fixture: &Fixture, data: &[u8]) -> SourceEntryKind {
        let sha256 = Sha256Digest::of(data);
        SourceEntryKind::File(Content {
            location: fixture.staging.join(sha256.hex()),
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
                let bytes = fs::read(&content.location).unwrap();
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
            .map(|e| (e.rel_path.as_str(), &e.kind))
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
            let (tree, digest) = unpack(&archive, &staging).unwrap();
            assert_eq!(
                ArchiveFormat::detect(&fs::read(&archive).unwrap()),
                expected_format
            );
            assert_eq!(digest, Sha256Digest::of(&fs::read(&archive).unwrap()));
            let stage = |data: &[u8]| {
                let sha256 = Sha256Digest::of(data);
                SourceEntryKind::File(Content {
                    location: staging.join(sha256.hex()),
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
        let bytes = tar_bytes(|tar| {
            file(tar, "one", 0o644, ROOT, b"same bytes");
            file(tar, "two", 0o755, (1, 1), b"same bytes");
            file(tar, "three", 0o644, ROOT, b"other bytes");
        });
        let fixture = Fixture::new(&bytes);
        let (tree, _) = fixture.unpack().unwrap();
        assert_eq!(fixture.staged_count(), 2);
        assert_eq!(tree.entries[0].kind, tree.entries[2].kind, "one and two");
    }

    #[test]
    fn a_directory_may_repeat_with_the_same_mode_and_owner() {
        let bytes = tar_bytes(|tar| {
            dir(tar, "d/", 0o755, ROOT);
            file(tar, "d/f", 0o644, ROOT, b"f");
            dir(tar, "./d", 0o755, ROOT);
        });
        let (tree, _) = Fixture::new(&bytes).unpack().unwrap();
        let paths: Vec<_> = tree.entries.iter().map(|e| e.rel_path.as_str()).collect();
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
        let err =
            unpack_err(|tar| file(tar, "/etc/passwd", 0o644, ROOT, b"root::0:0::/:/bin/sh\n"));
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
}
