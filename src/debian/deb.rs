//! Reading a `.deb` (an `ar` archive of `debian-binary`, `control.tar.*` and
//! `data.tar.*`) whose SHA-256 was already checked: the control stanza and md5sums
//! from the control tarball, and the file tree of the data tarball, unpacked by the
//! same code and under the same safety rules as archive sources
//! ([`crate::snapshot::archive`]): no absolute or `..` names, nothing through a symlink,
//! no device nodes or FIFOs (a package that ships one cannot be installed), setuid and
//! setgid bits kept as the package sets them. Maintainer scripts in the control
//! tarball are never run.

use super::dpkg_database::ControlMember;
use super::DebianError;
use crate::digest::Sha256Digest;
use crate::snapshot::limits::Limits;
use crate::snapshot::{archive, SourceTree};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// What cairn takes from a package file.
pub struct DebContents {
    /// The `control` file of the control tarball, as written.
    pub control: String,
    /// The `md5sums` file, if the package has one.
    pub md5sums: Option<String>,
    /// The `postinst` maintainer script, if the package has one (never run; cairn does
    /// what it can of it natively, see [`super::alternatives`]).
    pub postinst: Option<String>,
    /// Every maintainer script (`preinst`, `postinst`, `prerm`, `postrm`, `config`,
    /// `triggers`) the package has, by name, with the SHA-256 of its bytes.
    pub scripts: Vec<(String, Sha256Digest)>,
    /// Every member of the control tarball but `control`, as dpkg keeps them in its
    /// database ([`super::dpkg_database`]).
    pub control_members: Vec<ControlMember>,
    pub tree: SourceTree,
}

/// Reads the package at `path`, staging data members below `staging`; its data
/// tarball is held to `limits` (the recipe's, as archive sources are).
pub fn read(
    path: &Path,
    name: &str,
    staging: &Path,
    limits: Limits,
) -> Result<DebContents, DebianError> {
    let bad = |detail: String| DebianError::BadDeb {
        package: name.to_string(),
        detail,
    };
    let io_bad = |e: io::Error| bad(e.to_string());
    let file = File::open(path).map_err(io_bad)?;
    let mut ar = ArReader::new(BufReader::new(file)).map_err(io_bad)?;
    let mut control = None;
    let mut tree = None;
    let mut format_seen = false;
    while let Some((id, mut entry)) = ar.next_member().map_err(io_bad)? {
        let id = id.as_str();
        if id == "debian-binary" {
            let mut version = String::new();
            entry.read_to_string(&mut version).map_err(io_bad)?;
            if !version.starts_with("2.") {
                return Err(bad(format!("unsupported format `{}`", version.trim())));
            }
            format_seen = true;
        } else if id.starts_with("control.tar") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io_bad)?;
            control = Some(read_control(&bytes).map_err(|e| bad(format!("{id}: {e}")))?);
        } else if id.starts_with("data.tar") {
            // Staged as a file so that archive sources' unpacker (which decides the
            // compression by magic bytes) reads it.
            let mut temp = tempfile::Builder::new()
                .prefix(".data-")
                .tempfile_in(staging)
                .map_err(io_bad)?;
            io::copy(&mut entry, temp.as_file_mut()).map_err(io_bad)?;
            let (t, _) = archive::unpack(temp.path(), &staging.join("files"), limits)
                .map_err(|e| bad(format!("{id}: {e}")))?;
            tree = Some(t);
        }
    }
    if !format_seen {
        return Err(bad(
            "it has no `debian-binary` member: not a Debian package".into(),
        ));
    }
    let ControlFiles {
        control,
        md5sums,
        postinst,
        scripts,
        members: control_members,
    } = control.ok_or_else(|| bad("it has no control tarball".into()))?;
    let tree = tree.ok_or_else(|| bad("it has no data tarball".into()))?;
    Ok(DebContents {
        control,
        md5sums,
        postinst,
        scripts,
        control_members,
        tree,
    })
}

/// The members of an `ar` archive in the common format a `.deb` is written in
/// (deb(5)): `!<arch>\n`, then per member a 60-byte header (name, times, ids, mode,
/// decimal size, `` `\n ``) and the data, padded to an even length. GNU and BSD name
/// extensions (names starting with `/` or `#1/`), which no `.deb` uses, are refused:
/// their name tables are sized by the untrusted header.
struct ArReader<R> {
    inner: R,
    /// Data of the current member not read yet, then its padding byte: skipped before
    /// the next header.
    remaining: u64,
    padding: u64,
}

const AR_MAGIC: &[u8; 8] = b"!<arch>\n";
const AR_HEADER: usize = 60;

impl<R: Read> ArReader<R> {
    fn new(mut inner: R) -> io::Result<Self> {
        let mut magic = [0; 8];
        inner.read_exact(&mut magic)?;
        if &magic != AR_MAGIC {
            return Err(invalid(
                "it is not an ar archive (no `!<arch>` line)".into(),
            ));
        }
        Ok(ArReader {
            inner,
            remaining: 0,
            padding: 0,
        })
    }

    /// The next member's name and data; `None` at the end of the archive.
    fn next_member(&mut self) -> io::Result<Option<(String, ArMember<'_, R>)>> {
        let skip = self.remaining + self.padding;
        io::copy(&mut (&mut self.inner).take(skip), &mut io::sink())?;
        let mut header = [0; AR_HEADER];
        let mut filled = 0;
        while filled < AR_HEADER {
            match self.inner.read(&mut header[filled..])? {
                0 if filled == 0 => return Ok(None),
                0 => return Err(invalid("the archive ends inside a member header".into())),
                n => filled += n,
            }
        }
        if &header[58..60] != b"`\n" {
            return Err(invalid("a member header is damaged".into()));
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .to_string();
        if name.starts_with('/') || name.starts_with("#1/") {
            return Err(invalid(format!(
                "member `{name}` uses an ar name extension, which a Debian package never does"
            )));
        }
        let size: u64 = std::str::from_utf8(&header[48..58])
            .ok()
            .map(str::trim_end)
            .and_then(|size| size.parse().ok())
            .ok_or_else(|| invalid(format!("member `{name}` has no valid size")))?;
        self.remaining = size;
        self.padding = size % 2;
        let name = name.trim_end_matches('/').to_string();
        Ok(Some((name, ArMember { archive: self })))
    }
}

/// The data of the member [`ArReader::next_member`] returned.
struct ArMember<'a, R> {
    archive: &'a mut ArReader<R>,
}

impl<R: Read> Read for ArMember<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf
            .len()
            .min(usize::try_from(self.archive.remaining).unwrap_or(usize::MAX));
        if max == 0 {
            return Ok(0);
        }
        let n = self.archive.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(invalid("the archive ends inside a member".into()));
        }
        self.archive.remaining -= n as u64;
        Ok(n)
    }
}

fn invalid(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

/// The files cairn reads from a control tarball.
struct ControlFiles {
    control: String,
    md5sums: Option<String>,
    postinst: Option<String>,
    scripts: Vec<(String, Sha256Digest)>,
    members: Vec<ControlMember>,
}

/// The control tarball's members that dpkg would run (or, `triggers`, act on).
const MAINTAINER_SCRIPTS: [&str; 6] = [
    "config", "postinst", "postrm", "preinst", "prerm", "triggers",
];

/// `control`, `md5sums` and `postinst` from a control tarball (gzip, xz, zstd or plain).
fn read_control(bytes: &[u8]) -> io::Result<ControlFiles> {
    let decoded: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::read::XzDecoder::new(bytes))
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::new(bytes)?)
    } else {
        Box::new(bytes)
    };
    let mut tar = tar::Archive::new(decoded);
    let (mut control, mut md5sums, mut postinst) = (None, None, None);
    let (mut scripts, mut members) = (Vec::new(), Vec::new());
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path_bytes().into_owned();
        let name = path.strip_prefix(b"./").unwrap_or(&path);
        if entry.header().entry_type() != tar::EntryType::Regular || name.contains(&b'/') {
            continue;
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        if let Some(script) = MAINTAINER_SCRIPTS.iter().find(|s| s.as_bytes() == name) {
            scripts.push((script.to_string(), Sha256Digest::of(&bytes)));
            if *script == "postinst" {
                // Read for its `update-alternatives` calls only: a stray non-UTF-8 byte
                // in a comment must not make the package uninstallable.
                postinst = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        let text = || {
            String::from_utf8(bytes.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        };
        match name {
            b"control" => {
                control = Some(text()?);
                continue;
            }
            b"md5sums" => md5sums = Some(text()?),
            _ => {}
        }
        members.push(ControlMember {
            name: String::from_utf8_lossy(name).into_owned(),
            executable: entry.header().mode()? & 0o111 != 0,
            bytes,
        });
    }
    let control = control
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no `control` file in it"))?;
    scripts.sort();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ControlFiles {
        control,
        md5sums,
        postinst,
        scripts,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, size: &str) -> Vec<u8> {
        format!(
            "{name:<16}{:<12}{:<6}{:<6}{:<8}{size:<10}`\n",
            0, 0, 0, "100644"
        )
        .into_bytes()
    }

    #[test]
    fn maintainer_scripts_are_hashed_and_a_non_utf8_postinst_is_still_read() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            tar.append_data(&mut header, name, bytes).unwrap();
        };
        add("./control", b"Package: a\nVersion: 1\n");
        let postinst =
            b"#!/bin/sh\n# caf\xe9\nupdate-alternatives --install /usr/bin/x x /usr/bin/a 1\n";
        add("./postinst", postinst);
        add("./prerm", b"#!/bin/sh\n");
        let files = read_control(&tar.into_inner().unwrap()).unwrap();
        let names: Vec<_> = files.scripts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["postinst", "prerm"]);
        assert_eq!(files.scripts[0].1, Sha256Digest::of(postinst));
        assert!(files
            .postinst
            .unwrap()
            .contains("update-alternatives --install /usr/bin/x x /usr/bin/a 1"));
    }

    #[test]
    fn members_are_read_in_order_with_padding_skipped() {
        let mut bytes = AR_MAGIC.to_vec();
        bytes.extend(header("debian-binary", "4"));
        bytes.extend(b"2.0\n");
        bytes.extend(header("data.tar/", "3"));
        bytes.extend(b"abc\n");
        let mut ar = ArReader::new(&bytes[..]).unwrap();
        let (name, _) = ar.next_member().unwrap().unwrap();
        assert_eq!(name, "debian-binary");
        let (name, mut data) = ar.next_member().unwrap().unwrap();
        let mut text = String::new();
        data.read_to_string(&mut text).unwrap();
        assert_eq!((name.as_str(), text.as_str()), ("data.tar", "abc"));
        assert!(ar.next_member().unwrap().is_none());
    }

    #[test]
    fn a_gnu_name_table_of_any_size_is_refused_without_reading_it() {
        let mut bytes = AR_MAGIC.to_vec();
        bytes.extend(header("//", "9999999999"));
        let Err(e) = ArReader::new(&bytes[..]).unwrap().next_member() else {
            panic!("a GNU name table was accepted");
        };
        assert!(e.to_string().contains("ar name extension"), "{e}");
        let mut bytes = AR_MAGIC.to_vec();
        bytes.extend(header("/10000", "1"));
        assert!(ArReader::new(&bytes[..]).unwrap().next_member().is_err());
    }
}
