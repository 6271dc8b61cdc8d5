//! What the image actually contains: the file system after every layer is applied
//! (whiteouts included), each regular file with its digest, the layer that wrote it
//! and where it came from. Built from the layer trees exactly as the tar writer wrote
//! them (every source byte was re-hashed and checked while it was written), so SBOMs
//! and provenance describe what was written, never what the recipe claims.

use crate::base::fs::{layer_name as base_layer_name, BaseEntry, BaseFs, BaseKind};
use crate::base::BaseImage;
use crate::digest::Sha256Digest;
use crate::layers::{FileData, LayerTree, Origin, TreeEntry, TreeEntryKind};
use crate::oci::whiteout;
use crate::recipe::{Owner, Recipe};
use crate::resolve::{LockedKind, ResolvedSources};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageContents {
    /// Regular files of the final image, sorted by path.
    pub files: Vec<ImageFile>,
    /// Every source of the recipe and every Debian package, sorted by name.
    pub sources: Vec<SourceInfo>,
    /// The base image, if the recipe has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseInfo>,
}

/// The base image as recorded in SBOMs and provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseInfo {
    /// `layout:<path>` (relative to the recipe) or `registry/repository[:tag]`.
    pub reference: String,
    /// The manifest of the platform built.
    pub manifest_digest: Sha256Digest,
    /// What the recipe or lock pins: the manifest, or the index it was chosen from.
    pub pinned: Sha256Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageFile {
    /// Absolute path in the image (`/usr/bin/hello`).
    pub path: String,
    pub sha256: Sha256Digest,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Name of the layer that wrote the file's final version (shared by its files).
    pub layer: Arc<str>,
    pub origin: FileOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FileOrigin {
    /// From source `name` (member `rel_path`; empty for a single-file source), put
    /// there by the operation on recipe line `line`. The strings are shared with the
    /// layer trees.
    Source {
        name: Arc<str>,
        rel_path: Arc<str>,
        line: u32,
    },
    /// Inline content from the `file:` operation on recipe line `line`.
    Recipe { line: u32 },
    /// Generated from `accounts:` (`/etc/passwd`, `/etc/group`).
    Accounts,
    /// From a layer of the base image.
    Base,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    pub name: String,
    pub kind: LockedKind,
    /// The path as written in the recipe (relative to the recipe file).
    pub path: String,
    pub sha256: Sha256Digest,
    /// Key id of the verified signature over this source, if it had one.
    pub signer: Option<String>,
    /// SPDX license expression declared in the recipe, if any (for a Debian package:
    /// from its machine-readable copyright file).
    pub license: Option<String>,
    /// What a Debian package source (`kind: deb`) is, and the chain of trust it came
    /// through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageInfo>,
}

/// A Debian package: `path` of its [`SourceInfo`] is the .deb's path in the archive,
/// `sha256` the .deb's digest and `signer` the fingerprint of the key that signed the
/// InRelease that lists the index that lists the .deb.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageInfo {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// Repository name in the recipe, and its suite.
    pub repository: String,
    pub suite: String,
    /// The Packages index (below `dists/<suite>/`) that listed the .deb, and its digest.
    pub index: String,
    pub index_sha256: Sha256Digest,
    pub inrelease_sha256: Sha256Digest,
}

/// Applies `layers` in order, on top of the base image's files if there is one, and
/// lists the resulting regular files.
pub fn image_contents(
    recipe: &Recipe,
    sources: &ResolvedSources,
    base: Option<(&BaseImage, &BaseFs)>,
    layers: &[LayerTree],
) -> ImageContents {
    // Path -> the final version of a regular file there (`None`: a directory or
    // symlink), borrowing from the base and the layer trees; the list is built from it
    // once, in path order, sized exactly.
    let mut fs: BTreeMap<&str, Option<FinalFile>> = base
        .iter()
        .flat_map(|(_, base_fs)| &base_fs.entries)
        .map(|(key, e)| {
            let file = matches!(e.kind, BaseKind::File { .. }).then_some(FinalFile::Base(e));
            (key.as_str(), file)
        })
        .collect();
    for (index, layer) in layers.iter().enumerate() {
        for key in layer.entries.keys() {
            if let Some(w) = whiteout::whiteout(key) {
                whiteout::apply(&mut fs, &w);
            }
        }
        // A non-directory replaces whatever was at its path, children included.
        for (key, entry) in &layer.entries {
            if !matches!(entry.kind, TreeEntryKind::Dir | TreeEntryKind::Whiteout) {
                whiteout::remove_subtree(&mut fs, key);
            }
        }
        // The layer's paths are merged in one pass: a map collected from sorted keys has
        // full nodes, one filled a key at a time has half-empty ones (at a million files,
        // about 40 MB more at the build's peak).
        let mut own: BTreeMap<&str, Option<FinalFile>> = layer
            .entries
            .iter()
            .filter_map(|(key, entry)| {
                // A hard link carries the content of the file it links to.
                let data = match &entry.kind {
                    TreeEntryKind::Whiteout => return None,
                    // A directory keeps what an earlier layer had at its path.
                    TreeEntryKind::Dir if fs.contains_key(key.as_str()) => return None,
                    TreeEntryKind::Dir => None,
                    TreeEntryKind::File(data) => Some(data),
                    TreeEntryKind::Hardlink { target } => match &layer.entries[target].kind {
                        TreeEntryKind::File(data) => Some(data),
                        _ => None,
                    },
                    TreeEntryKind::Symlink { .. } => None,
                };
                let file = data.map(|data| FinalFile::Layer { index, entry, data });
                Some((key.as_str(), file))
            })
            .collect();
        fs.append(&mut own);
    }
    let base_layer_names: BTreeMap<usize, Arc<str>> = base
        .iter()
        .flat_map(|(_, base_fs)| base_fs.entries.values())
        .map(|e| (e.layer, base_layer_name(e.layer).into()))
        .collect();
    let layer_names: Vec<Arc<str>> = layers.iter().map(|l| l.name.as_str().into()).collect();
    let mut files = Vec::with_capacity(fs.values().filter(|f| f.is_some()).count());
    files.extend(fs.into_iter().filter_map(|(key, file)| {
        Some(match file? {
            FinalFile::Base(e) => {
                let BaseKind::File { sha256, size } = e.kind else {
                    unreachable!("only base files are kept")
                };
                ImageFile {
                    path: format!("/{key}"),
                    sha256,
                    size,
                    mode: e.mode,
                    uid: e.owner.uid,
                    gid: e.owner.gid,
                    layer: Arc::clone(&base_layer_names[&e.layer]),
                    origin: FileOrigin::Base,
                }
            }
            FinalFile::Layer { index, entry, data } => image_file(
                key,
                entry.mode,
                entry.owner,
                &layer_names[index],
                data,
                &entry.origin,
            ),
        })
    }));
    ImageContents {
        files,
        sources: source_infos(recipe, sources),
        base: base.map(|(image, _)| base_info(image)),
    }
}

/// Every source of the recipe and every Debian package, sorted by name: what the
/// SBOMs and the provenance say about them.
pub fn source_infos(recipe: &Recipe, resolved_sources: &ResolvedSources) -> Vec<SourceInfo> {
    let mut sources: Vec<SourceInfo> = recipe
        .sources
        .values()
        .map(|spec| {
            let resolved = &resolved_sources.sources[&spec.name];
            SourceInfo {
                name: spec.name.clone(),
                kind: resolved.kind,
                path: spec.path.clone(),
                sha256: resolved.digest,
                signer: resolved.signer.clone(),
                license: spec.license.clone(),
                package: None,
            }
        })
        .collect();
    // Packages are sources too, named `deb:<name>`; all sorted by name again.
    if let Some(installed) = &resolved_sources.packages {
        sources.extend(installed.packages.iter().map(|p| SourceInfo {
            name: crate::debian::source_name(&p.name),
            kind: LockedKind::Deb,
            path: p.pin.filename.clone(),
            sha256: p.pin.sha256,
            signer: Some(p.signed_by.clone()),
            license: p.license.clone(),
            package: Some(PackageInfo {
                name: p.name.clone(),
                version: p.pin.version.clone(),
                architecture: p.pin.architecture.clone(),
                repository: p.pin.repository.clone(),
                suite: p.suite.clone(),
                index: p.pin.index.clone(),
                index_sha256: p.pin.index_sha256,
                inrelease_sha256: p.inrelease_sha256,
            }),
        }));
        sources.sort_by(|a, b| a.name.cmp(&b.name));
    }
    sources
}

/// The base image as recorded in SBOMs and provenance.
pub fn base_info(image: &BaseImage) -> BaseInfo {
    BaseInfo {
        reference: image.reference.clone(),
        manifest_digest: image.manifest_digest,
        pinned: image.pinned,
    }
}

/// Where the final version of a regular file comes from.
enum FinalFile<'a> {
    Base(&'a BaseEntry),
    /// Layer `index` of the recipe's layers, with the content (that of the file a hard
    /// link points to).
    Layer {
        index: usize,
        entry: &'a TreeEntry,
        data: &'a FileData,
    },
}

fn image_file(
    key: &str,
    mode: u32,
    owner: Owner,
    layer: &Arc<str>,
    data: &FileData,
    origin: &Origin,
) -> ImageFile {
    let (sha256, size) = match data {
        FileData::Source(c) => (c.sha256, c.size),
        FileData::Inline(bytes) => (Sha256Digest::of(bytes), bytes.len() as u64),
    };
    let origin = match origin {
        Origin::Source {
            name,
            rel_path,
            line,
        } => FileOrigin::Source {
            name: Arc::clone(name),
            rel_path: Arc::clone(rel_path),
            line: *line,
        },
        Origin::Recipe { line } => FileOrigin::Recipe { line: *line },
        Origin::Accounts | Origin::Parent | Origin::Sbom => FileOrigin::Accounts,
    };
    ImageFile {
        path: format!("/{key}"),
        sha256,
        size,
        mode,
        uid: owner.uid,
        gid: owner.gid,
        layer: Arc::clone(layer),
        origin,
    }
}

#[cfg(test)]
#[path = "contents_tests.rs"]
mod tests;
