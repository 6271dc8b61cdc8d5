//! Reading a disk cairn wrote, for `verify` and `trace`: a qcow2 is first converted
//! to raw with `qemu-img`; the GPT is read natively (signature and CRCs checked), the
//! partition named `root` is copied out, and its file system is dumped into a
//! temporary directory (ext4 with `debugfs -R 'rdump / DIR'`, squashfs with
//! `unsquashfs`), where every regular file is hashed. [`RawDisk`] gives the partitions
//! and their bytes alone, for the dm-verity check, which must not depend on the file
//! system being readable. So what is checked is what the disk holds, read back by e2fsprogs, not
//! what the build said it wrote.

use super::gpt;
use super::tools::Tool;
use crate::digest::Sha256Digest;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Gpt {
        path: PathBuf,
        source: gpt::GptError,
    },
    #[error("{path} has no partition named `{}`", super::ROOT_PARTITION_NAME)]
    NoRoot { path: PathBuf },
    #[error("{tool} failed on {path}: {detail}")]
    Tool {
        tool: &'static str,
        path: PathBuf,
        detail: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A regular file found in the disk's root file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskEntry {
    pub sha256: Sha256Digest,
    pub size: u64,
}

/// The disk's root file system, dumped.
pub struct RootFiles {
    /// Regular files by absolute path.
    pub files: BTreeMap<String, DiskEntry>,
    /// Where the tree was dumped (removed on drop).
    pub dir: tempfile::TempDir,
    /// The unified kernel image from the EFI system partition, if the disk has one.
    pub uki: Option<Vec<u8>>,
    /// The root file system image, for `stat` (removed on drop).
    fs_image: PathBuf,
    squashfs: bool,
    _scratch: tempfile::TempDir,
}

impl RootFiles {
    pub fn read(&self, image_path: &str) -> io::Result<Vec<u8>> {
        fs::read(self.dir.path().join(image_path.trim_start_matches('/')))
    }

    /// Mode (permission bits), uid and gid of `image_path` as the inode records them.
    pub fn stat(&self, image_path: &str) -> Option<(u32, u64, u64)> {
        if self.squashfs {
            return self.squashfs_stat(image_path);
        }
        let output = tool("debugfs")
            .arg("-R")
            .arg(format!("stat \"{}\"", image_path.replace('"', "\"\"")))
            .arg(&self.fs_image)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let after = |key: &str| {
            let rest = &text[text.find(key)? + key.len()..];
            rest.split_whitespace().next().map(str::to_string)
        };
        Some((
            u32::from_str_radix(&after("Mode:")?, 8).ok()? & 0o7777,
            after("User:")?.parse().ok()?,
            after("Group:")?.parse().ok()?,
        ))
    }
}

/// Dumps the root file system of the disk at `path` (raw, or qcow2 by its header).
pub fn root_files(path: &Path) -> Result<RootFiles, ReadError> {
    let tmp = tempfile::tempdir().map_err(io_err(path))?;
    let raw = RawDisk::open(path)?;
    let partitions = &raw.partitions;
    let root = partitions
        .iter()
        .find(|p| p.name == super::ROOT_PARTITION_NAME)
        .ok_or_else(|| ReadError::NoRoot {
            path: path.to_path_buf(),
        })?;
    let uki = match partitions
        .iter()
        .find(|p| p.name == super::ESP_PARTITION_NAME)
    {
        Some(esp) => {
            let esp_path = tmp.path().join("esp.fat");
            copy_partition(&raw, esp, &esp_path)?;
            let uki =
                super::esp::read(&esp_path, super::esp::BOOT_PATH).map_err(io_err(&esp_path))?;
            fs::remove_file(&esp_path).map_err(io_err(&esp_path))?;
            Some(uki)
        }
        None => None,
    };
    let fs_path = tmp.path().join("root.fs");
    copy_partition(&raw, root, &fs_path)?;
    // A qcow2's raw conversion is not needed any more.
    drop(raw);
    let dump = tempfile::tempdir().map_err(io_err(path))?;
    let mut magic = [0u8; 4];
    File::open(&fs_path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(io_err(&fs_path))?;
    let squashfs = &magic == b"hsqs";
    if squashfs {
        run(
            "unsquashfs",
            path,
            tool("unsquashfs")
                .args(["-f", "-no-xattrs", "-quiet", "-no-progress", "-d"])
                .arg(dump.path())
                .arg(&fs_path),
        )?;
    } else {
        run(
            "debugfs",
            path,
            tool("debugfs")
                .arg("-R")
                .arg(format!("rdump / \"{}\"", dump.path().display()))
                .arg(&fs_path),
        )?;
    }
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dump.path()).sort_by_file_name() {
        let entry = entry.map_err(|e| io_err(path)(e.into()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dump.path())
            .expect("walked below the dump");
        let (sha256, size) =
            crate::digest::sha256_reader(File::open(entry.path()).map_err(io_err(entry.path()))?)
                .map_err(io_err(entry.path()))?;
        files.insert(
            format!("/{}", rel.to_string_lossy()),
            DiskEntry { sha256, size },
        );
    }
    Ok(RootFiles {
        files,
        dir: dump,
        uki,
        fs_image: fs_path,
        squashfs,
        _scratch: tmp,
    })
}

/// A disk's GPT and its bytes, raw (a qcow2 converted into a temporary file).
pub struct RawDisk {
    pub partitions: Vec<gpt::Partition>,
    file: File,
    path: PathBuf,
    _scratch: Option<tempfile::TempDir>,
}

impl RawDisk {
    /// Opens the disk at `path` (raw, or qcow2 by its header) and reads its GPT.
    pub fn open(path: &Path) -> Result<RawDisk, ReadError> {
        let mut file = File::open(path).map_err(io_err(path))?;
        let mut magic = [0u8; 4];
        let is_qcow2 = file.read_exact(&mut magic).is_ok() && &magic == b"QFI\xfb";
        let (file, raw_path, scratch) = if is_qcow2 {
            let tmp = tempfile::tempdir().map_err(io_err(path))?;
            let raw = tmp.path().join("disk.raw");
            run(
                "qemu-img",
                path,
                tool("qemu-img")
                    .args(["convert", "-q", "-f", "qcow2", "-O", "raw"])
                    .arg(path)
                    .arg(&raw),
            )?;
            (File::open(&raw).map_err(io_err(&raw))?, raw, Some(tmp))
        } else {
            (file, path.to_path_buf(), None)
        };
        let mut disk = RawDisk {
            partitions: Vec::new(),
            file,
            path: raw_path,
            _scratch: scratch,
        };
        disk.partitions = gpt::read_partitions(&mut disk.file)
            .map_err(|source| ReadError::Gpt {
                path: path.to_path_buf(),
                source,
            })?
            .1;
        Ok(disk)
    }

    /// The bytes of `partition`, streamed.
    pub fn reader(&self, partition: &gpt::Partition) -> Result<impl Read + '_, ReadError> {
        let mut file = &self.file;
        file.seek(SeekFrom::Start(partition.offset))
            .map_err(io_err(&self.path))?;
        Ok(file.take(partition.size))
    }

    /// Where the raw bytes are, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Copies `partition` of `raw` to a new file `to`.
fn copy_partition(raw: &RawDisk, partition: &gpt::Partition, to: &Path) -> Result<(), ReadError> {
    let mut out = File::create(to).map_err(io_err(to))?;
    io::copy(&mut raw.reader(partition)?, &mut out).map_err(io_err(to))?;
    out.flush().map_err(io_err(to))
}

impl RootFiles {
    /// From `unsquashfs -lln`: `-rwxr-xr-x 0/0 1234 2023-11-14 22:13 squashfs-root/path`.
    fn squashfs_stat(&self, image_path: &str) -> Option<(u32, u64, u64)> {
        let output = tool("unsquashfs")
            .args(["-lln"])
            .arg(&self.fs_image)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let suffix = format!(" squashfs-root{image_path}");
        let line = text.lines().find(|l| l.ends_with(&suffix))?;
        let mut fields = line.split_whitespace();
        let mode = mode_bits(fields.next()?)?;
        let (uid, gid) = fields.next()?.split_once('/')?;
        Some((mode, uid.parse().ok()?, gid.parse().ok()?))
    }
}

/// `-rwsr-xr-x` -> 0o4755.
fn mode_bits(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    if b.len() != 10 {
        return None;
    }
    let mut mode = 0;
    for (i, (&c, bit)) in b[1..].iter().zip((0..9).rev()).enumerate() {
        let special = match (i, c) {
            (2, b's' | b'S') => 0o4000,
            (5, b's' | b'S') => 0o2000,
            (8, b't' | b'T') => 0o1000,
            _ => 0,
        };
        mode |= special;
        if c != b'-' && !matches!(c, b'S' | b'T') {
            mode |= 1 << bit;
        }
    }
    Some(mode)
}

fn tool(name: &'static str) -> std::process::Command {
    let path = super::tools::locate(name).unwrap_or_else(|| PathBuf::from(name));
    Tool {
        name,
        path,
        version: String::new(),
    }
    .command()
}

fn run(
    name: &'static str,
    disk: &Path,
    command: &mut std::process::Command,
) -> Result<(), ReadError> {
    let output = command.output().map_err(|e| ReadError::Tool {
        tool: name,
        path: disk.to_path_buf(),
        detail: e.to_string(),
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    if !output.status.success() || !problems.is_empty() {
        return Err(ReadError::Tool {
            tool: name,
            path: disk.to_path_buf(),
            detail: problems.join("\n"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_mode_strings_become_mode_bits() {
        assert_eq!(mode_bits("-rwxr-xr-x"), Some(0o755));
        assert_eq!(mode_bits("-rwsr-xr-x"), Some(0o4755));
        assert_eq!(mode_bits("drwxrwxrwt"), Some(0o1777));
        assert_eq!(mode_bits("-rwSr--r--"), Some(0o4644));
        assert_eq!(mode_bits("-rw-r--r--"), Some(0o644));
        assert_eq!(mode_bits("rw"), None);
    }
}
