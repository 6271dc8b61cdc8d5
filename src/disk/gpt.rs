//! GUID Partition Tables (UEFI 2.10, chapter 5), written natively: a protective MBR,
//! the primary header and entry array at LBA 1 and 2, and their backups at the end of
//! the disk. 512-byte sectors, 128 entries of 128 bytes, every field fixed by the
//! caller, so the bytes depend only on the partitions and GUIDs given.
//!
//! Also reads a table back ([`read_partitions`]) for `verify` and `trace`, checking
//! signature and both CRCs.

use crate::digest::Sha256Digest;

pub const SECTOR: u64 = 512;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;
/// Sectors taken by one entry array (128 * 128 bytes).
const ENTRY_SECTORS: u64 = ENTRIES * ENTRY_SIZE / SECTOR;
/// The first partition starts at 1 MiB, the alignment every tool uses.
pub const FIRST_PARTITION_OFFSET: u64 = 1 << 20;

/// "Linux root (x86-64)" from the Discoverable Partitions Specification.
pub const LINUX_ROOT_X86_64: Guid = Guid([
    0x4f, 0x68, 0xbc, 0xe3, 0xe8, 0xcd, 0x4d, 0xb1, 0x96, 0xe7, 0xfb, 0xca, 0xf9, 0x84, 0xb7, 0x09,
]);

/// A GUID in its textual (RFC 9562) byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// A name-based GUID: SHA-256 of `parts`, cut to 16 bytes, marked version 8
    /// (RFC 9562 "custom") with the RFC variant. Never random.
    pub fn derived(parts: &[&[u8]]) -> Guid {
        let mut bytes = Vec::new();
        for part in parts {
            bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
            bytes.extend_from_slice(part);
        }
        let digest = Sha256Digest::of(&bytes);
        let mut g = [0u8; 16];
        g.copy_from_slice(&digest.as_bytes()[..16]);
        g[6] = (g[6] & 0x0f) | 0x80;
        g[8] = (g[8] & 0x3f) | 0x80;
        Guid(g)
    }

    /// On-disk (mixed-endian) form: the first three fields little-endian.
    fn to_disk(self) -> [u8; 16] {
        let g = self.0;
        let mut d = g;
        d[0..4].copy_from_slice(&[g[3], g[2], g[1], g[0]]);
        d[4..6].copy_from_slice(&[g[5], g[4]]);
        d[6..8].copy_from_slice(&[g[7], g[6]]);
        d
    }

    fn from_disk(d: &[u8]) -> Guid {
        let mut g = [0u8; 16];
        g.copy_from_slice(&d[..16]);
        g[0..4].copy_from_slice(&[d[3], d[2], d[1], d[0]]);
        g[4..6].copy_from_slice(&[d[5], d[4]]);
        g[6..8].copy_from_slice(&[d[7], d[6]]);
        Guid(g)
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = hex::encode(self.0);
        write!(
            f,
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub type_guid: Guid,
    pub guid: Guid,
    /// Byte offset and length, whole sectors.
    pub offset: u64,
    pub size: u64,
    pub name: String,
}

/// The sectors of a disk that hold the partition table: the start (MBR, primary
/// header, primary entries) and the end (backup entries, backup header).
pub struct Table {
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
}

/// Lays out the tables of a `disk_size`-byte disk (a whole number of sectors).
pub fn table(disk_size: u64, disk_guid: Guid, partitions: &[Partition]) -> Table {
    let last_lba = disk_size / SECTOR - 1;
    let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in partitions.iter().enumerate() {
        let e = &mut entries[i * ENTRY_SIZE as usize..][..ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&p.type_guid.to_disk());
        e[16..32].copy_from_slice(&p.guid.to_disk());
        e[32..40].copy_from_slice(&(p.offset / SECTOR).to_le_bytes());
        e[40..48].copy_from_slice(&((p.offset + p.size) / SECTOR - 1).to_le_bytes());
        for (j, unit) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
        }
    }
    let entries_crc = crc32fast::hash(&entries);
    let header = |current: u64, backup: u64, entries_lba: u64| {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&(2 + ENTRY_SECTORS).to_le_bytes());
        h[48..56].copy_from_slice(&(last_lba - 1 - ENTRY_SECTORS).to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.to_disk());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let mut mbr = vec![0u8; SECTOR as usize];
    let p = &mut mbr[446..462];
    p[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    p[4] = 0xee;
    p[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    p[8..12].copy_from_slice(&1u32.to_le_bytes());
    let sectors = u32::try_from(last_lba).unwrap_or(u32::MAX);
    p[12..16].copy_from_slice(&sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;

    let mut head = mbr;
    head.extend_from_slice(&header(1, last_lba, 2));
    head.extend_from_slice(&entries);
    let mut tail = entries;
    tail.extend_from_slice(&header(last_lba, 1, last_lba - ENTRY_SECTORS));
    Table { head, tail }
}

#[derive(Debug, thiserror::Error)]
pub enum GptError {
    #[error("no GUID partition table: {0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads the primary table of a disk: its GUID and partitions, checking the header
/// signature, the header CRC and the entry array CRC.
pub fn read_partitions(
    disk: &mut (impl std::io::Read + std::io::Seek),
) -> Result<(Guid, Vec<Partition>), GptError> {
    use std::io::SeekFrom;
    let mut header = vec![0u8; SECTOR as usize];
    disk.seek(SeekFrom::Start(SECTOR))?;
    disk.read_exact(&mut header)?;
    if &header[0..8] != b"EFI PART" {
        return Err(GptError::Invalid("LBA 1 lacks the `EFI PART` signature"));
    }
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let header_size = u32_at(&header, 12) as usize;
    if !(92..=SECTOR as usize).contains(&header_size) {
        return Err(GptError::Invalid("header size out of range"));
    }
    let mut check = header[..header_size].to_vec();
    check[16..20].fill(0);
    if crc32fast::hash(&check) != u32_at(&header, 16) {
        return Err(GptError::Invalid("header CRC mismatch"));
    }
    let (count, size) = (u32_at(&header, 80) as u64, u32_at(&header, 84) as u64);
    if size < 128 || count * size > 1 << 20 {
        return Err(GptError::Invalid("entry array size out of range"));
    }
    let mut entries = vec![0u8; (count * size) as usize];
    disk.seek(SeekFrom::Start(u64_at(&header, 72) * SECTOR))?;
    disk.read_exact(&mut entries)?;
    if crc32fast::hash(&entries) != u32_at(&header, 88) {
        return Err(GptError::Invalid("partition entry array CRC mismatch"));
    }
    let mut partitions = Vec::new();
    for e in entries.chunks(size as usize) {
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let (first, last) = (u64_at(e, 32), u64_at(e, 40));
        if last < first {
            return Err(GptError::Invalid("a partition ends before it starts"));
        }
        let units: Vec<u16> = e[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        partitions.push(Partition {
            type_guid: Guid::from_disk(&e[0..16]),
            guid: Guid::from_disk(&e[16..32]),
            offset: first * SECTOR,
            size: (last - first + 1) * SECTOR,
            name: String::from_utf16_lossy(&units),
        });
    }
    Ok((Guid::from_disk(&header[56..72]), partitions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_table_reads_back_and_its_backup_mirrors_it() {
        let disk_size = 4 << 20;
        let part = Partition {
            type_guid: LINUX_ROOT_X86_64,
            guid: Guid::derived(&[b"p"]),
            offset: FIRST_PARTITION_OFFSET,
            size: 2 << 20,
            name: "root".into(),
        };
        let disk_guid = Guid::derived(&[b"d"]);
        let t = table(disk_size, disk_guid, std::slice::from_ref(&part));
        let mut disk = vec![0u8; disk_size as usize];
        disk[..t.head.len()].copy_from_slice(&t.head);
        let tail_at = disk.len() - t.tail.len();
        disk[tail_at..].copy_from_slice(&t.tail);
        let (guid, parts) = read_partitions(&mut std::io::Cursor::new(&disk)).unwrap();
        assert_eq!((guid, parts), (disk_guid, vec![part]));
        assert_eq!(&disk[tail_at..tail_at + 16384], &disk[1024..1024 + 16384]);
        assert_eq!(&disk[disk.len() - 512..][..8], b"EFI PART");
        disk[1024 + 60] ^= 1;
        assert!(read_partitions(&mut std::io::Cursor::new(&disk)).is_err());
    }

    #[test]
    fn guids_are_derived_and_print_in_rfc_order() {
        assert_eq!(
            LINUX_ROOT_X86_64.to_string(),
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
        );
        let g = Guid::derived(&[b"a", b"b"]);
        assert_eq!(g, Guid::derived(&[b"a", b"b"]));
        assert_ne!(g, Guid::derived(&[b"ab"]));
        assert_eq!(g.0[6] >> 4, 8);
        assert_eq!(Guid::from_disk(&g.to_disk()), g);
    }
}
