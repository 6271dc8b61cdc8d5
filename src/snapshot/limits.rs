//! The rules every untrusted tar stream is read under, archive sources
//! ([`super::archive`]) and base-image layers (`base::fs`) alike, so that both refuse
//! the same inputs with the same messages:
//!
//! - names no file system holds: a name component over [`NAME_MAX`] bytes, a path over
//!   [`PATH_MAX`] bytes, a link target over [`LINK_MAX`] bytes; also absolute names,
//!   `..`, NUL and non-UTF-8 ([`member_name`], [`link_target`]);
//! - a PAX extended header or GNU long-name/long-link record over [`RECORD_MAX`]
//!   bytes, refused by its header before the tar crate reads it whole
//!   ([`RecordGuard`]);
//! - more than [`Limits::entries`] entries (members and the directories they imply) or
//!   [`Limits::bytes`] bytes of member data ([`Budget`]); the recipe's `limits:` raises
//!   both;
//! - a member below a symlink or another non-directory ([`place`]), checked in time
//!   linear in the length of its path: a parent already known to be safe ends the walk
//!   up, so every directory is walked past once.

use crate::diag::Diagnose;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::io::{self, Read};

/// Longest name component, in bytes (Linux `NAME_MAX`).
pub const NAME_MAX: usize = 255;
/// Longest member path, in bytes (Linux `PATH_MAX`).
pub const PATH_MAX: usize = 4096;
/// Longest symlink or hard-link target, in bytes.
pub const LINK_MAX: usize = 4096;
/// Largest PAX extended header (`x`), GNU long-name (`L`) or long-link (`K`) record.
/// They carry a path, a link target and attributes, with room here for large extended
/// attributes; the names inside are then held to [`PATH_MAX`] and [`LINK_MAX`], with
/// a more precise message.
pub const RECORD_MAX: u64 = 1 << 20;

/// How much one untrusted stream (an archive source, or a base image's layers
/// together) may hold. The defaults fit real root file systems and toolchains; the
/// recipe's `limits:` raises them for inputs the author trusts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries: members, plus the parent directories they imply.
    pub entries: u64,
    /// Bytes of member data, as the members' headers declare them.
    pub bytes: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        entries: 1_000_000,
        bytes: 8 << 30,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// A refused member or record; the message names the member and the limit, the
/// caller adds the archive or layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "member `{member}` has a name component of {length} bytes, over the limit of \
         {NAME_MAX}"
    )]
    LongComponent { member: String, length: usize },
    #[error("member `{member}` has a path of {length} bytes, over the limit of {PATH_MAX}")]
    LongPath { member: String, length: usize },
    #[error("link `{member}` has a target of {length} bytes, over the limit of {LINK_MAX}")]
    LongTarget { member: String, length: usize },
    #[error(
        "the header {place} declares {record} of {size} bytes, over the limit of {limit} \
         (refused before reading it)"
    )]
    LargeRecord {
        place: String,
        record: &'static str,
        size: u64,
        limit: u64,
    },
    #[error(
        "it has more than {limit} entries (members and the directories they imply), \
         at member `{member}`"
    )]
    TooManyEntries { member: String, limit: u64 },
    #[error("its members hold more than {} of data, at member `{member}`", size_text(*limit))]
    TooManyBytes { member: String, limit: u64 },
}

impl Diagnose for LimitError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            LimitError::LongComponent { .. }
            | LimitError::LongPath { .. }
            | LimitError::LongTarget { .. } => {
                "no file system holds such a name, and GNU tar cannot unpack a layer with \
                 one; re-create the archive with shorter names (this limit cannot be raised)"
                    .into()
            }
            LimitError::LargeRecord { .. } => {
                "such records carry a name and attributes, never this much; the archive is \
                 damaged or hostile: re-create it"
                    .into()
            }
            LimitError::TooManyEntries { .. } => format!(
                "if you trust this input, raise the limit in the recipe, e.g. \
                 `limits: {{ entries: 5000000 }}` (default {}; see docs/recipe.md)",
                Limits::DEFAULT.entries
            )
            .into(),
            LimitError::TooManyBytes { .. } => format!(
                "if you trust this input, raise the limit in the recipe, e.g. \
                 `limits: {{ bytes: 32GiB }}` (default {}; see docs/recipe.md)",
                size_text(Limits::DEFAULT.bytes)
            )
            .into(),
        })
    }
}

/// `8GiB`, `512MiB`, or a plain number of bytes: how limits are written in the recipe.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (unit, shift) in UNITS {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes} bytes")
}

/// Counts entries and bytes of one stream against its [`Limits`].
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    entries: u64,
    bytes: u64,
}

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Budget {
            limits,
            entries: 0,
            bytes: 0,
        }
    }

    /// Counts `count` more entries for `member`.
    pub fn add_entries(&mut self, count: u64, member: &str) -> Result<(), LimitError> {
        self.entries = self.entries.saturating_add(count);
        if self.entries > self.limits.entries {
            return Err(LimitError::TooManyEntries {
                member: member.to_string(),
                limit: self.limits.entries,
            });
        }
        Ok(())
    }

    /// Counts `count` more bytes of data for `member`, before they are read.
    pub fn add_bytes(&mut self, count: u64, member: &str) -> Result<(), LimitError> {
        self.bytes = self.bytes.saturating_add(count);
        if self.bytes > self.limits.bytes {
            return Err(LimitError::TooManyBytes {
                member: member.to_string(),
                limit: self.limits.bytes,
            });
        }
        Ok(())
    }
}

/// Why a member name or link target is refused.
#[derive(Debug)]
pub enum NameError {
    /// It could point outside the target or is not a name cairn handles.
    Unsafe(&'static str),
    TooLong(LimitError),
}

/// A member name after normalisation.
#[derive(Debug, PartialEq, Eq)]
pub enum MemberName {
    /// `.`, `./` and the like: the directory the stream is unpacked in.
    Root,
    Path(String),
}

/// Normalises a member name (or hard-link target) to `/`-separated components without
/// `.` or empty ones, refusing anything that could point outside the target and names
/// over [`NAME_MAX`] or [`PATH_MAX`].
pub fn member_name(bytes: &[u8]) -> Result<MemberName, NameError> {
    if bytes.is_empty() {
        return Err(NameError::Unsafe("has an empty name"));
    }
    if bytes.contains(&0) {
        return Err(NameError::Unsafe("has a name containing a NUL byte"));
    }
    if bytes[0] == b'/' {
        return Err(NameError::Unsafe("has an absolute name"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| {
        NameError::Unsafe("has a name that is not valid UTF-8 (cairn paths are UTF-8)")
    })?;
    let mut path = String::with_capacity(text.len());
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(NameError::Unsafe("has a `..` component")),
            other if other.len() > NAME_MAX => {
                return Err(NameError::TooLong(LimitError::LongComponent {
                    member: display_member(bytes),
                    length: other.len(),
                }))
            }
            other => {
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(other);
            }
        }
    }
    if path.len() > PATH_MAX {
        return Err(NameError::TooLong(LimitError::LongPath {
            member: display_member(bytes),
            length: path.len(),
        }));
    }
    Ok(if path.is_empty() {
        MemberName::Root
    } else {
        MemberName::Path(path)
    })
}

/// A symlink's target as text: non-empty, without NUL, UTF-8, at most [`LINK_MAX`]
/// bytes. Where it points is checked where the stream lands in the image.
pub fn link_target(member: &str, target: &[u8]) -> Result<String, NameError> {
    if target.is_empty() {
        return Err(NameError::Unsafe("has an empty target"));
    }
    if target.len() > LINK_MAX {
        return Err(NameError::TooLong(LimitError::LongTarget {
            member: member.to_string(),
            length: target.len(),
        }));
    }
    if target.contains(&0) {
        return Err(NameError::Unsafe("has a target containing a NUL byte"));
    }
    String::from_utf8(target.to_vec()).map_err(|_| {
        NameError::Unsafe("has a target that is not valid UTF-8 (cairn paths are UTF-8)")
    })
}

/// Messages quote at most this many characters of a member name.
const SHOWN_NAME_MAX: usize = 200;

/// A member name for messages: lossy UTF-8 with control characters (NUL included)
/// escaped, so a hostile name cannot garble the terminal, and clipped, so a long one
/// cannot flood it.
pub fn display_member(bytes: &[u8]) -> String {
    let mut shown = String::new();
    for (count, c) in String::from_utf8_lossy(bytes).chars().enumerate() {
        if count == SHOWN_NAME_MAX {
            shown.push_str(&format!("... ({} bytes in all)", bytes.len()));
            break;
        }
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// What a member of a type cairn refuses is, and what to do instead: cairn reads
/// regular files, directories, symlinks and hard links only.
pub fn unsupported_type(entry_type: tar::EntryType) -> (String, &'static str) {
    const DEVICE_REFUSAL: &str = "cairn images cannot carry device nodes; create them at runtime";
    match entry_type {
        tar::EntryType::Char => ("a character device".to_string(), DEVICE_REFUSAL),
        tar::EntryType::Block => ("a block device".to_string(), DEVICE_REFUSAL),
        tar::EntryType::Fifo => (
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
    }
}

/// What a path is in the tree read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Dir,
    Symlink,
    /// A file, hard link, or anything else that cannot hold members.
    Other,
}

/// The tree a stream's members go into, as [`place`] needs to see it.
pub trait TreeSoFar {
    /// What this stream's members made `path`, if any.
    fn placed(&self, path: &str) -> Option<Placed>;
    /// A member of this stream below `path`, if there is one.
    fn member_below(&self, path: &str) -> Option<&str>;
    /// What `path` is beneath this stream (an earlier layer), if anything.
    fn beneath(&self, _path: &str) -> Option<Placed> {
        None
    }
}

/// A member that would lie below a symlink or non-directory.
#[derive(Debug, PartialEq, Eq)]
pub struct Blocked {
    pub member: String,
    pub parent: String,
    pub parent_is_symlink: bool,
}

/// Checks that a member at `path` (of kind `kind`) lies below directories only, and
/// that a non-directory has no member below it; gives the number of entries it adds
/// to the tree: itself (unless a member below it already implied it as a directory)
/// and the parent directories nothing implied before.
///
/// Walks up from the nearest parent and stops at the first one this stream already
/// made a directory or already has a member below: that one was checked, up to the
/// root, when it or that member was placed (and a non-directory placed above it later
/// would have been refused for having a member below). So each directory is walked
/// past once per stream, and the work is linear in the names read.
pub fn place(tree: &impl TreeSoFar, path: &str, kind: Placed) -> Result<u64, Blocked> {
    let blocked = |member: &str, parent: &str, kind: Placed| Blocked {
        member: member.to_string(),
        parent: parent.to_string(),
        parent_is_symlink: kind == Placed::Symlink,
    };
    let mut implied = 0;
    for (slash, _) in path.rmatch_indices('/') {
        let parent = &path[..slash];
        match tree.placed(parent) {
            Some(Placed::Dir) => break,
            Some(kind) => return Err(blocked(path, parent, kind)),
            None if tree.member_below(parent).is_some() => break,
            None => {}
        }
        match tree.beneath(parent) {
            None => implied += 1,
            Some(Placed::Dir) => {}
            Some(kind) => return Err(blocked(path, parent, kind)),
        }
    }
    let below = tree.member_below(path);
    if let (Some(child), false) = (below, kind == Placed::Dir) {
        return Err(blocked(child, path, kind));
    }
    Ok(implied + u64::from(below.is_none()))
}

/// The first key of `map` strictly below `path`, if any (keys below `a` sort right
/// after `a/`).
pub fn first_below<'m, K: std::borrow::Borrow<str> + Ord, V>(
    map: &'m std::collections::BTreeMap<K, V>,
    path: &str,
) -> Option<&'m str> {
    use std::ops::Bound;
    let below = format!("{path}/");
    map.range::<str, _>((Bound::Included(below.as_str()), Bound::Unbounded))
        .next()
        .map(|(key, _)| key.borrow())
        .filter(|key| key.starts_with(&below))
}

/// Follows the tar headers that pass from a stream to the tar crate, and refuses a PAX
/// extended header or GNU long-name/long-link record by the size its header declares,
/// before the tar crate reads (and holds) the record. Shared (by reference) between
/// the [`Guarded`] reader inside the tar crate's archive and the loop over members.
///
/// The guard knows where headers are because the loop keeps one rule: it reads each
/// member's data to its end before asking [`RecordGuard::next_member`] for the next
/// one. The next header then starts at the next 512-byte boundary; each extension
/// header's size says where the one after it starts, up to the member's own header,
/// and the guard confirms that the tar crate found the member where it did.
#[derive(Default)]
pub struct RecordGuard {
    /// Bytes the tar crate has read.
    position: Cell<u64>,
    /// Where the next header starts, while the guard follows the headers before a
    /// member.
    next_header: Cell<Option<u64>>,
    /// The bytes of that header seen so far.
    header: RefCell<Vec<u8>>,
    /// Where the member's own header was found.
    member_header: Cell<Option<u64>>,
    /// The record refused: its kind, declared size and limit.
    refused: Cell<Option<(&'static str, u64, u64)>>,
}

const TAR_BLOCK: u64 = 512;

impl RecordGuard {
    /// Wraps the stream the tar crate will read.
    pub fn wrap<R: Read>(&self, inner: R) -> Guarded<'_, R> {
        Guarded { inner, guard: self }
    }

    /// The next member of `entries`, read from the stream [`RecordGuard::wrap`]
    /// wrapped; the previous member's data must have been read to its end. On an
    /// error, [`RecordGuard::refusal`] says whether the guard refused a record.
    pub fn next_member<'a, R: Read>(
        &self,
        entries: &mut tar::Entries<'a, R>,
    ) -> Option<io::Result<tar::Entry<'a, R>>> {
        self.expect_header();
        let entry = entries.next()?;
        Some(entry.and_then(|entry| {
            self.check_member(entry.raw_header_position())?;
            Ok(entry)
        }))
    }

    /// The previous member's data was read to its end: the next header starts at the
    /// next block boundary.
    fn expect_header(&self) {
        let at = self.position.get().div_ceil(TAR_BLOCK) * TAR_BLOCK;
        self.next_header.set(Some(at));
        self.header.borrow_mut().clear();
        self.member_header.set(None);
    }

    /// The refusal, as the error to report, if the guard refused a record; `place`
    /// says where ("after member `x`").
    pub fn refusal(&self, place: String) -> Option<LimitError> {
        self.refused
            .get()
            .map(|(record, size, limit)| LimitError::LargeRecord {
                place,
                record,
                size,
                limit,
            })
    }

    /// Whether the tar crate's member, whose header starts at `header_position`, is
    /// the one the guard followed the headers to.
    fn check_member(&self, header_position: u64) -> io::Result<()> {
        if self.member_header.get() == Some(header_position) {
            return Ok(());
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the tar headers cannot be followed to the member at byte {header_position}"),
        ))
    }

    fn observe(&self, mut bytes: &[u8]) -> io::Result<()> {
        let mut start = self.position.get();
        self.position.set(start + bytes.len() as u64);
        while let Some(at) = self.next_header.get() {
            let end = start + bytes.len() as u64;
            if end <= at {
                return Ok(());
            }
            let skip = at.saturating_sub(start) as usize;
            bytes = &bytes[skip..];
            start += skip as u64;
            let mut header = self.header.borrow_mut();
            let take = (TAR_BLOCK as usize - header.len()).min(bytes.len());
            header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            start += take as u64;
            if header.len() < TAR_BLOCK as usize {
                return Ok(());
            }
            let parsed = tar::Header::from_byte_slice(&header);
            let kind = parsed.entry_type();
            let recognised = parsed.as_gnu().is_some() || parsed.as_ustar().is_some();
            let record = match kind {
                _ if !recognised => None,
                tar::EntryType::GNULongName => Some("a GNU long-name record"),
                tar::EntryType::GNULongLink => Some("a GNU long-link record"),
                tar::EntryType::XHeader => Some("a PAX extended header"),
                _ => None,
            };
            let limit = RECORD_MAX;
            // A size the tar crate cannot read is its error to report.
            let (Some(record), Ok(size)) = (record, parsed.entry_size()) else {
                self.member_header.set(Some(at));
                self.next_header.set(None);
                return Ok(());
            };
            if size > limit {
                self.refused.set(Some((record, size, limit)));
                self.next_header.set(None);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{record} of {size} bytes is over the limit of {limit}"),
                ));
            }
            header.clear();
            self.next_header
                .set(Some(at + TAR_BLOCK + size.div_ceil(TAR_BLOCK) * TAR_BLOCK));
        }
        Ok(())
    }
}

/// The stream the tar crate reads, watched by a [`RecordGuard`].
pub struct Guarded<'g, R> {
    inner: R,
    guard: &'g RecordGuard,
}

impl<R: Read> Read for Guarded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((record, size, limit)) = self.guard.refused.get() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{record} of {size} bytes is over the limit of {limit}"),
            ));
        }
        let n = self.inner.read(buf)?;
        self.guard.observe(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
