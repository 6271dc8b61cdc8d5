//! The root file system as ext4, written reproducibly with e2fsprogs.
//!
//! Why this way: no mature ext4 writer exists in Rust, and `mke2fs -d` (1.47.0, Debian
//! 12) copies host atime/ctime, owners and modes from a staging directory. Instead
//! cairn makes an empty file system into a fresh file with every identifier and knob
//! fixed (UUID and directory hash seed derived from the content, a configuration file
//! of its own instead of the host's `/etc/mke2fs.conf`, `E2FSPROGS_FAKE_TIME` = epoch),
//! then fills it with one scripted `debugfs -w` session that creates every entry in
//! sorted order and sets each inode's mode, owner and times explicitly (`sif`), with
//! `set_current_time` = epoch. Nothing of the host file system reaches the image but
//! file contents, which are first copied into a staging directory and checked against
//! the digests the layers were written with. The tools' versions are pinned (see
//! [`super::tools`]).

use super::rootfs::{RootKind, RootTree};
use super::tools::Tools;
use super::DiskError;
use crate::digest::{HashingWriter, Sha256Digest};
use crate::layers::FileData;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const BLOCK_SIZE: u64 = 4096;
const INODE_SIZE: u64 = 256;
/// One inode per this many bytes, unless the tree needs more.
const BYTES_PER_INODE: u64 = 16384;
/// The directory mke2fs creates in every file system.
const LOST_FOUND: &str = "lost+found";

/// Features, block and inode sizes are fixed here rather than taken from the host's
/// `/etc/mke2fs.conf`. No `orphan_file` or `metadata_csum_seed`, so that kernels from
/// 4.x on mount it.
const MKE2FS_CONF: &str = "[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384
\treserved_ratio = 0

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
";

/// What the file system is made with, besides its content.
pub struct Ext4Params {
    pub size: u64,
    pub epoch: u64,
    pub uuid: super::gpt::Guid,
    pub hash_seed: super::gpt::Guid,
    pub label: &'static str,
}

/// Room the tree needs, estimated before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub blocks: u64,
    pub inodes: u64,
}

/// Writes `tree` as an ext4 image of `params.size` bytes at `scratch/root.ext4`.
pub fn write(
    tree: &RootTree,
    params: &Ext4Params,
    tools: &Tools,
    scratch: &Path,
) -> Result<PathBuf, DiskError> {
    let script = script(tree, params.epoch, &scratch.join("content"))?;
    stage_contents(tree, &scratch.join("content"))?;
    let conf = scratch.join("mke2fs.conf");
    fs::write(&conf, MKE2FS_CONF).map_err(DiskError::io(&conf))?;
    let image = scratch.join("root.ext4");
    // A fresh file: mke2fs leaves stale bytes in one that already has content.
    let file = File::create_new(&image).map_err(DiskError::io(&image))?;
    file.set_len(params.size).map_err(DiskError::io(&image))?;
    drop(file);

    let needs = needs(tree);
    // e2fsprogs reads a time of 0 as "now": the superblock of a file system built at
    // epoch 0 records 1 (1970-01-01 00:00:01) instead. Inode times are set to the
    // epoch itself by the script.
    let tool_time = params.epoch.max(1).to_string();
    let inodes = (params.size / BYTES_PER_INODE).max(needs.inodes + 64);
    let mut mke2fs = tools.get("mke2fs").command();
    mke2fs
        .env("E2FSPROGS_FAKE_TIME", &tool_time)
        .env("MKE2FS_CONFIG", &conf)
        .args(["-q", "-F", "-t", "ext4", "-b"])
        .arg(BLOCK_SIZE.to_string())
        .arg("-I")
        .arg(INODE_SIZE.to_string())
        .arg("-N")
        .arg(inodes.to_string())
        .args(["-m", "0", "-L", params.label, "-U"])
        .arg(params.uuid.to_string())
        .arg("-E")
        .arg(format!(
            "hash_seed={},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard",
            params.hash_seed
        ))
        .arg(&image)
        .arg((params.size / BLOCK_SIZE).to_string());
    run(&mut mke2fs, "mke2fs")?;

    let free = free_space(tools, &image)?;
    if needs.blocks > free.blocks || needs.inodes > free.inodes {
        return Err(DiskError::RootTooSmall {
            size: params.size,
            needed: Some(needs.blocks * BLOCK_SIZE + (params.size - free.blocks * BLOCK_SIZE)),
        });
    }

    let script_path = scratch.join("debugfs.script");
    fs::write(&script_path, script).map_err(DiskError::io(&script_path))?;
    let mut debugfs = tools.get("debugfs").command();
    debugfs
        .env("E2FSPROGS_FAKE_TIME", &tool_time)
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(&image);
    let stderr = run(&mut debugfs, "debugfs")?;
    // debugfs reports a failed command on stderr and still exits 0.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    if !problems.is_empty() {
        if problems.iter().any(|l| l.contains("Could not allocate")) {
            return Err(DiskError::RootTooSmall {
                size: params.size,
                needed: None,
            });
        }
        return Err(DiskError::Tool {
            tool: "debugfs".into(),
            detail: problems.join("\n"),
        });
    }
    Ok(image)
}

/// Blocks and inodes the tree takes beyond an empty file system: data blocks of each
/// file (hard links once), one block per directory plus room for its entries, a block
/// for each symlink too long to live in its inode, an extent block per 128 MiB file
/// piece; one inode per entry that is not a hard link.
pub fn needs(tree: &RootTree) -> Needs {
    let blocks_for = |bytes: u64| bytes.div_ceil(BLOCK_SIZE);
    let mut dir_bytes: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut blocks, mut inodes) = (0u64, 0u64);
    for (key, e) in &tree.entries {
        let (parent, name) = key.rsplit_once('/').unwrap_or(("", key));
        *dir_bytes.entry(parent).or_default() += 8 + (name.len() as u64).div_ceil(4) * 4;
        match &e.kind {
            RootKind::File { data, .. } => {
                let size = match data {
                    FileData::Source(c) => c.size,
                    FileData::Inline(b) => b.len() as u64,
                };
                blocks += blocks_for(size) + size / (128 << 20);
                inodes += 1;
            }
            RootKind::Dir => {
                dir_bytes.entry(key).or_default();
                inodes += 1;
            }
            RootKind::Symlink { target } => {
                blocks += u64::from(target.len() >= 60);
                inodes += 1;
            }
            RootKind::Hardlink { .. } => {}
        }
    }
    // The root directory already has its first block.
    blocks += dir_bytes
        .iter()
        .map(|(dir, bytes)| blocks_for(bytes + 24).max(1) - u64::from(dir.is_empty()))
        .sum::<u64>();
    Needs { blocks, inodes }
}

struct Free {
    blocks: u64,
    inodes: u64,
}

fn free_space(tools: &Tools, image: &Path) -> Result<Free, DiskError> {
    let mut stats = tools.get("debugfs").command();
    stats.args(["-R", "stats"]).arg(image);
    let output = stats
        .output()
        .map_err(DiskError::io(&tools.get("debugfs").path))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    match (field("Free blocks:"), field("Free inodes:")) {
        (Some(blocks), Some(inodes)) => Ok(Free { blocks, inodes }),
        _ => Err(DiskError::Tool {
            tool: "debugfs".into(),
            detail: format!(
                "`debugfs -R stats` printed no free block and inode counts: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }),
    }
}

/// Runs a tool; its stderr on success (for tools that report problems there).
fn run(command: &mut std::process::Command, tool: &str) -> Result<String, DiskError> {
    let output = command.output().map_err(|e| DiskError::Tool {
        tool: tool.into(),
        detail: e.to_string(),
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(DiskError::Tool {
            tool: tool.into(),
            detail: format!("{}: {}", output.status, stderr.trim()),
        });
    }
    Ok(stderr)
}

/// Copies each distinct file content into `dir/<sha256 hex>`, checking its digest: the
/// bytes that reach the disk are the bytes the layers and SBOMs describe.
pub(super) fn stage_contents(tree: &RootTree, dir: &Path) -> Result<(), DiskError> {
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

/// The debugfs commands that create `tree`. Entries are created in byte-wise path
/// order (parents first), hard links after every file exists.
fn script(tree: &RootTree, epoch: u64, content: &Path) -> Result<String, DiskError> {
    let mut s = String::new();
    let _ = writeln!(s, "set_current_time @{}", epoch.max(1));
    set_inode(&mut s, "", 0o040755, 0, 0, epoch);
    // mke2fs made it; unless the tree has its own, it keeps mke2fs's mode and owner.
    if !tree.entries.contains_key(LOST_FOUND) {
        set_inode(&mut s, LOST_FOUND, 0o040700, 0, 0, epoch);
    }
    let mut cwd = String::from("\0");
    let mut links: BTreeMap<&str, u32> = BTreeMap::new();
    let mut cd = |s: &mut String, parent: &str| {
        if cwd != parent {
            let _ = writeln!(s, "cd {}", quote(&format!("/{parent}")));
            cwd = parent.to_string();
        }
    };
    for (key, e) in &tree.entries {
        check_name(key)?;
        let (parent, name) = key.rsplit_once('/').unwrap_or(("", key));
        let type_bits = match &e.kind {
            RootKind::Dir if key == LOST_FOUND => 0o040000,
            _ if key == LOST_FOUND => {
                return Err(DiskError::Unrepresentable {
                    path: format!("/{key}"),
                    why: "ext4 keeps a directory there",
                })
            }
            RootKind::Dir => {
                cd(&mut s, parent);
                let _ = writeln!(s, "mkdir {}", quote(name));
                0o040000
            }
            RootKind::File { sha256, .. } => {
                cd(&mut s, parent);
                let src = content.join(sha256.hex());
                let _ = writeln!(s, "write {} {}", quote(&src.to_string_lossy()), quote(name));
                links.entry(key).or_insert(1);
                0o100000
            }
            RootKind::Symlink { target } => {
                check_name(target)?;
                cd(&mut s, parent);
                let _ = writeln!(s, "symlink {} {}", quote(name), quote(target));
                0o120000
            }
            RootKind::Hardlink { target } => {
                *links.entry(target).or_insert(1) += 1;
                continue;
            }
        };
        set_inode(
            &mut s,
            key,
            type_bits | e.mode,
            e.owner.uid,
            e.owner.gid,
            epoch,
        );
    }
    for (key, e) in &tree.entries {
        if let RootKind::Hardlink { target } = &e.kind {
            let (parent, name) = key.rsplit_once('/').unwrap_or(("", key));
            cd(&mut s, parent);
            let _ = writeln!(s, "ln {} {}", quote(&format!("/{target}")), quote(name));
        }
    }
    for (key, count) in links.into_iter().filter(|(_, n)| *n > 1) {
        let _ = writeln!(s, "sif {} links_count {count}", quote(&format!("/{key}")));
    }
    Ok(s)
}

/// Mode and owner of an inode; its four times too at epoch 0, which debugfs's
/// `set_current_time` cannot express (any other epoch it stamps on every inode it
/// creates, which saves four commands per entry).
fn set_inode(s: &mut String, key: &str, mode: u32, uid: u32, gid: u32, epoch: u64) {
    let path = quote(&format!("/{key}"));
    let _ = writeln!(s, "sif {path} mode 0{mode:o}");
    let _ = writeln!(s, "sif {path} uid {uid}");
    let _ = writeln!(s, "sif {path} gid {gid}");
    if epoch == 0 {
        for field in ["atime", "mtime", "ctime", "crtime"] {
            let _ = writeln!(s, "sif {path} {field} @0");
        }
    }
}

/// debugfs reads one command per line; inside double quotes `""` is a literal quote.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn check_name(name: &str) -> Result<(), DiskError> {
    if name.contains(['\n', '\r']) {
        return Err(DiskError::Unrepresentable {
            path: format!("/{name}"),
            why: "debugfs cannot take a name with a line break",
        });
    }
    Ok(())
}

/// SHA-256 of the file at `path`.
pub fn sha256_file(path: &Path) -> io::Result<Sha256Digest> {
    Ok(crate::digest::sha256_reader(File::open(path)?)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::rootfs::RootEntry;
    use crate::recipe::Owner;

    fn tree(entries: Vec<(&str, RootKind)>) -> RootTree {
        RootTree {
            entries: entries
                .into_iter()
                .map(|(k, kind)| {
                    (
                        k.to_string(),
                        RootEntry {
                            kind,
                            mode: 0o755,
                            owner: Owner { uid: 7, gid: 8 },
                        },
                    )
                })
                .collect(),
        }
    }

    fn file(bytes: &[u8]) -> RootKind {
        RootKind::File {
            data: FileData::Inline(bytes.into()),
            sha256: Sha256Digest::of(bytes),
        }
    }

    #[test]
    fn the_script_sets_every_inode_field_and_links_after_files() {
        let t = tree(vec![
            ("a b", RootKind::Dir),
            ("a b/q\"x", file(b"x")),
            (
                "a b/z",
                RootKind::Hardlink {
                    target: "a b/q\"x".into(),
                },
            ),
            (
                "l",
                RootKind::Symlink {
                    target: "a b".into(),
                },
            ),
        ]);
        let s = script(&t, 42, Path::new("/c")).unwrap();
        assert!(!s.contains("crtime"), "times come from set_current_time");
        let at_zero = script(&t, 0, Path::new("/c")).unwrap();
        assert!(at_zero.contains("set_current_time @1\n"));
        assert!(at_zero.contains("sif \"/l\" crtime @0\n"));
        let x = Sha256Digest::of(b"x").hex();
        for line in [
            "set_current_time @42".to_string(),
            "mkdir \"a b\"".into(),
            "cd \"/a b\"".into(),
            format!("write \"/c/{x}\" \"q\"\"x\""),
            "sif \"/a b/q\"\"x\" mode 0100755".into(),
            "sif \"/a b/q\"\"x\" uid 7".into(),
            "ln \"/a b/q\"\"x\" \"z\"".into(),
            "sif \"/a b/q\"\"x\" links_count 2".into(),
            "symlink \"l\" \"a b\"".into(),
            "sif \"/l\" mode 0120755".into(),
        ] {
            assert!(s.lines().any(|l| l == line), "missing `{line}` in\n{s}");
        }
        let pos = |needle: &str| s.find(needle).unwrap();
        assert!(pos("ln ") > pos("symlink "), "links come after every entry");
    }

    #[test]
    fn names_with_line_breaks_are_refused() {
        let t = tree(vec![("a\nb", RootKind::Dir)]);
        assert!(matches!(
            script(&t, 0, Path::new("/c")),
            Err(DiskError::Unrepresentable { .. })
        ));
    }

    #[test]
    fn needs_counts_data_directories_and_long_links() {
        let t = tree(vec![
            ("d", RootKind::Dir),
            ("d/f", file(&[1u8; 5000])),
            (
                "d/l",
                RootKind::Symlink {
                    target: "x".repeat(80),
                },
            ),
            (
                "d/h",
                RootKind::Hardlink {
                    target: "d/f".into(),
                },
            ),
        ]);
        // 2 data blocks, 1 for the long link, 1 for directory `d`.
        assert_eq!(
            needs(&t),
            Needs {
                blocks: 4,
                inodes: 3
            }
        );
    }
}
