//! The root file system as squashfs, written reproducibly with `mksquashfs`
//! (squashfs-tools, version pinned). The tree is laid out in a staging directory from
//! the digest-checked contents (hard links as hard links, nothing else shared), and
//! every host attribute is overridden: a pseudo file sets each entry's mode, uid and
//! gid (`m` definitions), `-root-mode/-root-uid/-root-gid` the root's, `-all-time` and
//! `-mkfs-time` every time to the epoch, `-no-xattrs` drops extended attributes, and
//! `-reproducible` (the default of squashfs-tools 4.5) makes the output independent of
//! the number of processors. The image is padded with zeros to the partition size.

use super::rootfs::{RootKind, RootTree};
use super::tools::Tools;
use super::DiskError;
use crate::digest::HashingWriter;
use crate::layers::FileData;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `tree` as a squashfs image at `scratch/root.squashfs`, padded to `size`.
pub fn write(
    tree: &RootTree,
    size: u64,
    epoch: u64,
    tools: &Tools,
    scratch: &Path,
) -> Result<PathBuf, DiskError> {
    let content = scratch.join("content");
    stage_contents(tree, &content)?;
    let staging = scratch.join("tree");
    fs::create_dir(&staging).map_err(DiskError::io(&staging))?;
    let mut pseudo = String::new();
    for (key, e) in &tree.entries {
        if key.contains(['\n', '"']) {
            return Err(DiskError::Unrepresentable {
                path: format!("/{key}"),
                why: "a squashfs pseudo file cannot name it (line break or double quote)",
            });
        }
        let at = staging.join(key);
        match &e.kind {
            RootKind::Dir => fs::create_dir(&at).map_err(DiskError::io(&at))?,
            RootKind::File { sha256, .. } => {
                fs::copy(content.join(sha256.hex()), &at).map_err(DiskError::io(&at))?;
            }
            RootKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &at).map_err(DiskError::io(&at))?
            }
            RootKind::Hardlink { target } => {
                fs::hard_link(staging.join(target), &at).map_err(DiskError::io(&at))?
            }
        }
        if !matches!(e.kind, RootKind::Hardlink { .. }) {
            let _ = writeln!(
                pseudo,
                "\"/{key}\" m {:o} {} {}",
                e.mode, e.owner.uid, e.owner.gid
            );
        }
    }
    let pseudo_path = scratch.join("pseudo");
    fs::write(&pseudo_path, pseudo).map_err(DiskError::io(&pseudo_path))?;
    let image = scratch.join("root.squashfs");
    let epoch = epoch.to_string();
    let output = tools
        .get("mksquashfs")
        .command()
        .arg(&staging)
        .arg(&image)
        .args([
            "-noappend",
            "-no-xattrs",
            "-reproducible",
            "-quiet",
            "-no-progress",
        ])
        .args(["-comp", "gzip", "-b", "131072"])
        .args(["-all-time", &epoch, "-mkfs-time", &epoch])
        .args(["-root-mode", "755", "-root-uid", "0", "-root-gid", "0"])
        .arg("-pf")
        .arg(&pseudo_path)
        .output()
        .map_err(DiskError::io(&tools.get("mksquashfs").path))?;
    if !output.status.success() {
        return Err(DiskError::Tool {
            tool: "mksquashfs".into(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    let written = fs::metadata(&image).map_err(DiskError::io(&image))?.len();
    if written > size {
        return Err(DiskError::RootTooSmall {
            size,
            needed: Some(written),
        });
    }
    fs::File::options()
        .write(true)
        .open(&image)
        .and_then(|f| f.set_len(size))
        .map_err(DiskError::io(&image))?;
    fs::remove_dir_all(&staging).map_err(DiskError::io(&staging))?;
    Ok(image)
}

/// Copies each distinct file content into `dir/<sha256 hex>`, checking its digest: the
/// bytes that reach the disk are the bytes the layers and SBOMs describe.
fn stage_contents(tree: &RootTree, dir: &Path) -> Result<(), DiskError> {
    fs::create_dir_all(dir).map_err(DiskError::io(dir))?;
    for e in tree.entries.values() {
        let RootKind::File { data, sha256 } = &e.kind else {
            continue;
        };
        let dest = dir.join(sha256.hex());
        if dest.exists() {
            continue;
        }
        let mut out = HashingWriter::new(File::create(&dest).map_err(DiskError::io(&dest))?);
        let found = match data {
            FileData::Inline(bytes) => {
                out.write_all(bytes).map_err(DiskError::io(&dest))?;
                out.finish().0
            }
            FileData::Source(c) => {
                let mut src = File::open(c.path()).map_err(DiskError::io(&c.path()))?;
                io::copy(&mut src, &mut out).map_err(DiskError::io(&c.path()))?;
                let found = out.finish().0;
                if found != c.sha256 {
                    return Err(DiskError::SourceChanged {
                        path: c.path().into_owned(),
                        expected: c.sha256,
                        found,
                    });
                }
                found
            }
        };
        debug_assert_eq!(found, *sha256);
    }
    Ok(())
}
