//! qcow2 (version 3, as QEMU's `docs/interop/qcow2.txt` describes it), written natively
//! from the raw disk: 64 KiB clusters, 16-bit refcounts, no backing file, no
//! compression, no snapshots, no header extensions. Clusters that are all zeros stay
//! unallocated (they read as zeros). The layout is fixed: header, L1 table, refcount
//! table, refcount blocks, L2 tables, then the data clusters in guest order, each
//! allocated cluster with refcount 1; so the bytes depend only on the raw disk.

use crate::digest::Sha256Digest;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 8-byte entries per L1/L2/refcount-table cluster.
const ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts per refcount block.
const REFCOUNTS: u64 = CLUSTER / 2;
const HEADER_LENGTH: u32 = 104;
/// "The cluster is in use by exactly one table entry": set on L1 and L2 entries of
/// clusters whose refcount is 1.
const COPIED: u64 = 1 << 63;

/// Where everything goes in the image, from the raw disk's size and which of its
/// clusters hold data.
struct Layout {
    virtual_size: u64,
    l1_entries: u64,
    l1_at: u64,
    refcount_table_at: u64,
    refcount_table_clusters: u64,
    refcount_blocks: u64,
    /// Per L1 entry, the offset of its L2 table (0: no data in its range).
    l2_at: Vec<u64>,
    /// Per guest cluster, the offset of its data (0: all zeros, unallocated).
    data_at: Vec<u64>,
    total_clusters: u64,
}

fn clusters(bytes: u64) -> u64 {
    bytes.div_ceil(CLUSTER)
}

fn layout(virtual_size: u64, has_data: &[bool]) -> Layout {
    let l1_entries = clusters(virtual_size).div_ceil(ENTRIES);
    let l1_clusters = clusters(l1_entries * 8).max(1);
    let l2_tables = (0..l1_entries as usize)
        .filter(|&i| {
            has_data[i * ENTRIES as usize..]
                .iter()
                .take(ENTRIES as usize)
                .any(|&d| d)
        })
        .count() as u64;
    let data_clusters = has_data.iter().filter(|&&d| d).count() as u64;
    // The refcount structures count themselves: grow them until they cover everything.
    let (mut table_clusters, mut blocks) = (1u64, 1u64);
    loop {
        let total = 1 + l1_clusters + table_clusters + blocks + l2_tables + data_clusters;
        let need_blocks = total.div_ceil(REFCOUNTS);
        let need_table = clusters(need_blocks * 8).max(1);
        if need_blocks == blocks && need_table == table_clusters {
            break;
        }
        (blocks, table_clusters) = (need_blocks.max(blocks), need_table.max(table_clusters));
    }
    let l1_at = CLUSTER;
    let refcount_table_at = l1_at + l1_clusters * CLUSTER;
    let mut next = refcount_table_at + (table_clusters + blocks) * CLUSTER;
    let mut l2_at = vec![0u64; l1_entries as usize];
    for (i, at) in l2_at.iter_mut().enumerate() {
        let range = &has_data[(i * ENTRIES as usize).min(has_data.len())..];
        if range.iter().take(ENTRIES as usize).any(|&d| d) {
            *at = next;
            next += CLUSTER;
        }
    }
    let mut data_at = vec![0u64; has_data.len()];
    for (at, &d) in data_at.iter_mut().zip(has_data) {
        if d {
            *at = next;
            next += CLUSTER;
        }
    }
    Layout {
        virtual_size,
        l1_entries,
        l1_at,
        refcount_table_at,
        refcount_table_clusters: table_clusters,
        refcount_blocks: blocks,
        l2_at,
        data_at,
        total_clusters: next / CLUSTER,
    }
}

/// Everything before the data clusters: header, L1, refcount table and blocks, L2s.
fn metadata(l: &Layout) -> Vec<u8> {
    let data_start = l.data_at.iter().copied().find(|&a| a != 0);
    let end = data_start.unwrap_or(l.total_clusters * CLUSTER);
    let mut m = vec![0u8; end as usize];
    let put32 = |m: &mut [u8], at: u64, v: u32| {
        m[at as usize..at as usize + 4].copy_from_slice(&v.to_be_bytes())
    };
    let put64 = |m: &mut [u8], at: u64, v: u64| {
        m[at as usize..at as usize + 8].copy_from_slice(&v.to_be_bytes())
    };
    m[0..4].copy_from_slice(b"QFI\xfb");
    put32(&mut m, 4, 3);
    put32(&mut m, 20, CLUSTER_BITS);
    put64(&mut m, 24, l.virtual_size);
    put32(&mut m, 36, l.l1_entries as u32);
    put64(&mut m, 40, l.l1_at);
    put64(&mut m, 48, l.refcount_table_at);
    put32(&mut m, 56, l.refcount_table_clusters as u32);
    put32(&mut m, 96, 4); // refcount_order: 16-bit refcounts
    put32(&mut m, 100, HEADER_LENGTH);
    // Header extensions: only the end marker (type 0, length 0), already zero.

    for (i, &l2) in l.l2_at.iter().enumerate() {
        if l2 != 0 {
            put64(&mut m, l.l1_at + 8 * i as u64, l2 | COPIED);
        }
    }
    let blocks_at = l.refcount_table_at + l.refcount_table_clusters * CLUSTER;
    for b in 0..l.refcount_blocks {
        put64(&mut m, l.refcount_table_at + 8 * b, blocks_at + b * CLUSTER);
    }
    for cluster in 0..l.total_clusters {
        let at = blocks_at + cluster * 2;
        m[at as usize..at as usize + 2].copy_from_slice(&1u16.to_be_bytes());
    }
    for (i, &data) in l.data_at.iter().enumerate() {
        if data != 0 {
            let l2 = l.l2_at[i / ENTRIES as usize];
            put64(&mut m, l2 + 8 * (i as u64 % ENTRIES), data | COPIED);
        }
    }
    m
}

/// Writes `raw` (a disk image whose size is a multiple of 512) as qcow2 to a new file
/// at `out`; returns its SHA-256 and size.
pub fn convert(raw: &Path, out: &Path) -> io::Result<(Sha256Digest, u64)> {
    let virtual_size = std::fs::metadata(raw)?.len();
    let mut buf = vec![0u8; CLUSTER as usize];
    let mut has_data = Vec::with_capacity(clusters(virtual_size) as usize);
    let mut src = File::open(raw)?;
    for _ in 0..clusters(virtual_size) {
        let n = read_cluster(&mut src, &mut buf)?;
        has_data.push(buf[..n].iter().any(|&b| b != 0));
    }
    let layout = layout(virtual_size, &has_data);
    let mut w = BufWriter::with_capacity(1 << 20, File::create_new(out)?);
    let mut hasher = Sha256::new();
    let meta = metadata(&layout);
    hasher.update(&meta);
    w.write_all(&meta)?;
    let mut size = meta.len() as u64;
    let mut src = File::open(raw)?;
    for &d in &has_data {
        let n = read_cluster(&mut src, &mut buf)?;
        if d {
            buf[n..].fill(0);
            hasher.update(&buf);
            w.write_all(&buf)?;
            size += CLUSTER;
        }
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok((Sha256Digest::from_hasher(hasher), size))
}

fn read_cluster(src: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_places_metadata_first_and_skips_zero_clusters() {
        // 3 L1 entries' worth of space with data in the first and third range only.
        let n = (2 * ENTRIES + 5) as usize;
        let mut has_data = vec![false; n];
        has_data[0] = true;
        has_data[n - 1] = true;
        let l = layout(n as u64 * CLUSTER, &has_data);
        assert_eq!(l.l1_entries, 3);
        assert_eq!((l.refcount_table_clusters, l.refcount_blocks), (1, 1));
        // header, L1, refcount table, refcount block, two L2 tables, two data clusters
        assert_eq!(l.total_clusters, 8);
        assert_eq!(l.l2_at[1], 0);
        assert_eq!(l.data_at[0], 6 * CLUSTER);
        assert_eq!(l.data_at[n - 1], 7 * CLUSTER);
        let m = metadata(&l);
        assert_eq!(&m[0..4], b"QFI\xfb");
        assert_eq!(m.len() as u64, 6 * CLUSTER);
    }

    #[test]
    fn refcount_structures_grow_to_cover_themselves() {
        // More clusters than one refcount block counts.
        let has_data = vec![true; REFCOUNTS as usize + 10];
        let l = layout(has_data.len() as u64 * CLUSTER, &has_data);
        assert!(l.refcount_blocks * REFCOUNTS >= l.total_clusters);
        assert_eq!(l.refcount_blocks, 2);
    }
}
