//! dm-verity for a read-only root (`vm.root.verity: true`), written natively: the hash
//! tree over the root file system image's bytes, in the on-disk format of
//! `veritysetup format` (cryptsetup's "DMVerity" format, hash type 1) with its
//! 512-byte superblock, so `veritysetup verify`/`open` and the kernel's dm-verity take
//! the root partition and the hash partition as they are.
//!
//! Fixed parameters: SHA-256, 4096-byte data and hash blocks, a 32-byte salt. Hash
//! type 1 hashes `salt || block`; each hash block holds 128 digests, zero-padded.
//! The hash device is the superblock's block, then the tree's levels from the top
//! (one block, whose salted hash is the root hash) down to the level that hashes the
//! data blocks. The salt comes from the image bytes ([`salt_for`]) and the superblock's
//! UUID is the hash partition's ([`partition_uuids`]), so the tree depends on the image
//! alone, never on threads or time.
//!
//! [`check`] walks a tree from a trusted root hash down, as the kernel does, and names
//! the first block that does not match: a hash block of the hash partition, or a data
//! block of the root partition.

use super::gpt::Guid;
use crate::digest::Sha256Digest;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// Data and hash block size.
pub const BLOCK_SIZE: u64 = 4096;
const DIGEST_SIZE: usize = 32;
const HASHES_PER_BLOCK: u64 = BLOCK_SIZE / DIGEST_SIZE as u64;
const HASHES_PER_BLOCK_BITS: u32 = HASHES_PER_BLOCK.trailing_zeros();
const SIGNATURE: &[u8; 8] = b"verity\0\0";
const SUPERBLOCK_SIZE: usize = 512;
/// The largest salt the superblock has room for.
const MAX_SALT: usize = 256;
/// Data blocks hashed per read (and per parallel batch).
const BATCH_BLOCKS: usize = 1024;

/// The verity hash partition's GPT name.
pub const HASH_PARTITION_NAME: &str = "root-verity";

/// "Root verity (x86-64)" (`root-x86-64-verity`) from the Discoverable Partitions
/// Specification.
pub const ROOT_VERITY_X86_64: Guid = Guid([
    0x2c, 0x73, 0x57, 0xed, 0xeb, 0xd2, 0x46, 0xd9, 0xae, 0xc1, 0x23, 0xd4, 0x37, 0xec, 0x2b, 0xf5,
]);

/// A hash tree as written, and as the provenance records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verity {
    /// Hex, as on the kernel command line (`roothash=`).
    pub roothash: String,
    /// Hex.
    pub salt: String,
    pub hash_algorithm: String,
    /// The on-disk hash format (`veritysetup --format`).
    pub format: u32,
    pub data_block_size: u64,
    pub hash_block_size: u64,
    pub data_blocks: u64,
    /// The data (root) partition's UUID: the root hash's first 128 bits.
    pub data_partition_uuid: String,
    /// The hash partition: its name, UUID (the root hash's last 128 bits) and size
    /// (the superblock's block and the tree).
    pub hash_partition: String,
    pub hash_partition_uuid: String,
    pub hash_size: u64,
}

impl Verity {
    fn root(&self) -> [u8; 32] {
        let mut root = [0u8; 32];
        hex::decode_to_slice(&self.roothash, &mut root).expect("a root hash cairn wrote");
        root
    }

    /// The GPT UUID of the data (root) partition.
    pub fn data_partition_guid(&self) -> Guid {
        partition_uuids(&self.root()).0
    }

    /// The hash partition, at offset 0 until the disk is laid out.
    pub fn hash_partition(&self) -> super::gpt::Partition {
        super::gpt::Partition {
            type_guid: ROOT_VERITY_X86_64,
            guid: partition_uuids(&self.root()).1,
            offset: 0,
            size: self.hash_size,
            name: self.hash_partition.clone(),
        }
    }
}

/// The salt for an image with SHA-256 `image`: SHA-256 of a fixed label and that
/// digest, so equal images get equal trees and different images different salts.
pub fn salt_for(image: &Sha256Digest) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"cairn dm-verity salt\0");
    h.update(image.as_bytes());
    h.finalize().into()
}

/// The GPT UUIDs systemd derives from a root hash (systemd-veritysetup-generator,
/// systemd-gpt-auto-generator): the data partition's is its first 128 bits, the hash
/// partition's its last 128 bits, taken as they are.
pub fn partition_uuids(roothash: &[u8; 32]) -> (Guid, Guid) {
    let mut data = [0u8; 16];
    let mut hash = [0u8; 16];
    data.copy_from_slice(&roothash[..16]);
    hash.copy_from_slice(&roothash[16..]);
    (Guid(data), Guid(hash))
}

/// Where each level of the tree is in the hash device: `(first block, blocks)`, level 0
/// (hashing the data) first; the top level is stored first, right after the
/// superblock's block. Empty for a single data block, whose hash is the root hash.
fn levels(data_blocks: u64) -> Vec<(u64, u64)> {
    let mut count = 0;
    while HASHES_PER_BLOCK_BITS * count < 64
        && (data_blocks - 1) >> (HASHES_PER_BLOCK_BITS * count) != 0
    {
        count += 1;
    }
    let mut levels = vec![(0, 0); count as usize];
    let mut position = 1;
    for i in (0..count).rev() {
        let shift = HASHES_PER_BLOCK_BITS * (i + 1);
        let blocks = data_blocks.div_ceil(1u64 << shift.min(63));
        levels[i as usize] = (position, blocks);
        position += blocks;
    }
    levels
}

fn salted(salt: &[u8], block: &[u8]) -> [u8; DIGEST_SIZE] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(block);
    h.finalize().into()
}

/// The salted digests of `blocks` (a whole number of blocks), in order.
fn digests(salt: &[u8], blocks: &[u8]) -> Vec<[u8; DIGEST_SIZE]> {
    let mut out = Vec::with_capacity(blocks.len() / BLOCK_SIZE as usize);
    blocks
        .par_chunks(BLOCK_SIZE as usize)
        .map(|b| salted(salt, b))
        .collect_into_vec(&mut out);
    out
}

/// Digests packed into whole hash blocks, each block zero-padded.
fn pack(digests: &[[u8; DIGEST_SIZE]]) -> Vec<u8> {
    let blocks = (digests.len() as u64).div_ceil(HASHES_PER_BLOCK);
    let mut out = vec![0u8; (blocks * BLOCK_SIZE) as usize];
    for (slot, d) in out.chunks_mut(DIGEST_SIZE).zip(digests) {
        slot.copy_from_slice(d);
    }
    out
}

/// Reads `data` to its end in batches of whole blocks, calling `each` with the
/// salted digests of every batch. The length must be a whole number of blocks.
fn hash_data(
    data: &mut impl Read,
    salt: &[u8],
    mut each: impl FnMut(u64, &[[u8; DIGEST_SIZE]]) -> Result<(), VerityError>,
    path: &Path,
) -> Result<u64, VerityError> {
    let mut buf = vec![0u8; BATCH_BLOCKS * BLOCK_SIZE as usize];
    let mut blocks = 0u64;
    loop {
        let n = super::read_full(data, &mut buf).map_err(VerityError::io(path))?;
        if n % BLOCK_SIZE as usize != 0 {
            return Err(VerityError::NotWholeBlocks {
                path: path.display().to_string(),
                size: blocks * BLOCK_SIZE + n as u64,
            });
        }
        if n == 0 {
            return Ok(blocks);
        }
        each(blocks, &digests(salt, &buf[..n]))?;
        blocks += (n as u64) / BLOCK_SIZE;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerityError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path} is {size} bytes, not a whole number of {BLOCK_SIZE}-byte blocks")]
    NotWholeBlocks { path: String, size: u64 },
    #[error("partition `{partition}` holds no dm-verity superblock cairn writes: {why}")]
    Superblock { partition: String, why: String },
    #[error("partition `{partition}` block {block} (hash tree level {level}, bytes {} to {}) does not match {parent}", block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE - 1)]
    HashBlock {
        partition: String,
        block: u64,
        level: usize,
        /// What it was checked against: the root hash, or a block one level up.
        parent: String,
    },
    #[error("partition `{partition}` block {block} (bytes {} to {}) does not match its hash in partition `{hash_partition}`: the data was changed", block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE - 1)]
    DataBlock {
        partition: String,
        block: u64,
        hash_partition: String,
    },
}

impl VerityError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> VerityError + '_ {
        move |source| VerityError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Writes the hash device of the image at `data` (a whole number of blocks) to
/// `hash_out`, a new file; returns the tree's parameters.
pub fn format(data: &Path, salt: [u8; 32], hash_out: &Path) -> Result<Verity, VerityError> {
    let mut file = File::open(data).map_err(VerityError::io(data))?;
    let mut level0 = Vec::new();
    let data_blocks = hash_data(
        &mut file,
        &salt,
        |_, batch| {
            level0.extend_from_slice(batch);
            Ok(())
        },
        data,
    )?;
    if data_blocks == 0 {
        return Err(VerityError::NotWholeBlocks {
            path: data.display().to_string(),
            size: 0,
        });
    }
    // Each level packs the digests of the one below; the top is one block.
    let layout = levels(data_blocks);
    let mut stored: Vec<Vec<u8>> = Vec::with_capacity(layout.len());
    let mut below = level0;
    for _ in &layout {
        let packed = pack(&below);
        below = digests(&salt, &packed);
        stored.push(packed);
    }
    let root: [u8; 32] = below[0];
    let (data_uuid, hash_uuid) = partition_uuids(&root);

    let mut out =
        io::BufWriter::new(File::create_new(hash_out).map_err(VerityError::io(hash_out))?);
    let mut first = superblock(hash_uuid, data_blocks, &salt);
    first.resize(BLOCK_SIZE as usize, 0);
    out.write_all(&first).map_err(VerityError::io(hash_out))?;
    for level in stored.iter().rev() {
        out.write_all(level).map_err(VerityError::io(hash_out))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| VerityError::io(hash_out)(e.into_error()))?;
    file.sync_all().map_err(VerityError::io(hash_out))?;
    let hash_blocks = 1 + layout.iter().map(|(_, n)| n).sum::<u64>();
    Ok(Verity {
        roothash: hex::encode(root),
        salt: hex::encode(salt),
        hash_algorithm: "sha256".into(),
        format: 1,
        data_block_size: BLOCK_SIZE,
        hash_block_size: BLOCK_SIZE,
        data_blocks,
        data_partition_uuid: data_uuid.to_string(),
        hash_partition: HASH_PARTITION_NAME.into(),
        hash_partition_uuid: hash_uuid.to_string(),
        hash_size: hash_blocks * BLOCK_SIZE,
    })
}

/// The superblock (cryptsetup's `struct verity_sb`, little-endian, 512 bytes).
fn superblock(uuid: Guid, data_blocks: u64, salt: &[u8]) -> Vec<u8> {
    let mut sb = vec![0u8; SUPERBLOCK_SIZE];
    sb[0..8].copy_from_slice(SIGNATURE);
    sb[8..12].copy_from_slice(&1u32.to_le_bytes()); // superblock version
    sb[12..16].copy_from_slice(&1u32.to_le_bytes()); // hash type: normal (salt first)
    sb[16..32].copy_from_slice(&uuid.0);
    sb[32..38].copy_from_slice(b"sha256");
    sb[64..68].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
    sb[68..72].copy_from_slice(&(BLOCK_SIZE as u32).to_le_bytes());
    sb[72..80].copy_from_slice(&data_blocks.to_le_bytes());
    sb[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
    sb[88..88 + salt.len()].copy_from_slice(salt);
    sb
}

/// What a checked tree's superblock says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub uuid: Guid,
    pub salt: Vec<u8>,
    pub data_blocks: u64,
}

/// Reads the superblock at the start of `hash`, the hash partition's bytes: the
/// parameters cairn writes, and nothing else, are accepted.
fn read_superblock(hash: &[u8], partition: &str) -> Result<Checked, VerityError> {
    let bad = |why: String| VerityError::Superblock {
        partition: partition.to_string(),
        why,
    };
    if hash.len() < BLOCK_SIZE as usize {
        return Err(bad(format!("it is only {} bytes long", hash.len())));
    }
    let sb = &hash[..SUPERBLOCK_SIZE];
    let u32_at = |at: usize| u32::from_le_bytes(sb[at..at + 4].try_into().expect("4 bytes"));
    if &sb[0..8] != SIGNATURE {
        return Err(bad("no `verity` signature at its start".into()));
    }
    if u32_at(8) != 1 || u32_at(12) != 1 {
        return Err(bad(format!(
            "superblock version {} and hash type {}, expected 1 and 1",
            u32_at(8),
            u32_at(12)
        )));
    }
    let algorithm = &sb[32..64];
    let name_len = algorithm.iter().position(|&b| b == 0).unwrap_or(32);
    if &algorithm[..name_len] != b"sha256" {
        return Err(bad(format!(
            "hash algorithm {:?}, expected sha256",
            String::from_utf8_lossy(&algorithm[..name_len])
        )));
    }
    if u32_at(64) as u64 != BLOCK_SIZE || u32_at(68) as u64 != BLOCK_SIZE {
        return Err(bad(format!(
            "block sizes {} and {}, expected {BLOCK_SIZE}",
            u32_at(64),
            u32_at(68)
        )));
    }
    let data_blocks = u64::from_le_bytes(sb[72..80].try_into().expect("8 bytes"));
    let salt_size = u16::from_le_bytes([sb[80], sb[81]]) as usize;
    if salt_size > MAX_SALT {
        return Err(bad(format!("salt size {salt_size} exceeds {MAX_SALT}")));
    }
    if data_blocks == 0 {
        return Err(bad("it covers no data blocks".into()));
    }
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&sb[16..32]);
    Ok(Checked {
        uuid: Guid(uuid),
        salt: sb[88..88 + salt_size].to_vec(),
        data_blocks,
    })
}

/// Names of the two partitions, for errors.
pub struct Partitions<'a> {
    pub data: &'a str,
    pub hash: &'a str,
}

/// Checks the tree in `hash` (the hash partition's bytes) against the trusted
/// `roothash`, top down, then every data block of `data` (the data partition, read
/// to its end, at least as long as the superblock says) against the tree.
pub fn check(
    data: &mut impl Read,
    data_path: &Path,
    hash: &[u8],
    roothash: &[u8; 32],
    names: Partitions,
) -> Result<Checked, VerityError> {
    let sb = read_superblock(hash, names.hash)?;
    let layout = levels(sb.data_blocks);
    let end = layout.first().map_or(1, |(first, n)| first + n);
    if (hash.len() as u64) < end * BLOCK_SIZE {
        return Err(VerityError::Superblock {
            partition: names.hash.to_string(),
            why: format!(
                "its tree for {} data blocks needs {} bytes, the partition has {}",
                sb.data_blocks,
                end * BLOCK_SIZE,
                hash.len()
            ),
        });
    }
    let block_at = |b: u64| &hash[(b * BLOCK_SIZE) as usize..((b + 1) * BLOCK_SIZE) as usize];
    let hash_block = |level: usize, block: u64, parent: String| VerityError::HashBlock {
        partition: names.hash.to_string(),
        block,
        level,
        parent,
    };
    // Each level's blocks, checked against the digests one level up (already checked).
    if let Some(&(top, _)) = layout.last() {
        if salted(&sb.salt, block_at(top)) != *roothash {
            return Err(hash_block(layout.len() - 1, top, "the root hash".into()));
        }
    }
    for level in (0..layout.len().saturating_sub(1)).rev() {
        let (first, blocks) = layout[level];
        let (parent_first, _) = layout[level + 1];
        let parents = &hash[(parent_first * BLOCK_SIZE) as usize..];
        let found = digests(
            &sb.salt,
            &hash[(first * BLOCK_SIZE) as usize..((first + blocks) * BLOCK_SIZE) as usize],
        );
        if let Some(i) = (0..blocks as usize)
            .find(|&i| found[i][..] != parents[i * DIGEST_SIZE..(i + 1) * DIGEST_SIZE])
        {
            let parent = parent_first + i as u64 / HASHES_PER_BLOCK;
            return Err(hash_block(
                level,
                first + i as u64,
                format!("its hash in block {parent} (level {})", level + 1),
            ));
        }
    }
    let leaves: &[u8] = match layout.first() {
        Some(&(first, _)) => &hash[(first * BLOCK_SIZE) as usize..],
        None => roothash,
    };
    let data_blocks = sb.data_blocks;
    let mut limited = data.take(data_blocks * BLOCK_SIZE);
    let read = hash_data(
        &mut limited,
        &sb.salt,
        |at, batch| match batch.iter().enumerate().find(|(i, d)| {
            let j = (at as usize + i) * DIGEST_SIZE;
            d[..] != leaves[j..j + DIGEST_SIZE]
        }) {
            Some((i, _)) => Err(VerityError::DataBlock {
                partition: names.data.to_string(),
                block: at + i as u64,
                hash_partition: names.hash.to_string(),
            }),
            None => Ok(()),
        },
        data_path,
    )?;
    if read != data_blocks {
        return Err(VerityError::Superblock {
            partition: names.hash.to_string(),
            why: format!(
                "it covers {data_blocks} data blocks, partition `{}` has only {read}",
                names.data
            ),
        });
    }
    Ok(sb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_cryptsetup_layout() {
        assert_eq!(levels(1), vec![]);
        assert_eq!(levels(2), vec![(1, 1)]);
        assert_eq!(levels(128), vec![(1, 1)]);
        assert_eq!(levels(129), vec![(2, 2), (1, 1)]);
        // 16 MiB: 32 level-0 blocks under one top block.
        assert_eq!(levels(4096), vec![(2, 32), (1, 1)]);
        assert_eq!(levels(16385), vec![(4, 129), (2, 2), (1, 1)]);
    }

    fn image(blocks: usize) -> Vec<u8> {
        (0..blocks * BLOCK_SIZE as usize)
            .map(|i| (i / 4096 * 31 + i % 251) as u8)
            .collect()
    }

    fn formatted(blocks: usize) -> (tempfile::TempDir, Vec<u8>, Vec<u8>, Verity) {
        let dir = tempfile::tempdir().unwrap();
        let data = image(blocks);
        std::fs::write(dir.path().join("data"), &data).unwrap();
        let salt = salt_for(&Sha256Digest::of(&data));
        let v = format(&dir.path().join("data"), salt, &dir.path().join("hash")).unwrap();
        let hash = std::fs::read(dir.path().join("hash")).unwrap();
        (dir, data, hash, v)
    }

    fn checked(data: &[u8], hash: &[u8], v: &Verity) -> Result<Checked, VerityError> {
        let root: [u8; 32] = hex::decode(&v.roothash).unwrap().try_into().unwrap();
        check(
            &mut &data[..],
            Path::new("data"),
            hash,
            &root,
            Partitions {
                data: "root",
                hash: HASH_PARTITION_NAME,
            },
        )
    }

    #[test]
    fn a_written_tree_checks_and_names_the_block_changed() {
        let (_dir, mut data, mut hash, v) = formatted(300);
        assert_eq!(v.data_blocks, 300);
        assert_eq!(v.hash_size, (1 + 1 + 3) * BLOCK_SIZE);
        assert_eq!(hash.len() as u64, v.hash_size);
        let sb = checked(&data, &hash, &v).unwrap();
        assert_eq!(sb.uuid.to_string(), v.hash_partition_uuid);
        assert_eq!(hex::encode(&sb.salt), v.salt);
        assert_eq!(
            &v.data_partition_uuid.replace('-', "")[..],
            &v.roothash[..32]
        );
        assert_eq!(
            &v.hash_partition_uuid.replace('-', "")[..],
            &v.roothash[32..]
        );

        data[257 * 4096 + 9] ^= 1;
        let e = checked(&data, &hash, &v).unwrap_err();
        assert!(
            matches!(e, VerityError::DataBlock { block: 257, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("partition `root` block 257"), "{e}");
        data[257 * 4096 + 9] ^= 1;

        // Level 0 is blocks 2..5 (the top, block 1, after the superblock's).
        hash[3 * 4096 + 100] ^= 1;
        let e = checked(&data, &hash, &v).unwrap_err();
        assert!(
            matches!(
                e,
                VerityError::HashBlock {
                    block: 3,
                    level: 0,
                    ..
                }
            ),
            "{e}"
        );
        hash[3 * 4096 + 100] ^= 1;
        hash[4096 + 5] ^= 1;
        let e = checked(&data, &hash, &v).unwrap_err();
        assert!(
            e.to_string().contains("does not match the root hash"),
            "{e}"
        );
        hash[4096 + 5] ^= 1;
        hash[0] ^= 1;
        assert!(matches!(
            checked(&data, &hash, &v),
            Err(VerityError::Superblock { .. })
        ));
    }

    #[test]
    fn the_tree_depends_only_on_the_image() {
        let (_a, _, hash_a, va) = formatted(129);
        let (_b, _, hash_b, vb) = formatted(129);
        assert_eq!((hash_a, va.clone()), (hash_b, vb));
        let (_c, _, _, vc) = formatted(130);
        assert_ne!(va.roothash, vc.roothash);
        assert_ne!(va.salt, vc.salt);
    }

    #[test]
    fn one_data_block_is_its_own_root() {
        let (_dir, data, hash, v) = formatted(1);
        assert_eq!(hash.len() as u64, BLOCK_SIZE);
        let salt = hex::decode(&v.salt).unwrap();
        assert_eq!(v.roothash, hex::encode(salted(&salt, &data)));
        checked(&data, &hash, &v).unwrap();
    }
}
