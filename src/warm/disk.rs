//! The warm path of a VM disk: a recipe with `vm:` whose image is replayed (see
//! [`super`]) replays its disk files too, instead of merging the layer trees and
//! writing the file system, the GPT disk and the qcow2 again.
//!
//! The disk key ([`DiskKey`]) is the SHA-256 of the image key, of the disk tools
//! as found on this host (name, path, version) and of the Secure Boot certificate. The image key already takes in
//! everything else the disk's bytes come from: the recipe's text (every `vm:` field:
//! kernel, initrd, stub, command line, root file system and size, formats, boot), the
//! resolved sources (a kernel, initrd or stub from a source is one of them; one from
//! the image is a file of its layers), the lock (with the pinned tool versions), the
//! epoch, cairn's version, its output-format version and the cairn executable itself.
//!
//! After a disk is written, [`record`] copies each of its files (raw, qcow2, kernel,
//! initrd) into the layer cache's blob store, with [`sparse`] (holes kept), and stores
//! a [`DiskRecord`] naming them, with their SHA-256 (taken as they were written), the
//! check of the bytes stored, and what the disk's provenance says about the boot
//! files. [`replay`] takes each file back into a staging directory beside the outputs,
//! checked: a file of the record must still be the very file stored (inode, size,
//! mtime), and the bytes that land in the staging directory are checked against the
//! check recorded, so a cached file changed in place (its mtime put back) is found,
//! removed from the cache with a warning, and the build takes the normal path: nothing
//! unchecked is signed or published. The staging directory never shares an inode with
//! the cache; a file the output directory already holds from an earlier build, with
//! the recorded bytes, is kept instead of copied (a hard link of a file that has no
//! other name, checked the same way). Publishing is the disk stage's: a killed replay
//! leaves only the staging directory, which the next build removes.
//!
//! The record also keeps the command line as written (a verity root's `roothash=`
//! comes from the file system written) and the verity tree's parameters. Not cached:
//! the signed statements, which this build signs with its own key over its own image.

use super::ImageKey;
use crate::digest::Sha256Digest;
use crate::disk::boot::BootIds;
use crate::disk::verity::Verity;
use crate::disk::{self, sparse, DiskFile, DiskPlan, StagedDisk, StagedFile};
use crate::layers::cache::{CachedBlob, CachedFile, DiskRecord, LayerCache};
use crate::recipe::DiskFormat;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What determines every file of a VM disk build (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskKey(Sha256Digest);

#[derive(Serialize)]
struct DiskKeyInputs<'a> {
    key_version: &'static str,
    image: String,
    /// Name, path and version of each tool.
    tools: Vec<(&'a str, &'a Path, &'a str)>,
    /// The certificate of the key that signs the unified kernel image (given in the
    /// recipe or by flag): the signature is deterministic for a key, and a key must
    /// match its certificate.
    secure_boot_cert: Option<String>,
}

/// The disk key of the image `image` made into a disk by `plan`.
pub fn key(image: &ImageKey, plan: &DiskPlan) -> DiskKey {
    DiskKey(Sha256Digest::of_json(&DiskKeyInputs {
        key_version: "cairn-disk-key-v2",
        image: image.0.hex(),
        tools: plan
            .tools
            .0
            .iter()
            .map(|t| (t.name, t.path.as_path(), t.version.as_str()))
            .collect(),
        secure_boot_cert: plan.secure_boot.as_ref().map(|k| k.cert_sha256.hex()),
    }))
}

/// The disk files recorded under `key`, staged beside the outputs in `out` for image
/// `name` with `formats` (see the module doc); `None` sends the build down the normal
/// path.
pub fn replay(
    cache: &LayerCache,
    key: &DiskKey,
    out: &Path,
    name: &str,
    formats: &[DiskFormat],
) -> Option<StagedDisk> {
    let record: DiskRecord<Detail> = cache.disk_record(&key.0.hex())?;
    if !record.files.iter().all(|f| cache.is_intact(&f.blob)) {
        return None;
    }
    let tmp = disk::staging_dir(out, name).ok()?;
    // The raw disk and the qcow2 on both cores.
    let staged = record
        .files
        .par_iter()
        .map(|f| {
            let file_name = format!("{name}.{}", f.suffix);
            let to = tmp.path().join(&file_name);
            if !keep_published(&out.join(&file_name), &to, &f.blob) {
                let from = cache.blob_path(&f.blob.digest);
                match sparse::copy(&from, &to) {
                    Ok((_, check, size)) if check == f.blob.check() && size == f.blob.size => {}
                    Ok(_) => {
                        cache
                            .discard_changed(&f.blob, &format!("the cached disk file {file_name}"));
                        return None;
                    }
                    Err(_) => return None,
                }
            }
            Some(StagedFile {
                name: file_name,
                sha256: f.blob.digest,
            })
        })
        .collect::<Option<Vec<StagedFile>>>()?;
    let files = formats
        .iter()
        .map(|format| {
            let f = record
                .files
                .iter()
                .find(|f| f.suffix == format.extension())?;
            Some(DiskFile {
                format: format.extension(),
                path: out.join(format!("{name}.{}", f.suffix)),
                sha256: f.blob.digest,
                size: f.blob.size,
            })
        })
        .collect::<Option<Vec<DiskFile>>>()?;
    Some(StagedDisk {
        tmp,
        staged,
        files,
        boot: record.detail.boot,
        cmdline: record.detail.cmdline,
        verity: record.detail.verity,
    })
}

/// What a [`DiskRecord`] keeps beside the files: what the statements say about the
/// boot files, the command line and the verity tree.
#[derive(Serialize, Deserialize)]
struct Detail {
    boot: BootIds,
    cmdline: String,
    verity: Option<Verity>,
}

/// Puts the file `published` (what an earlier build published) at `to` if it holds
/// the bytes of `blob`: a hard link of a file with no other name (publishing renames
/// it onto itself, so it stays in the output directory only), checked before it
/// counts. `false`, with nothing left at `to`, otherwise.
fn keep_published(published: &Path, to: &Path, blob: &CachedBlob) -> bool {
    let candidate = fs::symlink_metadata(published)
        .is_ok_and(|m| m.is_file() && m.nlink() == 1 && m.len() == blob.size);
    if !candidate || fs::hard_link(published, to).is_err() {
        return false;
    }
    if sparse::check(to).is_ok_and(|found| found == (blob.check(), blob.size)) {
        return true;
    }
    let _ = fs::remove_file(to);
    false
}

/// Stores the files of `disk`, just written for image `name`, in `cache` under `key`.
/// Failures become cache warnings.
pub fn record(cache: &LayerCache, key: &DiskKey, disk: &StagedDisk, name: &str) {
    let prefix = format!("{name}.");
    let stored = disk
        .staged
        .par_iter()
        .map(|f| {
            let suffix = f
                .name
                .strip_prefix(&prefix)
                .expect("disk files are named after their image");
            let tmp = cache.tmp_path();
            let copied = sparse::copy(&disk.tmp.path().join(&f.name), &tmp)
                .and_then(|(file, check, size)| file.sync_all().map(|()| (check, size)));
            let (check, size) = copied.map_err(|e| {
                let _ = fs::remove_file(&tmp);
                e.to_string()
            })?;
            let blob = cache
                .place_blob(&tmp, f.sha256, size, check)
                .map_err(|e| e.to_string())?;
            Ok(CachedFile {
                suffix: suffix.to_string(),
                blob,
            })
        })
        .collect::<Result<Vec<CachedFile>, String>>();
    match stored {
        Ok(files) => cache.store_disk_record(
            &key.0.hex(),
            &DiskRecord {
                files,
                detail: Detail {
                    boot: disk.boot.clone(),
                    cmdline: disk.cmdline.clone(),
                    verity: disk.verity.clone(),
                },
            },
        ),
        Err(e) => cache.warn(format!("the VM disk was not added to the layer cache: {e}")),
    }
}
