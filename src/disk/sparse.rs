//! Copies of disk files that keep their holes, checked as they are copied: how the
//! layer cache stores a built disk and how an unchanged rebuild replays it
//! ([`crate::warm`]).
//!
//! A raw disk is mostly holes (a 1 GiB root holding 300 MB of files). A copy reads only
//! what the file system holds as data (`SEEK_DATA`/`SEEK_HOLE`), and writes only the
//! [`BLOCK`]s that are not all zero, so the copy has holes too and costs what the data
//! costs, not the disk's size. Where the file system has reflinks the copy is a clone
//! (copy-on-write: writing one never changes the other), read back to be checked.
//!
//! The check ([`check`], and what [`copy`] returns) is a BLAKE3 over every block that
//! is not all zero, each preceded by its offset, then the file's length: every byte is
//! covered (a block left out reads as zeros), it does not depend on which holes a file
//! system keeps, and a hole is never read.

use crate::digest::Blake3Digest;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The unit of the check and of the holes a copy leaves.
pub const BLOCK: u64 = 64 << 10;

/// How many bytes are read at once (whole blocks).
const READ: u64 = 16 * BLOCK;

/// The check of a file's bytes (see the module doc).
pub fn check(path: &Path) -> io::Result<(Blake3Digest, u64)> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut checker = Checker::default();
    for_each_block(&file, len, |offset, block| {
        checker.block(offset, block);
        Ok(())
    })?;
    Ok((checker.finish(len), len))
}

/// Copies the file `from` to the new file `to` (a reflink where the file system has
/// them, else a copy of its non-zero blocks) and returns the check of the bytes `to`
/// holds, with its length. Not synced: the caller syncs the returned file.
pub fn copy(from: &Path, to: &Path) -> io::Result<(File, Blake3Digest, u64)> {
    let source = File::open(from)?;
    let target = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(to)?;
    if crate::oci::layout::reflink(&source, &target) {
        let (check, len) = check(to)?;
        return Ok((target, check, len));
    }
    let len = source.metadata()?.len();
    target.set_len(len)?;
    let mut checker = Checker::default();
    for_each_block(&source, len, |offset, block| {
        if checker.block(offset, block) {
            target.write_all_at(block, offset)?;
        }
        Ok(())
    })?;
    Ok((target, checker.finish(len), len))
}

#[derive(Default)]
struct Checker {
    hasher: blake3::Hasher,
}

impl Checker {
    /// Takes the block at `offset` into the check; false if it is all zero (left out).
    fn block(&mut self, offset: u64, block: &[u8]) -> bool {
        if block.iter().all(|&b| b == 0) {
            return false;
        }
        self.hasher.update(&offset.to_le_bytes());
        self.hasher.update(block);
        true
    }

    fn finish(mut self, len: u64) -> Blake3Digest {
        self.hasher.update(&len.to_le_bytes());
        Blake3Digest::from_hasher(&self.hasher)
    }
}

/// Calls `take` with every block of the first `len` bytes of `file` that may hold
/// data, in order, each [`BLOCK`] long (the last one shorter); the others are holes.
fn for_each_block(
    file: &File,
    len: u64,
    mut take: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut buf = vec![0u8; READ as usize];
    for (start, end) in data_ranges(file, len)? {
        let mut at = start;
        while at < end {
            let n = (end - at).min(READ) as usize;
            file.read_exact_at(&mut buf[..n], at)?;
            for (i, block) in buf[..n].chunks(BLOCK as usize).enumerate() {
                take(at + i as u64 * BLOCK, block)?;
            }
            at += n as u64;
        }
    }
    Ok(())
}

/// The ranges of `file` that may hold data, widened to whole blocks, merged and in
/// order; the whole file where the file system cannot tell data from holes.
fn data_ranges(file: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let seek = |from: u64, whence: libc::c_int| -> io::Result<Option<u64>> {
        let from = libc::off_t::try_from(from).map_err(io::Error::other)?;
        // SAFETY: a valid open descriptor; lseek only moves its offset.
        let at = unsafe { libc::lseek(file.as_raw_fd(), from, whence) };
        if at >= 0 {
            return Ok(Some(at as u64));
        }
        match io::Error::last_os_error() {
            // No data at or after `from`.
            e if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
            e => Err(e),
        }
    };
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut at = 0;
    while at < len {
        let data = match seek(at, libc::SEEK_DATA) {
            Ok(Some(data)) => data,
            Ok(None) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(vec![(0, len)]),
            Err(e) => return Err(e),
        };
        let hole = seek(data, libc::SEEK_HOLE)?.unwrap_or(len).min(len);
        if data >= hole {
            break;
        }
        let start = data / BLOCK * BLOCK;
        let end = (hole.div_ceil(BLOCK) * BLOCK).min(len);
        match ranges.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => ranges.push((start, end)),
        }
        at = hole;
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    /// A file of `len` bytes with `data` written at each offset, the rest holes.
    fn sparse_file(path: &Path, len: u64, data: &[(u64, &[u8])]) {
        let mut f = File::create(path).unwrap();
        f.set_len(len).unwrap();
        for (at, bytes) in data {
            f.seek(SeekFrom::Start(*at)).unwrap();
            f.write_all(bytes).unwrap();
        }
    }

    #[test]
    fn a_copy_keeps_every_byte_and_the_holes_and_checks_the_same_as_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("disk.raw");
        let len = 64 << 20;
        // Data across a block boundary, a zero block written as data, and the last
        // bytes of an odd-sized file.
        let odd = len + 1000;
        sparse_file(
            &from,
            odd,
            &[
                (BLOCK - 3, b"across"),
                (8 << 20, &[0u8; 4096]),
                (odd - 5, b"tail!"),
            ],
        );
        let to = dir.path().join("copy.raw");
        let (file, check_of_copy, copied) = copy(&from, &to).unwrap();
        drop(file);
        assert_eq!(copied, odd);
        assert_eq!(std::fs::read(&to).unwrap(), std::fs::read(&from).unwrap());
        assert_eq!(check(&from).unwrap(), (check_of_copy, odd));
        assert_eq!(check(&to).unwrap(), (check_of_copy, odd));
        // Two data blocks (and the zero block written as data is a hole now).
        let allocated = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&to).unwrap());
        assert!(
            allocated * 512 <= 4 * BLOCK,
            "{allocated} sectors allocated"
        );
    }

    #[test]
    fn the_check_changes_with_any_byte_or_the_length_and_not_with_the_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n);
        sparse_file(&path("a"), 1 << 20, &[(5000, b"x")]);
        // The same bytes, the zeros written out rather than left as holes.
        let mut dense = vec![0u8; 1 << 20];
        dense[5000] = b'x';
        std::fs::write(path("dense"), &dense).unwrap();
        sparse_file(&path("other byte"), 1 << 20, &[(5000, b"y")]);
        sparse_file(&path("other place"), 1 << 20, &[(5001, b"x")]);
        sparse_file(&path("longer"), (1 << 20) + 1, &[(5000, b"x")]);
        let a = check(&path("a")).unwrap().0;
        assert_eq!(check(&path("dense")).unwrap().0, a);
        for other in ["other byte", "other place", "longer"] {
            assert_ne!(check(&path(other)).unwrap().0, a, "{other}");
        }
    }
}
