//! The bytes of ext4's on-disk structures, as the kernel's "ext4 Data Structures and
//! Algorithms" describes them: superblock, group descriptors (32 bytes, no `64bit`),
//! inodes (256 bytes), extent trees, linear directory blocks, the jbd2 journal
//! superblock, and the `metadata_csum` checksums (CRC32C) each of them carries.
//!
//! Everything here is a pure function of its arguments; where a structure goes is
//! decided by [`super::layout`].

/// Feature flags (the kernel's `EXT4_FEATURE_*`).
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_EXT_ATTR: u32 = 0x8;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_EXTENTS: u32 = 0x40;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
const RO_COMPAT_LARGE_FILE: u32 = 0x2;
const RO_COMPAT_DIR_NLINK: u32 = 0x20;
const RO_COMPAT_EXTRA_ISIZE: u32 = 0x40;
const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

pub const BLOCK: usize = 4096;
pub const INODE_SIZE: usize = 256;
/// Bytes of the inode beyond the first 128 that hold fields (up to `i_projid`).
const EXTRA_ISIZE: u16 = 32;
pub const EXTENTS_FL: u32 = 0x80000;
/// Entries of the extent tree in an inode (after its 12-byte header).
pub const INODE_EXTENTS: usize = 4;
/// Entries of an extent tree block: (4096 - 12 - 4) / 12.
pub const BLOCK_EXTENTS: usize = 340;
/// The longest initialised extent.
pub const MAX_EXTENT_LEN: u64 = 32768;
/// Bytes of a directory block that hold entries; the rest is the checksum tail.
pub const DIR_SPACE: usize = BLOCK - 12;
/// Directory entry file types.
pub const FT_REG: u8 = 1;
pub const FT_DIR: u8 = 2;
pub const FT_SYMLINK: u8 = 7;

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// CRC32C (Castagnoli, reflected) without the pre- and post-inversion, as the kernel's
/// `crc32c()` and e2fsprogs' `ext2fs_crc32c_le()` compute it: ext4 chains it from a
/// seed. Table-driven; it runs over metadata only, never over file data.
pub fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// The seed of every metadata checksum: CRC32C of the file system's UUID.
pub fn fs_seed(uuid: &[u8; 16]) -> u32 {
    crc32c(!0, uuid)
}

/// The seed of an inode's own checksums (inode, directory and extent blocks): the
/// file system seed chained with the inode number and generation (always 0 here).
pub fn inode_seed(fs_seed: u32, ino: u32) -> u32 {
    crc32c(crc32c(fs_seed, &ino.to_le_bytes()), &0u32.to_le_bytes())
}

/// A time as ext4 stores it: the low 32 bits (signed) in the base field, and the
/// epoch bits beyond them in the low two bits of the `_extra` field.
fn time_fields(t: u64) -> (u32, u32) {
    let low = t as u32;
    let extra = ((t as i64 - i64::from(low as i32)) >> 32) as u32 & 3;
    (low, extra)
}

/// What the superblock says beyond the geometry.
pub struct Super<'a> {
    pub inodes: u32,
    pub blocks: u32,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub inodes_per_group: u32,
    pub epoch: u64,
    pub uuid: &'a [u8; 16],
    pub hash_seed: &'a [u8; 16],
    pub label: &'a str,
    /// The journal inode's `i_block` and size, backed up in the superblock.
    pub journal_blocks: [u8; 60],
    pub journal_size: u64,
}

/// The 1024-byte superblock, as copy `group` holds it.
pub fn superblock(s: &Super, group: u32) -> [u8; 1024] {
    let mut b = [0u8; 1024];
    put32(&mut b, 0x0, s.inodes);
    put32(&mut b, 0x4, s.blocks);
    put32(&mut b, 0xC, s.free_blocks);
    put32(&mut b, 0x10, s.free_inodes);
    // s_first_data_block 0; 4096-byte blocks and clusters (log2(size) - 10).
    put32(&mut b, 0x18, 2);
    put32(&mut b, 0x1C, 2);
    put32(&mut b, 0x20, 32768);
    put32(&mut b, 0x24, 32768);
    put32(&mut b, 0x28, s.inodes_per_group);
    let (time, time_hi) = (s.epoch as u32, (s.epoch >> 32) as u8);
    put32(&mut b, 0x30, time); // s_wtime
    put16(&mut b, 0x36, 0xFFFF); // s_max_mnt_count: no periodic check
    put16(&mut b, 0x38, 0xEF53);
    put16(&mut b, 0x3A, 1); // s_state: clean
    put16(&mut b, 0x3C, 1); // s_errors: continue
    put32(&mut b, 0x40, time); // s_lastcheck
    put32(&mut b, 0x4C, 1); // s_rev_level: dynamic
    put32(&mut b, 0x54, super::FIRST_INO);
    put16(&mut b, 0x58, INODE_SIZE as u16);
    put16(&mut b, 0x5A, group as u16);
    put32(&mut b, 0x5C, COMPAT_HAS_JOURNAL | COMPAT_EXT_ATTR);
    put32(&mut b, 0x60, INCOMPAT_FILETYPE | INCOMPAT_EXTENTS);
    put32(
        &mut b,
        0x64,
        RO_COMPAT_SPARSE_SUPER
            | RO_COMPAT_LARGE_FILE
            | RO_COMPAT_DIR_NLINK
            | RO_COMPAT_EXTRA_ISIZE
            | RO_COMPAT_METADATA_CSUM,
    );
    b[0x68..0x78].copy_from_slice(s.uuid);
    let label = s.label.as_bytes();
    b[0x78..0x78 + label.len().min(16)].copy_from_slice(&label[..label.len().min(16)]);
    put32(&mut b, 0xE0, super::JOURNAL_INO);
    b[0xEC..0xFC].copy_from_slice(s.hash_seed);
    b[0xFC] = 1; // s_def_hash_version: half_md4, as mke2fs
    b[0xFD] = 1; // s_jnl_backup_type: s_jnl_blocks holds the journal's i_block
    put32(&mut b, 0x100, 0x0004 | 0x0008); // default mount options user_xattr, acl
    put32(&mut b, 0x108, time); // s_mkfs_time
    b[0x10C..0x148].copy_from_slice(&s.journal_blocks);
    put32(&mut b, 0x148, (s.journal_size >> 32) as u32);
    put32(&mut b, 0x14C, s.journal_size as u32);
    put16(&mut b, 0x15C, EXTRA_ISIZE); // s_min_extra_isize
    put16(&mut b, 0x15E, EXTRA_ISIZE); // s_want_extra_isize
    put32(&mut b, 0x160, 1); // s_flags: signed directory hash, as on x86
    b[0x175] = 1; // s_checksum_type: crc32c
    b[0x274] = time_hi; // s_wtime_hi
    b[0x276] = time_hi; // s_mkfs_time_hi
    b[0x277] = time_hi; // s_lastcheck_hi
    let csum = crc32c(!0, &b[..0x3FC]);
    put32(&mut b, 0x3FC, csum);
    b
}

/// One block group's descriptor.
pub struct GroupDesc {
    pub block_bitmap: u32,
    pub inode_bitmap: u32,
    pub inode_table: u32,
    pub free_blocks: u16,
    pub free_inodes: u16,
    pub dirs: u16,
    pub block_bitmap_csum: u16,
    pub inode_bitmap_csum: u16,
}

/// The 32-byte descriptor of group `group`.
pub fn group_desc(d: &GroupDesc, group: u32, fs_seed: u32) -> [u8; 32] {
    let mut b = [0u8; 32];
    put32(&mut b, 0x0, d.block_bitmap);
    put32(&mut b, 0x4, d.inode_bitmap);
    put32(&mut b, 0x8, d.inode_table);
    put16(&mut b, 0xC, d.free_blocks);
    put16(&mut b, 0xE, d.free_inodes);
    put16(&mut b, 0x10, d.dirs);
    put16(&mut b, 0x12, 0x4); // EXT4_BG_INODE_ZEROED: the inode table is written whole
    put16(&mut b, 0x18, d.block_bitmap_csum);
    put16(&mut b, 0x1A, d.inode_bitmap_csum);
    let csum = crc32c(crc32c(fs_seed, &group.to_le_bytes()), &b);
    put16(&mut b, 0x1E, csum as u16);
    b
}

/// A bitmap block whose first `used` bits are set, and every bit from `valid` on
/// (the padding past the group's end that e2fsck expects set). Returns the block and
/// the low 16 bits of its checksum over the first `valid / 8` bytes.
pub fn bitmap(used: u64, valid: u64, fs_seed: u32, csum_bits: u64) -> (Vec<u8>, u16) {
    let mut b = vec![0u8; BLOCK];
    let set = |b: &mut [u8], from: u64, to: u64| {
        for bit in from..to {
            b[(bit / 8) as usize] |= 1 << (bit % 8);
        }
    };
    set(&mut b, 0, used);
    set(&mut b, valid, BLOCK as u64 * 8);
    let csum = crc32c(fs_seed, &b[..(csum_bits / 8) as usize]);
    (b, csum as u16)
}

/// One contiguous piece of a file: `len` blocks from `start` on disk, holding the
/// file's blocks from `logical` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub logical: u32,
    pub start: u64,
    pub len: u32,
}

fn extent_header(b: &mut [u8], entries: usize, max: usize, depth: u16) {
    put16(b, 0, 0xF30A);
    put16(b, 2, entries as u16);
    put16(b, 4, max as u16);
    put16(b, 6, depth);
}

fn extent(b: &mut [u8], r: &Run) {
    put32(b, 0, r.logical);
    put16(b, 4, r.len as u16);
    put16(b, 6, (r.start >> 32) as u16);
    put32(b, 8, r.start as u32);
}

/// The 60-byte `i_block` of an inode mapped by extents: the runs themselves when at
/// most four, else one index entry pointing at `leaf` (a block from [`extent_leaf`]).
pub fn extent_root(runs: &[Run], leaf: Option<u64>) -> [u8; 60] {
    let mut b = [0u8; 60];
    match leaf {
        None => {
            extent_header(&mut b, runs.len(), INODE_EXTENTS, 0);
            for (i, r) in runs.iter().enumerate() {
                extent(&mut b[12 + 12 * i..], r);
            }
        }
        Some(leaf) => {
            extent_header(&mut b, 1, INODE_EXTENTS, 1);
            // ei_block 0, ei_leaf_lo, ei_leaf_hi.
            put32(&mut b, 16, leaf as u32);
            put16(&mut b, 20, (leaf >> 32) as u16);
        }
    }
    b
}

/// The extent block holding `runs` (at most [`BLOCK_EXTENTS`]) for inode `ino`.
pub fn extent_leaf(runs: &[Run], seed: u32) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    extent_header(&mut b, runs.len(), BLOCK_EXTENTS, 0);
    for (i, r) in runs.iter().enumerate() {
        extent(&mut b[12 + 12 * i..], r);
    }
    let tail = 12 + 12 * BLOCK_EXTENTS;
    let csum = crc32c(seed, &b[..tail]);
    put32(&mut b, tail, csum);
    b
}

/// One inode's fields.
pub struct Inode {
    /// File type and permission bits.
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub links: u16,
    pub size: u64,
    /// Blocks the inode owns (data and extent blocks), in file system blocks.
    pub blocks: u64,
    pub flags: u32,
    pub block: [u8; 60],
}

/// The 256 bytes of inode `ino`, every time set to `epoch`, with its checksum.
pub fn inode(i: &Inode, epoch: u64, seed: u32) -> [u8; INODE_SIZE] {
    let mut b = [0u8; INODE_SIZE];
    let (time, extra) = time_fields(epoch);
    put16(&mut b, 0, i.mode);
    put16(&mut b, 2, i.uid as u16);
    put32(&mut b, 4, i.size as u32);
    for at in [8, 12, 16] {
        put32(&mut b, at, time); // atime, ctime, mtime
    }
    put16(&mut b, 24, i.gid as u16);
    put16(&mut b, 26, i.links);
    let sectors = i.blocks * (BLOCK as u64 / 512);
    put32(&mut b, 28, sectors as u32);
    put32(&mut b, 32, i.flags);
    b[40..100].copy_from_slice(&i.block);
    put32(&mut b, 108, (i.size >> 32) as u32);
    put16(&mut b, 116, (sectors >> 32) as u16);
    put16(&mut b, 120, (i.uid >> 16) as u16);
    put16(&mut b, 122, (i.gid >> 16) as u16);
    put16(&mut b, 128, EXTRA_ISIZE);
    for at in [132, 136, 140, 148] {
        put32(&mut b, at, extra); // ctime, mtime, atime, crtime _extra
    }
    put32(&mut b, 144, time); // crtime
    let csum = crc32c(seed, &b);
    put16(&mut b, 124, csum as u16);
    put16(&mut b, 130, (csum >> 16) as u16);
    b
}

/// A directory entry: name, inode, type.
pub struct DirEntry<'a> {
    pub name: &'a [u8],
    pub ino: u32,
    pub file_type: u8,
}

fn entry_len(name_len: usize) -> usize {
    (8 + name_len).div_ceil(4) * 4
}

/// A linear directory's blocks: the entries in order, each block's last entry
/// stretched to the checksum tail, at least `min_blocks` blocks (empty ones hold one
/// unused entry). `seed` is the directory inode's checksum seed.
pub fn dir_blocks(entries: &[DirEntry], min_blocks: usize, seed: u32) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    let mut block = vec![0u8; BLOCK];
    let mut used = 0;
    let mut last = 0;
    let finish = |out: &mut Vec<u8>, block: &mut Vec<u8>, used: usize, last: usize| {
        if used == 0 {
            put16(block, 4, DIR_SPACE as u16);
        } else {
            put16(block, last + 4, (DIR_SPACE - last) as u16);
        }
        // The tail: a fake entry of inode 0, length 12, type 0xDE, then the checksum.
        put16(block, DIR_SPACE + 4, 12);
        block[DIR_SPACE + 7] = 0xDE;
        let csum = crc32c(seed, &block[..DIR_SPACE]);
        put32(block, DIR_SPACE + 8, csum);
        out.extend_from_slice(block);
        block.fill(0);
    };
    for e in entries {
        let len = entry_len(e.name.len());
        if used + len > DIR_SPACE {
            finish(&mut out, &mut block, used, last);
            used = 0;
        }
        put32(&mut block, used, e.ino);
        put16(&mut block, used + 4, len as u16);
        block[used + 6] = e.name.len() as u8;
        block[used + 7] = e.file_type;
        block[used + 8..used + 8 + e.name.len()].copy_from_slice(e.name);
        last = used;
        used += len;
    }
    if used > 0 || out.is_empty() {
        finish(&mut out, &mut block, used, last);
    }
    while out.len() < min_blocks * BLOCK {
        finish(&mut out, &mut block, 0, 0);
    }
    out
}

/// Blocks a linear directory of entries with these name lengths takes.
pub fn dir_block_count(name_lens: impl Iterator<Item = usize>) -> u64 {
    let (mut blocks, mut used) = (1, 0);
    for n in name_lens {
        let len = entry_len(n);
        if used + len > DIR_SPACE {
            blocks += 1;
            used = 0;
        }
        used += len;
    }
    blocks
}

/// The jbd2 superblock (big-endian, version 2, no features) of an empty journal of
/// `blocks` blocks: nothing to replay (`s_start` 0).
pub fn journal_superblock(blocks: u32, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK];
    let mut put = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    put(0x0, 0xC03B_3998); // h_magic
    put(0x4, 4); // h_blocktype: superblock v2
    put(0xC, BLOCK as u32); // s_blocksize
    put(0x10, blocks); // s_maxlen
    put(0x14, 1); // s_first
    put(0x18, 1); // s_sequence
    put(0x40, 1); // s_nr_users
    b[0x30..0x40].copy_from_slice(uuid);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The standard CRC-32C of "123456789" is 0xE3069283: with the inversions
        // ext4 leaves out.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }

    #[test]
    fn times_past_2038_keep_their_epoch_bits() {
        assert_eq!(time_fields(1_700_000_000), (1_700_000_000, 0));
        assert_eq!(time_fields(1 << 31), (1 << 31, 1));
        assert_eq!(time_fields((1 << 32) + 5), (5, 1));
    }

    #[test]
    fn directory_blocks_end_in_a_checksum_tail_and_fill_every_block() {
        let names: Vec<String> = (0..600).map(|i| format!("entry-{i:04}")).collect();
        let entries: Vec<DirEntry> = names
            .iter()
            .map(|n| DirEntry {
                name: n.as_bytes(),
                ino: 12,
                file_type: FT_REG,
            })
            .collect();
        let bytes = dir_blocks(&entries, 1, 7);
        let blocks = dir_block_count(names.iter().map(String::len)) as usize;
        assert_eq!(bytes.len(), blocks * BLOCK);
        assert!(blocks > 1);
        for block in bytes.chunks(BLOCK) {
            let mut at = 0;
            while at < DIR_SPACE {
                at += u16::from_le_bytes([block[at + 4], block[at + 5]]) as usize;
            }
            assert_eq!(at, DIR_SPACE, "entries reach the tail exactly");
            assert_eq!(block[DIR_SPACE + 7], 0xDE);
        }
    }
}
