//! The root file system as ext4, written natively and reproducibly.
//!
//! Why native: `mke2fs -d` (1.47.0) copies host times, owners and modes from a
//! staging directory, and filling an empty file system through a scripted `debugfs`
//! session cost eight times as long as `mke2fs -d`. No mature ext4 writer exists in
//! Rust, so cairn writes the format itself ([`format`], from the kernel's "ext4 Data
//! Structures and Algorithms"), in a layout of its own ([`layout`]).
//!
//! What it writes: 4 KiB blocks, 256-byte inodes, features `has_journal`,
//! `ext_attr`, `filetype`, `extents`, `sparse_super`, `large_file`, `dir_nlink`,
//! `extra_isize` and `metadata_csum` (CRC32C, implemented in [`format`]); no
//! `resize_inode`, `flex_bg`, `64bit` or `dir_index`, nothing Linux 4.x cannot mount
//! read-write. An empty journal (inode 8) and `lost+found` (inode 11, four blocks)
//! as mke2fs makes them. Directories are linear; files are contiguous, mapped by up
//! to four extents in the inode or one extent block; symlinks shorter than 60 bytes
//! live in their inode.
//!
//! Reproducible: inode numbers follow the sorted paths (from 12 on), blocks are
//! handed out in inode order from the first free block, every time is the epoch,
//! the UUID and hash seed come from the content ([`Ext4Params`]), and the image is a
//! fresh file, so unwritten blocks are zeros. File contents are copied from their
//! sources by all cores at offsets fixed beforehand, hashed as they are written and
//! checked against the digests the layers recorded: the bytes on the disk are the
//! bytes the SBOMs describe, whatever the number of threads.

mod format;
mod layout;

use super::rootfs::{RootEntry, RootKind, RootTree};
use super::{read_full, DiskError};
use crate::digest::Sha256Digest;
use crate::layers::FileData;
use crate::recipe::Owner;
use format::{DirEntry, Run, BLOCK, INODE_SIZE};
use layout::{Allocator, Geometry};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const BLOCK_SIZE: u64 = BLOCK as u64;
/// One inode per this many bytes, unless the tree needs more.
const BYTES_PER_INODE: u64 = 16384;
const ROOT_INO: u32 = 2;
const JOURNAL_INO: u32 = 8;
const LOST_FOUND_INO: u32 = 11;
/// The first inode that is not reserved.
const FIRST_INO: u32 = 11;
/// The directory mke2fs creates in every file system, and its size: room for e2fsck
/// to reconnect files without allocating.
const LOST_FOUND: &str = "lost+found";
const LOST_FOUND_BLOCKS: usize = 4;
/// The most links ext4 counts for one inode (`EXT4_LINK_MAX`); a directory with more
/// subdirectories records 1 (`dir_nlink`).
const MAX_LINKS: u32 = 65000;

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

/// What one inode holds.
enum Body<'a> {
    /// Blocks built in memory: a directory's, a long symlink's target.
    Blocks(Vec<u8>),
    /// A regular file's content, read from where the layers found it.
    File {
        data: &'a FileData,
        sha256: Sha256Digest,
    },
    /// A symlink target shorter than 60 bytes, kept in the inode.
    FastSymlink(&'a [u8]),
    /// The journal, of this many blocks.
    Journal(u64),
}

struct Node<'a> {
    ino: u32,
    /// File type and permission bits.
    mode: u16,
    owner: Owner,
    links: u32,
    size: u64,
    body: Body<'a>,
    path: &'a str,
}

impl Node<'_> {
    /// Blocks of content, extent blocks aside.
    fn blocks(&self) -> u64 {
        match &self.body {
            Body::Blocks(bytes) => (bytes.len() / BLOCK) as u64,
            Body::File { .. } => self.size.div_ceil(BLOCK_SIZE),
            Body::FastSymlink(_) => 0,
            Body::Journal(blocks) => *blocks,
        }
    }
}

/// Where a node's blocks went.
#[derive(Default)]
struct Placed {
    runs: Vec<Run>,
    /// The extent block, when there are more than four runs.
    leaf: Option<u64>,
}

/// Writes `tree` as an ext4 image of `params.size` bytes at `scratch/root.ext4`.
pub fn write(tree: &RootTree, params: &Ext4Params, scratch: &Path) -> Result<PathBuf, DiskError> {
    let uuid = params.uuid.0;
    let fs_seed = format::fs_seed(&uuid);
    let journal_blocks = journal_blocks(params.size / BLOCK_SIZE);
    let nodes = nodes(tree, fs_seed, journal_blocks)?;
    let needs = needs(tree);
    let too_small = || DiskError::RootTooSmall {
        size: params.size,
        needed: Some(size_for(
            needs.blocks + journal_blocks + LOST_FOUND_BLOCKS as u64 + 1,
            needs.inodes,
        )),
    };
    let geo =
        Geometry::new(params.size, inodes_for(params.size, needs.inodes)).ok_or_else(too_small)?;
    let last_ino = nodes.last().map_or(FIRST_INO, |n| n.ino);
    if u64::from(last_ino) > geo.inodes() {
        return Err(too_small());
    }
    let mut alloc = Allocator::new(&geo);
    let mut placed = Vec::with_capacity(nodes.len());
    for node in &nodes {
        placed.push(place(&mut alloc, node).ok_or_else(too_small)??);
    }

    let image = scratch.join("root.ext4");
    // A fresh file: every block not written below reads as zeros.
    let file = File::create_new(&image).map_err(DiskError::io(&image))?;
    file.set_len(params.size).map_err(DiskError::io(&image))?;
    let put = |bytes: &[u8], at: u64| file.write_all_at(bytes, at).map_err(DiskError::io(&image));

    let mut tables = vec![Vec::new(); geo.groups as usize];
    let mut dirs = vec![0u16; geo.groups as usize];
    let mut journal_root = [0u8; 60];
    for (node, p) in nodes.iter().zip(&placed) {
        let group = ((node.ino - 1) / geo.inodes_per_group) as usize;
        let index = ((node.ino - 1) % geo.inodes_per_group) as usize;
        let seed = format::inode_seed(fs_seed, node.ino);
        let inode = inode(node, p);
        if node.ino == JOURNAL_INO {
            journal_root = inode.block;
        }
        if node.mode & 0o170000 == 0o040000 {
            dirs[group] += 1;
        }
        let table = &mut tables[group];
        table.resize((index + 1) * INODE_SIZE, 0);
        table[index * INODE_SIZE..].copy_from_slice(&format::inode(&inode, params.epoch, seed));
        if let Some(leaf) = p.leaf {
            put(&format::extent_leaf(&p.runs, seed), leaf * BLOCK_SIZE)?;
        }
        match &node.body {
            Body::Blocks(bytes) => {
                for r in &p.runs {
                    let from = r.logical as usize * BLOCK;
                    put(
                        &bytes[from..][..r.len as usize * BLOCK],
                        r.start * BLOCK_SIZE,
                    )?;
                }
            }
            Body::Journal(blocks) => put(
                &format::journal_superblock(*blocks as u32, &uuid),
                p.runs[0].start * BLOCK_SIZE,
            )?,
            Body::File { .. } | Body::FastSymlink(_) => {}
        }
    }

    let ipg = u64::from(geo.inodes_per_group);
    let mut descs = Vec::with_capacity(geo.groups as usize * 32);
    let (mut free_blocks, mut free_inodes) = (0u64, 0u64);
    for g in 0..geo.groups {
        let used_blocks = alloc.used_blocks(g);
        let used_inodes = u64::from(last_ino)
            .saturating_sub(u64::from(g) * ipg)
            .min(ipg);
        let (block_bitmap, block_csum) = format::bitmap(
            used_blocks,
            geo.group_blocks(g),
            fs_seed,
            layout::BLOCKS_PER_GROUP,
        );
        let (inode_bitmap, inode_csum) = format::bitmap(used_inodes, ipg, fs_seed, ipg);
        put(&block_bitmap, geo.block_bitmap(g) * BLOCK_SIZE)?;
        put(&inode_bitmap, geo.inode_bitmap(g) * BLOCK_SIZE)?;
        put(&tables[g as usize], geo.inode_table(g) * BLOCK_SIZE)?;
        let group_free_blocks = geo.group_blocks(g) - used_blocks;
        free_blocks += group_free_blocks;
        free_inodes += ipg - used_inodes;
        let desc = format::GroupDesc {
            block_bitmap: geo.block_bitmap(g) as u32,
            inode_bitmap: geo.inode_bitmap(g) as u32,
            inode_table: geo.inode_table(g) as u32,
            free_blocks: group_free_blocks as u16,
            free_inodes: (ipg - used_inodes) as u16,
            dirs: dirs[g as usize],
            block_bitmap_csum: block_csum,
            inode_bitmap_csum: inode_csum,
        };
        descs.extend_from_slice(&format::group_desc(&desc, g, fs_seed));
    }
    let journal = &nodes[1];
    debug_assert_eq!(journal.ino, JOURNAL_INO);
    let sb = format::Super {
        inodes: geo.inodes() as u32,
        blocks: geo.blocks as u32,
        free_blocks: free_blocks as u32,
        free_inodes: free_inodes as u32,
        inodes_per_group: geo.inodes_per_group,
        epoch: params.epoch,
        uuid: &uuid,
        hash_seed: &params.hash_seed.0,
        label: params.label,
        journal_blocks: journal_root,
        journal_size: journal.size,
    };
    for g in (0..geo.groups).filter(|&g| geo.has_super(g)) {
        // The primary superblock is 1024 bytes into block 0; copies start their block.
        let at = geo.group_start(g) * BLOCK_SIZE + if g == 0 { 1024 } else { 0 };
        put(&format::superblock(&sb, g), at)?;
        put(&descs, (geo.group_start(g) + 1) * BLOCK_SIZE)?;
    }

    nodes
        .par_iter()
        .zip(&placed)
        .try_for_each(|(node, p)| match &node.body {
            Body::File { data, sha256 } => {
                copy_content(&file, &image, data, *sha256, node.size, &p.runs)
            }
            _ => Ok(()),
        })?;
    Ok(image)
}

/// The journal's size for a file system of `blocks` blocks, as mke2fs 1.47 picks
/// it (`ext2fs_default_journal_size`), and never below jbd2's minimum of 1024.
fn journal_blocks(blocks: u64) -> u64 {
    match blocks {
        0..32768 => 1024,
        32768..262144 => 4096,
        262144..524288 => 8192,
        524288..4194304 => 16384,
        4194304..8388608 => 32768,
        8388608..16777216 => 65536,
        16777216..33554432 => 131072,
        _ => 262144,
    }
}

/// The inodes a file system of `size` bytes gets for a tree of `tree_inodes`.
fn inodes_for(size: u64, tree_inodes: u64) -> u64 {
    (size / BYTES_PER_INODE).max(tree_inodes + u64::from(FIRST_INO) + 64)
}

/// The smallest size (in bytes, whole MiB) whose file system has `blocks` blocks
/// free for data and room for `inodes` inodes.
fn size_for(blocks: u64, inodes: u64) -> u64 {
    let mut size = (blocks * BLOCK_SIZE).next_multiple_of(1 << 20);
    loop {
        match Geometry::new(size, inodes_for(size, inodes)) {
            Some(geo) if geo.data_blocks() >= blocks => return size,
            Some(geo) => {
                size += ((blocks - geo.data_blocks()) * BLOCK_SIZE).next_multiple_of(1 << 20)
            }
            None => size += size / 8 + (1 << 20),
        }
    }
}

/// Takes the blocks of `node`: its content, and an extent block first if its runs do
/// not fit in the inode. `None` when the file system is full.
fn place(alloc: &mut Allocator, node: &Node) -> Option<Result<Placed, DiskError>> {
    let count = node.blocks();
    if count == 0 {
        return Some(Ok(Placed::default()));
    }
    let before = *alloc;
    let runs = alloc.take(count)?;
    if runs.len() <= format::INODE_EXTENTS {
        return Some(Ok(Placed { runs, leaf: None }));
    }
    *alloc = before;
    let leaf = alloc.take(1)?[0].start;
    let runs = alloc.take(count)?;
    if runs.len() > format::BLOCK_EXTENTS {
        return Some(Err(DiskError::Unrepresentable {
            path: format!("/{}", node.path),
            why: "it needs more extents than one extent block holds",
        }));
    }
    Some(Ok(Placed {
        runs,
        leaf: Some(leaf),
    }))
}

fn inode(node: &Node, p: &Placed) -> format::Inode {
    let extents = !matches!(node.body, Body::FastSymlink(_));
    let block = match &node.body {
        Body::FastSymlink(target) => {
            let mut block = [0u8; 60];
            block[..target.len()].copy_from_slice(target);
            block
        }
        _ => format::extent_root(&p.runs, p.leaf),
    };
    format::Inode {
        mode: node.mode,
        uid: node.owner.uid,
        gid: node.owner.gid,
        links: node.links as u16,
        size: node.size,
        blocks: node.blocks() + u64::from(p.leaf.is_some()),
        flags: if extents { format::EXTENTS_FL } else { 0 },
        block,
    }
}

/// Every inode of the file system, in inode order: the root, the journal,
/// `lost+found`, then the tree's entries in path order (hard links share their
/// target's inode).
fn nodes(tree: &RootTree, fs_seed: u32, journal_blocks: u64) -> Result<Vec<Node<'_>>, DiskError> {
    let unrepresentable = |key: &str, why| DiskError::Unrepresentable {
        path: format!("/{key}"),
        why,
    };
    let mut inos: BTreeMap<&str, u32> = BTreeMap::from([("", ROOT_INO)]);
    let mut next = FIRST_INO + 1;
    for (key, e) in &tree.entries {
        let (_, name) = split(key);
        if name.is_empty() || name == "." || name == ".." || name.contains('\0') {
            return Err(unrepresentable(key, "it is not a valid ext4 file name"));
        }
        if name.len() > 255 {
            return Err(unrepresentable(
                key,
                "ext4 names are at most 255 bytes long",
            ));
        }
        let ino = match &e.kind {
            RootKind::Hardlink { .. } => continue,
            RootKind::Dir if key == LOST_FOUND => LOST_FOUND_INO,
            _ if key == LOST_FOUND => {
                return Err(unrepresentable(key, "ext4 keeps a directory there"))
            }
            _ => {
                next += 1;
                next - 1
            }
        };
        inos.insert(key, ino);
    }

    // Each directory's entries (in name order), subdirectories and each file's links.
    let mut children: BTreeMap<&str, Vec<DirEntry>> = BTreeMap::new();
    let mut subdirs: BTreeMap<&str, u32> = BTreeMap::new();
    let mut links: BTreeMap<u32, u32> = BTreeMap::new();
    if !tree.entries.contains_key(LOST_FOUND) {
        children.entry("").or_default().push(DirEntry {
            name: LOST_FOUND.as_bytes(),
            ino: LOST_FOUND_INO,
            file_type: format::FT_DIR,
        });
        *subdirs.entry("").or_default() += 1;
    }
    for (key, e) in &tree.entries {
        let (parent, name) = split(key);
        if !parent.is_empty()
            && !matches!(
                tree.entries.get(parent).map(|p| &p.kind),
                Some(RootKind::Dir)
            )
        {
            return Err(unrepresentable(
                key,
                "its parent is not a directory of the tree",
            ));
        }
        let (ino, file_type) = match &e.kind {
            RootKind::Dir => {
                *subdirs.entry(parent).or_default() += 1;
                (inos[key.as_str()], format::FT_DIR)
            }
            RootKind::File { .. } => (inos[key.as_str()], format::FT_REG),
            RootKind::Symlink { target } => {
                if target.len() >= BLOCK || target.is_empty() || target.contains('\0') {
                    return Err(unrepresentable(
                        key,
                        "an ext4 symlink target is 1 to 4095 bytes long, without NUL",
                    ));
                }
                (inos[key.as_str()], format::FT_SYMLINK)
            }
            RootKind::Hardlink { target } => match tree.entries.get(target).map(|t| &t.kind) {
                Some(RootKind::File { .. }) => (inos[target.as_str()], format::FT_REG),
                _ => {
                    return Err(unrepresentable(
                        key,
                        "it links to no regular file of the tree",
                    ))
                }
            },
        };
        if file_type == format::FT_REG {
            let count = links.entry(ino).or_default();
            *count += 1;
            if *count > MAX_LINKS {
                return Err(unrepresentable(
                    key,
                    "ext4 counts at most 65,000 links to a file",
                ));
            }
        }
        children.entry(parent).or_default().push(DirEntry {
            name: name.as_bytes(),
            ino,
            file_type,
        });
    }
    if let Some(root) = children.get_mut("") {
        root.sort_by(|a, b| a.name.cmp(b.name));
    }

    let mode = |e: &RootEntry, type_bits: u32| (type_bits | (e.mode & 0o7777)) as u16;
    let mut nodes = vec![
        dir_node(
            "",
            [ROOT_INO, ROOT_INO],
            0o040755,
            Owner::ROOT,
            Dir {
                entries: children.remove("").unwrap_or_default(),
                subdirs: subdirs.get("").copied().unwrap_or(0),
                min_blocks: 1,
            },
            fs_seed,
        ),
        Node {
            ino: JOURNAL_INO,
            mode: 0o100600,
            owner: Owner::ROOT,
            links: 1,
            size: journal_blocks * BLOCK_SIZE,
            body: Body::Journal(journal_blocks),
            path: "",
        },
    ];
    let (lost_found_mode, lost_found_owner) = match tree.entries.get(LOST_FOUND) {
        Some(e) => (mode(e, 0o040000), e.owner),
        None => (0o040700, Owner::ROOT),
    };
    nodes.push(dir_node(
        LOST_FOUND,
        [LOST_FOUND_INO, ROOT_INO],
        lost_found_mode,
        lost_found_owner,
        Dir {
            entries: children.remove(LOST_FOUND).unwrap_or_default(),
            subdirs: subdirs.get(LOST_FOUND).copied().unwrap_or(0),
            min_blocks: LOST_FOUND_BLOCKS,
        },
        fs_seed,
    ));
    for (key, e) in &tree.entries {
        if key == LOST_FOUND {
            continue;
        }
        let Some(&ino) = inos.get(key.as_str()) else {
            continue; // a hard link
        };
        let (base, size, body) = match &e.kind {
            RootKind::Dir => {
                let dir = Dir {
                    entries: children.remove(key.as_str()).unwrap_or_default(),
                    subdirs: subdirs.get(key.as_str()).copied().unwrap_or(0),
                    min_blocks: 1,
                };
                let parent = inos[split(key).0];
                nodes.push(dir_node(
                    key,
                    [ino, parent],
                    mode(e, 0o040000),
                    e.owner,
                    dir,
                    fs_seed,
                ));
                continue;
            }
            RootKind::File { data, sha256 } => {
                let size = match data {
                    FileData::Source(c) => c.size,
                    FileData::Inline(bytes) => bytes.len() as u64,
                };
                let body = Body::File {
                    data,
                    sha256: *sha256,
                };
                (0o100000, size, body)
            }
            RootKind::Symlink { target } if target.len() < 60 => (
                0o120000,
                target.len() as u64,
                Body::FastSymlink(target.as_bytes()),
            ),
            RootKind::Symlink { target } => {
                let mut block = target.as_bytes().to_vec();
                block.resize(BLOCK, 0);
                (0o120000, target.len() as u64, Body::Blocks(block))
            }
            RootKind::Hardlink { .. } => unreachable!("hard links have no inode of their own"),
        };
        nodes.push(Node {
            ino,
            mode: mode(e, base),
            owner: e.owner,
            links: links.get(&ino).copied().unwrap_or(1),
            size,
            body,
            path: key,
        });
    }
    Ok(nodes)
}

/// A directory's entries besides `.` and `..`.
struct Dir<'a> {
    entries: Vec<DirEntry<'a>>,
    subdirs: u32,
    min_blocks: usize,
}

/// The inode of directory `path`; `inos` is its own inode and its parent's.
fn dir_node<'a>(
    path: &'a str,
    inos: [u32; 2],
    mode: u16,
    owner: Owner,
    dir: Dir<'a>,
    fs_seed: u32,
) -> Node<'a> {
    let [ino, parent] = inos;
    let mut entries = vec![
        DirEntry {
            name: b".",
            ino,
            file_type: format::FT_DIR,
        },
        DirEntry {
            name: b"..",
            ino: parent,
            file_type: format::FT_DIR,
        },
    ];
    entries.extend(dir.entries);
    let blocks = format::dir_blocks(&entries, dir.min_blocks, format::inode_seed(fs_seed, ino));
    let links = 2 + dir.subdirs;
    Node {
        ino,
        mode,
        owner,
        links: if links > MAX_LINKS { 1 } else { links },
        size: blocks.len() as u64,
        body: Body::Blocks(blocks),
        path,
    }
}

/// Blocks and inodes the tree takes beyond an empty file system: data blocks of each
/// file (hard links once), directory blocks (the root's first aside), a block for
/// each symlink too long to live in its inode, an extent block for a file in more
/// than four pieces of up to 128 MiB; one inode per entry that is not a hard link.
pub fn needs(tree: &RootTree) -> Needs {
    let mut names: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let (mut blocks, mut inodes) = (0u64, 0u64);
    for (key, e) in &tree.entries {
        let (parent, name) = split(key);
        names.entry(parent).or_default().push(name.len());
        match &e.kind {
            RootKind::File { data, .. } => {
                let size = match data {
                    FileData::Source(c) => c.size,
                    FileData::Inline(b) => b.len() as u64,
                };
                blocks += size.div_ceil(BLOCK_SIZE);
                blocks += u64::from(size.div_ceil(BLOCK_SIZE * format::MAX_EXTENT_LEN) > 4);
                inodes += 1;
            }
            RootKind::Dir => {
                names.entry(key).or_default();
                inodes += 1;
            }
            RootKind::Symlink { target } => {
                blocks += u64::from(target.len() >= 60);
                inodes += 1;
            }
            RootKind::Hardlink { .. } => {}
        }
    }
    names.entry("").or_default();
    blocks += names
        .values()
        .map(|lens| format::dir_block_count([1, 2].into_iter().chain(lens.iter().copied())))
        .sum::<u64>()
        - 1;
    Needs { blocks, inodes }
}

/// Copies one file's content from its source into its runs, hashing it as it goes,
/// and checks it against the digest the layers recorded.
fn copy_content(
    image: &File,
    image_path: &Path,
    data: &FileData,
    expected: Sha256Digest,
    size: u64,
    runs: &[Run],
) -> Result<(), DiskError> {
    const CHUNK: u64 = 1 << 20;
    let (source, mut reader): (PathBuf, Box<dyn Read>) = match data {
        FileData::Inline(bytes) => (PathBuf::from("(inline content)"), Box::new(&bytes[..])),
        FileData::Source(c) => {
            let path = c.path().into_owned();
            let file = File::open(&path).map_err(DiskError::io(&path))?;
            (path, Box::new(file))
        }
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; size.min(CHUNK) as usize];
    let mut short = false;
    for r in runs {
        let run_start = u64::from(r.logical) * BLOCK_SIZE;
        let run_bytes = (u64::from(r.len) * BLOCK_SIZE).min(size - run_start);
        let mut done = 0;
        while done < run_bytes && !short {
            let want = (run_bytes - done).min(CHUNK) as usize;
            let n = read_full(&mut reader, &mut buf[..want]).map_err(DiskError::io(&source))?;
            hasher.update(&buf[..n]);
            // The image is a fresh file: zeros need not be written.
            if buf[..n].iter().any(|&b| b != 0) {
                image
                    .write_all_at(&buf[..n], r.start * BLOCK_SIZE + done)
                    .map_err(DiskError::io(image_path))?;
            }
            done += n as u64;
            short = n < want;
        }
    }
    // Bytes past the recorded size change the digest too.
    if !short {
        let mut rest = [0u8; 8192];
        loop {
            let n = read_full(&mut reader, &mut rest).map_err(DiskError::io(&source))?;
            hasher.update(&rest[..n]);
            if n < rest.len() {
                break;
            }
        }
    }
    let found = Sha256Digest::from_hasher(hasher);
    if found != expected {
        return Err(DiskError::SourceChanged {
            path: source,
            expected,
            found,
        });
    }
    Ok(())
}

/// SHA-256 of the file at `path`.
pub fn sha256_file(path: &Path) -> io::Result<Sha256Digest> {
    Ok(crate::digest::sha256_reader(File::open(path)?)?.0)
}

fn split(key: &str) -> (&str, &str) {
    key.rsplit_once('/').unwrap_or(("", key))
}

#[cfg(test)]
mod tests;
