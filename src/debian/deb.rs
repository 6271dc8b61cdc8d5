//! Reading a `.deb` (an `ar` archive of `debian-binary`, `control.tar.*` and
//! `data.tar.*`) whose SHA-256 was already checked: the control stanza and md5sums
//! from the control tarball, and the file tree of the data tarball, unpacked by the
//! same code and under the same safety rules as archive sources
//! ([`crate::snapshot::archive`]): no absolute or `..` names, nothing through a symlink,
//! no device nodes or FIFOs (a package that ships one cannot be installed), setuid and
//! setgid bits kept as the package sets them. Maintainer scripts in the control
//! tarball are never run.

use super::DebianError;
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
    pub tree: SourceTree,
}

/// Reads the package at `path`, staging data members below `staging`.
pub fn read(path: &Path, name: &str, staging: &Path) -> Result<DebContents, DebianError> {
    let bad = |detail: String| DebianError::BadDeb {
        package: name.to_string(),
        detail,
    };
    let io_bad = |e: io::Error| bad(e.to_string());
    let file = File::open(path).map_err(io_bad)?;
    let mut ar = ar::Archive::new(BufReader::new(file));
    let mut control = None;
    let mut tree = None;
    let mut format_seen = false;
    while let Some(entry) = ar.next_entry() {
        let mut entry = entry.map_err(io_bad)?;
        let id = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let id = id.trim_end_matches('/');
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
            let (t, _) = archive::unpack(temp.path(), &staging.join("files"), Limits::DEFAULT)
                .map_err(|e| bad(format!("{id}: {e}")))?;
            tree = Some(t);
        }
    }
    if !format_seen {
        return Err(bad(
            "it has no `debian-binary` member: not a Debian package".into(),
        ));
    }
    let (control, md5sums) = control.ok_or_else(|| bad("it has no control tarball".into()))?;
    let tree = tree.ok_or_else(|| bad("it has no data tarball".into()))?;
    Ok(DebContents {
        control,
        md5sums,
        tree,
    })
}

/// `control` and `md5sums` from a control tarball (gzip, xz, zstd or plain).
fn read_control(bytes: &[u8]) -> io::Result<(String, Option<String>)> {
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
    let (mut control, mut md5sums) = (None, None);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path_bytes().into_owned();
        let name = path.strip_prefix(b"./").unwrap_or(&path);
        let slot = match name {
            b"control" => &mut control,
            b"md5sums" => &mut md5sums,
            _ => continue,
        };
        let mut text = String::new();
        entry.read_to_string(&mut text)?;
        *slot = Some(text);
    }
    let control = control
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no `control` file in it"))?;
    Ok((control, md5sums))
}
