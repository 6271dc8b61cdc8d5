//! The `newc` cpio format the kernel unpacks an initramfs from
//! (Documentation/driver-api/early-userspace/buffer-format.rst): per entry a 110-byte
//! ASCII header (`070701` and thirteen 8-digit hexadecimal fields), the name with its
//! NUL padded to 4 bytes, the data padded to 4 bytes; `TRAILER!!!` last. Written from
//! sorted entries with fixed inode numbers, owner 0:0 and one time, so the same entries
//! give the same bytes.

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// What one entry is.
pub enum CpioData<'a> {
    Dir,
    File(&'a [u8]),
    Symlink(&'a str),
}

/// One entry: its path without a leading `/` (`usr/sbin/veritysetup`), its permission
/// bits and its data.
pub struct CpioEntry<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub data: CpioData<'a>,
}

/// The archive of `entries`, in the order given (parents before children), every
/// time `mtime`.
pub fn write<'a>(entries: impl IntoIterator<Item = CpioEntry<'a>>, mtime: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ino = 0u32;
    for entry in entries {
        ino += 1;
        let (kind, nlink, data) = match entry.data {
            CpioData::Dir => (S_IFDIR, 2, &[][..]),
            CpioData::File(bytes) => (S_IFREG, 1, bytes),
            CpioData::Symlink(target) => (S_IFLNK, 1, target.as_bytes()),
        };
        let mode = kind | (entry.mode & 0o7777);
        push_entry(&mut out, ino, mode, nlink, mtime, entry.path, data);
    }
    push_entry(&mut out, 0, 0, 1, 0, "TRAILER!!!", &[]);
    out
}

fn push_entry(
    out: &mut Vec<u8>,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    name: &str,
    data: &[u8],
) {
    let size = u32::try_from(data.len()).expect("an initrd member under 4 GiB");
    let name_size = u32::try_from(name.len() + 1).expect("a short name");
    // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check.
    let fields = [
        ino, mode, 0, 0, nlink, mtime, size, 0, 0, 0, 0, name_size, 0,
    ];
    out.extend_from_slice(b"070701");
    for field in fields {
        out.extend_from_slice(format!("{field:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    out.resize(out.len().next_multiple_of(4), 0);
}

/// One entry read back: its path, its mode with the file type, and its data (a
/// symbolic link's target).
#[derive(Debug, PartialEq, Eq)]
pub struct ReadEntry<'a> {
    pub path: &'a str,
    pub mode: u32,
    pub data: &'a [u8],
}

impl ReadEntry<'_> {
    pub fn is_file(&self) -> bool {
        self.mode & 0o170_000 == S_IFREG
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & 0o170_000 == S_IFLNK
    }
}

/// The entries of a `newc` archive, up to its trailer; `Err` says what is wrong and
/// where. The bytes may come from anywhere: every field and length is checked against
/// what is there.
pub fn read(bytes: &[u8]) -> Result<Vec<ReadEntry<'_>>, String> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    loop {
        let header = bytes
            .get(at..at + 110)
            .ok_or_else(|| format!("the archive ends at byte {at}, inside a header"))?;
        if &header[..6] != b"070701" {
            return Err(format!("no newc header at byte {at}"));
        }
        let field = |i: usize| {
            std::str::from_utf8(&header[6 + 8 * i..14 + 8 * i])
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a header field at byte {at} is not hexadecimal"))
        };
        let (mode, size, name_size) = (field(1)?, field(6)? as usize, field(11)? as usize);
        let name_end = (at + 110)
            .checked_add(name_size)
            .filter(|end| *end <= bytes.len() && name_size > 0)
            .ok_or_else(|| format!("the name at byte {at} runs past the archive"))?;
        let name = std::str::from_utf8(&bytes[at + 110..name_end - 1])
            .map_err(|_| format!("the name at byte {at} is not UTF-8"))?;
        let data_at = name_end.next_multiple_of(4);
        let data = data_at
            .checked_add(size)
            .and_then(|end| bytes.get(data_at..end))
            .ok_or_else(|| format!("the data of {name} runs past the archive"))?;
        if name == "TRAILER!!!" {
            return Ok(entries);
        }
        entries.push(ReadEntry {
            path: name,
            mode,
            data,
        });
        at = (data_at + size).next_multiple_of(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// GNU cpio lists and unpacks what we write, with modes, link targets and contents.
    #[test]
    fn gnu_cpio_reads_the_archive_back() {
        let bytes = write(
            [
                CpioEntry {
                    path: "bin",
                    mode: 0o755,
                    data: CpioData::Dir,
                },
                CpioEntry {
                    path: "bin/sh",
                    mode: 0o755,
                    data: CpioData::File(b"#!/bin/busybox sh\n"),
                },
                CpioEntry {
                    path: "init",
                    mode: 0o777,
                    data: CpioData::Symlink("bin/sh"),
                },
            ],
            1_700_000_000,
        );
        assert_eq!(bytes.len() % 4, 0);
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, &bytes).unwrap();
        let out = Command::new("sh")
            .current_dir(dir.path())
            .arg("-c")
            .arg("mkdir x && cd x && cpio -idm --quiet < ../a.cpio && cpio -tv --quiet < ../a.cpio")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        assert_eq!(lines.len(), 3, "{listing}");
        assert!(
            lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" bin"),
            "{listing}"
        );
        assert!(
            lines[1].starts_with("-rwxr-xr-x") && lines[1].contains(" root "),
            "{listing}"
        );
        assert!(
            lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with("init -> bin/sh"),
            "{listing}"
        );
        let read_back = read(&bytes).unwrap();
        assert_eq!(read_back.len(), 3);
        assert!(read_back[1].is_file() && read_back[1].data == b"#!/bin/busybox sh\n");
        assert!(read_back[2].is_symlink() && read_back[2].data == b"bin/sh");
        assert!(read(&bytes[..bytes.len() - 8]).is_err());
        let x = dir.path().join("x");
        assert_eq!(
            std::fs::read(x.join("bin/sh")).unwrap(),
            b"#!/bin/busybox sh\n"
        );
        let mtime = std::fs::metadata(x.join("bin/sh")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::mtime(&mtime), 1_700_000_000);
    }
}
