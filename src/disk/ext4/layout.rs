//! Where everything goes: block groups of 32,768 blocks, each starting with its
//! superblock and descriptor table copies (groups 0, 1 and the powers of 3, 5 and 7:
//! `sparse_super`), then its block bitmap, inode bitmap and inode table, then data.
//! Data blocks are handed out in one fixed order from the first free block on, so
//! every group's used blocks are a prefix of it, and so are its used inodes.

use super::format::{Run, BLOCK, INODE_SIZE, MAX_EXTENT_LEN};

pub const BLOCKS_PER_GROUP: u64 = 32768;
/// A last group smaller than its own metadata plus this many blocks is left out, as
/// mke2fs does.
const MIN_LAST_GROUP_DATA: u64 = 50;
const INODES_PER_BLOCK: u64 = (BLOCK / INODE_SIZE) as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub blocks: u64,
    pub groups: u32,
    pub gdt_blocks: u64,
    pub inodes_per_group: u32,
    pub itable_blocks: u64,
}

impl Geometry {
    /// The geometry of a file system of `size` bytes with room for `inodes` inodes;
    /// `None` if it cannot have that many or is too small to hold its own metadata.
    pub fn new(size: u64, inodes: u64) -> Option<Geometry> {
        let mut blocks = (size / BLOCK as u64).min(u64::from(u32::MAX));
        loop {
            let groups = blocks.div_ceil(BLOCKS_PER_GROUP);
            if groups == 0 {
                return None;
            }
            let per_group =
                inodes.div_ceil(groups).div_ceil(INODES_PER_BLOCK).max(1) * INODES_PER_BLOCK;
            if per_group > BLOCK as u64 * 8 {
                return None;
            }
            let geo = Geometry {
                blocks,
                groups: groups as u32,
                gdt_blocks: (groups * 32).div_ceil(BLOCK as u64),
                inodes_per_group: per_group as u32,
                itable_blocks: per_group / INODES_PER_BLOCK,
            };
            let last = geo.groups - 1;
            if geo.group_blocks(last) >= geo.meta_blocks(last) + MIN_LAST_GROUP_DATA {
                return Some(geo);
            }
            if groups == 1 {
                return None;
            }
            blocks = u64::from(last) * BLOCKS_PER_GROUP;
        }
    }

    pub fn inodes(&self) -> u64 {
        u64::from(self.groups) * u64::from(self.inodes_per_group)
    }

    pub fn group_start(&self, g: u32) -> u64 {
        u64::from(g) * BLOCKS_PER_GROUP
    }

    pub fn group_blocks(&self, g: u32) -> u64 {
        (self.blocks - self.group_start(g)).min(BLOCKS_PER_GROUP)
    }

    /// Whether group `g` holds a copy of the superblock and descriptors.
    pub fn has_super(&self, g: u32) -> bool {
        let power_of = |base: u32| {
            let mut n = base;
            while n < g {
                n *= base;
            }
            n == g
        };
        g <= 1 || power_of(3) || power_of(5) || power_of(7)
    }

    pub fn block_bitmap(&self, g: u32) -> u64 {
        self.group_start(g)
            + if self.has_super(g) {
                1 + self.gdt_blocks
            } else {
                0
            }
    }

    pub fn inode_bitmap(&self, g: u32) -> u64 {
        self.block_bitmap(g) + 1
    }

    pub fn inode_table(&self, g: u32) -> u64 {
        self.block_bitmap(g) + 2
    }

    /// Blocks of group `g` its metadata takes, from its start.
    pub fn meta_blocks(&self, g: u32) -> u64 {
        self.inode_table(g) + self.itable_blocks - self.group_start(g)
    }

    /// Blocks free for data in the whole file system.
    pub fn data_blocks(&self) -> u64 {
        (0..self.groups)
            .map(|g| self.group_blocks(g) - self.meta_blocks(g))
            .sum()
    }
}

/// Hands out data blocks in order; copied to try an allocation and take it back.
#[derive(Debug, Clone, Copy)]
pub struct Allocator<'g> {
    geo: &'g Geometry,
    group: u32,
    next: u64,
}

impl<'g> Allocator<'g> {
    pub fn new(geo: &'g Geometry) -> Self {
        Allocator {
            geo,
            group: 0,
            next: geo.group_start(0) + geo.meta_blocks(0),
        }
    }

    /// The next `count` blocks, as runs of at most [`MAX_EXTENT_LEN`] blocks that do
    /// not cross a group's metadata; `None` once the file system is full.
    pub fn take(&mut self, count: u64) -> Option<Vec<Run>> {
        let mut runs: Vec<Run> = Vec::new();
        let mut logical = 0u64;
        while logical < count {
            if self.group >= self.geo.groups {
                return None;
            }
            let end = self.geo.group_start(self.group) + self.geo.group_blocks(self.group);
            if self.next >= end {
                self.group += 1;
                if self.group < self.geo.groups {
                    self.next = self.geo.group_start(self.group) + self.geo.meta_blocks(self.group);
                }
                continue;
            }
            let len = (count - logical).min(end - self.next).min(MAX_EXTENT_LEN);
            match runs.last_mut() {
                Some(r)
                    if r.start + u64::from(r.len) == self.next
                        && u64::from(r.len) + len <= MAX_EXTENT_LEN =>
                {
                    r.len += len as u32;
                }
                _ => runs.push(Run {
                    logical: logical as u32,
                    start: self.next,
                    len: len as u32,
                }),
            }
            self.next += len;
            logical += len;
        }
        Some(runs)
    }

    /// Blocks of group `g` in use once allocation is over: a prefix of the group.
    pub fn used_blocks(&self, g: u32) -> u64 {
        use std::cmp::Ordering;
        match g.cmp(&self.group) {
            Ordering::Less => self.geo.group_blocks(g),
            Ordering::Equal => self.next - self.geo.group_start(g),
            Ordering::Greater => self.geo.meta_blocks(g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_superblocks_sit_in_groups_0_1_and_powers_of_3_5_7() {
        let geo = Geometry::new(64 << 30, 1 << 20).unwrap();
        let with: Vec<u32> = (0..geo.groups).filter(|&g| geo.has_super(g)).collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343]);
    }

    #[test]
    fn a_tiny_last_group_is_left_out() {
        let geo = Geometry::new((BLOCKS_PER_GROUP + 20) * 4096, 1000).unwrap();
        assert_eq!((geo.groups, geo.blocks), (1, BLOCKS_PER_GROUP));
        assert!(Geometry::new(40 * 4096, 16).is_none());
    }

    #[test]
    fn runs_skip_group_metadata_and_stop_at_the_longest_extent() {
        let geo = Geometry::new(3 * BLOCKS_PER_GROUP * 4096, 3 * 16).unwrap();
        let mut alloc = Allocator::new(&geo);
        let first = alloc.take(3).unwrap();
        assert_eq!(first.len(), 1);
        let all = alloc.take(geo.data_blocks() - 3).unwrap();
        // Group 0's rest, group 1 after its metadata, group 2 after its bitmaps.
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].start, geo.group_start(1) + geo.meta_blocks(1));
        assert_eq!(all[2].logical, all[1].logical + all[1].len);
        let mut full = alloc;
        assert!(full.take(1).is_none());
        assert_eq!(alloc.used_blocks(2), geo.group_blocks(2));
    }
}
