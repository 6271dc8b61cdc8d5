//! The `verity` check of `cairn verify DISK`, for a disk with a dm-verity root: the
//! root hash the signed provenance records is the root of the tree in the disk's hash
//! partition, every block of the root partition matches that tree, the partitions
//! carry the UUIDs systemd derives from the root hash, and the recorded kernel command
//! line (which the `boot` check compares with what boots) passes that root hash.
//! The disk is read as raw partitions, so a root file system too damaged to read still
//! gets a verdict naming the block changed. A disk without a hash partition whose
//! provenance records no root hash gets no `verity` check.

use crate::attest::intoto::Provenance;
use crate::disk::read::RawDisk;
use crate::disk::verity::{self, Partitions, ROOT_VERITY_X86_64};
use crate::disk::ROOT_PARTITION_NAME;
use crate::verify::Checks;
use std::io::Read;
use std::path::Path;

pub(super) fn check_verity(disk: &Path, provenance: Option<&Provenance>, checks: &mut Checks) {
    let vm = provenance.and_then(|p| p.build_definition.internal_parameters.get("vm"));
    let recorded = vm.and_then(|vm| vm["root"]["verity"]["roothash"].as_str());
    let raw = match RawDisk::open(disk) {
        Ok(raw) => raw,
        // The `disk` check reports an unreadable disk.
        Err(_) => return,
    };
    let hash_partition = raw
        .partitions
        .iter()
        .find(|p| p.type_guid == ROOT_VERITY_X86_64);
    let (roothash, hash_partition) = match (recorded, hash_partition) {
        (None, None) => return,
        (None, Some(p)) => {
            return checks.fail(
                "verity",
                format!(
                    "the disk has a dm-verity hash partition `{}`, but no signed provenance records its root hash",
                    p.name
                ),
            )
        }
        (Some(hex), None) => {
            return checks.fail(
                "verity",
                format!("the provenance records root hash {hex}, but the disk has no root-x86-64-verity partition"),
            )
        }
        (Some(hex), Some(p)) => (hex, p),
    };
    let mut root_bytes = [0u8; 32];
    if hex::decode_to_slice(roothash, &mut root_bytes).is_err() {
        return checks.fail(
            "verity",
            format!("the provenance's root hash {roothash:?} is not 64 hex digits"),
        );
    }
    let Some(data_partition) = raw
        .partitions
        .iter()
        .find(|p| p.name == ROOT_PARTITION_NAME)
    else {
        return checks.fail("verity", "the disk has no partition named `root`");
    };
    let mut hash = Vec::new();
    let checked = raw
        .reader(hash_partition)
        .and_then(|mut r| {
            r.read_to_end(&mut hash)
                .map_err(|source| crate::disk::read::ReadError::Io {
                    path: raw.path().to_path_buf(),
                    source,
                })
        })
        .map_err(|e| e.to_string())
        .and_then(|_| raw.reader(data_partition).map_err(|e| e.to_string()))
        .and_then(|mut data| {
            let names = Partitions {
                data: &data_partition.name,
                hash: &hash_partition.name,
            };
            verity::check(&mut data, raw.path(), &hash, &root_bytes, names)
                .map_err(|e| e.to_string())
        });
    let checked = match checked {
        Ok(checked) => checked,
        Err(e) => return checks.fail("verity", e),
    };
    let (data_uuid, hash_uuid) = verity::partition_uuids(&root_bytes);
    let mut problems = Vec::new();
    if data_partition.guid != data_uuid {
        problems.push(format!(
            "partition `{}` has UUID {}, not {data_uuid} (the first 128 bits of the root hash, where systemd looks for it)",
            data_partition.name, data_partition.guid
        ));
    }
    if hash_partition.guid != hash_uuid || checked.uuid != hash_uuid {
        problems.push(format!(
            "partition `{}` or its superblock has UUID {}, not {hash_uuid} (the last 128 bits of the root hash)",
            hash_partition.name, hash_partition.guid
        ));
    }
    let cmdline = vm.and_then(|vm| vm["cmdline"].as_str()).unwrap_or_default();
    let want = format!("roothash={roothash}");
    if !cmdline.split_ascii_whitespace().any(|w| w == want) {
        problems.push(format!("the recorded kernel command line lacks `{want}`"));
    }
    if problems.is_empty() {
        checks.pass(
            "verity",
            format!(
                "root hash {roothash} (signed provenance) covers the {} blocks of partition `{}` through the tree in partition `{}`, and the kernel command line passes it",
                checked.data_blocks, data_partition.name, hash_partition.name
            ),
        );
    } else {
        checks.fail("verity", problems.join("; "));
    }
}
