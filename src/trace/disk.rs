//! `cairn trace DISK PATH|SHA256`: where a file in a VM disk came from. The file is
//! looked up in the disk's root file system as read back ([`crate::disk::read`]), its mode
//! and owner from its inode, and its origin (layer, source, member, recipe line) from
//! the SBOM embedded in the disk; source signers and the recipe name come from the
//! disk's provenance statement beside it, when there is one (not verified here:
//! `cairn verify` does that).

use super::{recipe_and_signers, SbomIndex, Trace, TracedFile, TracedLayer};
use crate::attest::dsse::Envelope;
use crate::attest::intoto::{Provenance, Statement, SLSA_PROVENANCE_V1};
use crate::build::names::SBOM_DIR;
use crate::digest::Sha256Digest;
use crate::disk::read::{self, ReadError};
use crate::verify::disk::{attestations_path, disk_name};
use std::path::Path;

pub fn trace(disk: &Path, query: &str) -> Result<Trace, ReadError> {
    let root = read::root_files(disk)?;
    let spdx: serde_json::Value = root
        .read(&format!("{SBOM_DIR}/{}.spdx.json", disk_name(disk)))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let provenance = std::fs::read(attestations_path(disk))
        .ok()
        .and_then(|text| {
            text.split(|&b| b == b'\n')
                .filter_map(|line| Envelope::from_json(line).ok())
                .filter_map(|env| serde_json::from_slice::<Statement>(&env.payload).ok())
                .find(|s| s.predicate_type == SLSA_PROVENANCE_V1)
        })
        .and_then(|s| serde_json::from_value::<Provenance>(s.predicate).ok());
    let (recipe, signers) = recipe_and_signers(provenance);
    let sbom = SbomIndex::new(&spdx, recipe);
    let by_digest: Option<Sha256Digest> = query.parse().ok();
    let path = format!("/{}", query.trim_start_matches('/').trim_end_matches('/'));
    let matches = root
        .files
        .iter()
        .filter(|(p, e)| match by_digest {
            Some(d) => e.sha256 == d,
            None => **p == path,
        })
        .map(|(p, e)| {
            let (mode, uid, gid) = root.stat(p).unwrap_or_default();
            let file = TracedFile {
                platform: None,
                path: p.clone(),
                sha256: e.sha256,
                size: e.size,
                mode,
                uid,
                gid,
                layer: TracedLayer {
                    index: None,
                    name: None,
                    digest: None,
                },
                origin: None,
                source: None,
                member: None,
                recipe: None,
                generated_from: Vec::new(),
                recipe_line: None,
            };
            sbom.describe(file, &signers)
        })
        .collect();
    Ok(Trace {
        query: query.to_string(),
        matches,
    })
}
