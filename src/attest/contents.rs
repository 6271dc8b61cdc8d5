//! What the image actually contains: the file system after every layer is applied
//! (whiteouts included), each regular file with its digest, the layer that wrote it
//! and where it came from. Built from the layer trees exactly as the tar writer wrote
//! them (every source byte was re-hashed and checked while it was written), so SBOMs
//! and provenance describe what was written, never what the recipe claims.

use crate::base::fs::{layer_name as base_layer_name, BaseEntry, BaseFs, BaseKind};
use crate::base::BaseImage;
use crate::digest::{Sha1Index, Sha256Digest};
use crate::layers::EntrySha1s;
use crate::layers::{FileData, LayerTree, Origin, TreeEntry, TreeEntryKind};
use crate::oci::whiteout::{self, Whiteout};
use crate::recipe::{Owner, Recipe};
use crate::resolve::{LockedKind, ResolvedSources};
use serde::Serialize;
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageContents<'a> {
    /// Regular files of the final image, sorted by path, borrowed from the base's file
    /// system and the layer trees: at a million files a copy of each would be the
    /// largest thing the build holds.
    pub files: ImageFiles<'a>,
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

/// The regular files of the final image, sorted by path: each a place (8 bytes) in a
/// layer tree or among the base's entries, read as an [`ImageFile`]. At a million
/// files the SBOM stage is the build's peak, and a list of references (32 bytes a
/// file) was its largest part beside the layer trees.
#[derive(Clone)]
pub struct ImageFiles<'a> {
    stack: Stack<'a>,
    places: Vec<Place>,
}

/// What the places point into: the base's entries (in path order) and the layers.
#[derive(Clone)]
struct Stack<'a> {
    base: Vec<(&'a String, &'a BaseEntry)>,
    layers: Vec<&'a LayerTree>,
}

/// An entry of the image: the `index`th of layer `layer`'s entries, or of the base's
/// when `layer` is [`BASE`]. Aligned as a reference, so that a list of places becomes
/// one of references in place ([`ImageFiles::into_sha1s`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(align(8))]
struct Place {
    layer: u32,
    index: u32,
}

/// [`Place::layer`] of the base's entries.
const BASE: u32 = u32::MAX;

impl<'a> Stack<'a> {
    fn place(layer: usize, index: usize) -> Place {
        let number = |n: usize| u32::try_from(n).expect("fewer than 2^32 layers and entries");
        Place {
            layer: number(layer),
            index: number(index),
        }
    }

    fn key(&self, place: Place) -> &'a String {
        match place.layer {
            BASE => self.base[place.index as usize].0,
            layer => {
                self.layers[layer as usize]
                    .entries
                    .at(place.index as usize)
                    .0
            }
        }
    }

    /// The regular file at `place`, if it is one (a hard link is, when it links to one).
    fn file(&self, place: Place) -> Option<ImageFile<'a>> {
        if place.layer == BASE {
            let (key, entry) = self.base[place.index as usize];
            return matches!(entry.kind, BaseKind::File { .. }).then_some(ImageFile {
                key,
                written_by: WrittenBy::Base(entry),
            });
        }
        let layer = self.layers[place.layer as usize];
        let (key, entry) = layer.entries.at(place.index as usize);
        // A hard link carries the content of the file it links to.
        let data = match &entry.kind {
            TreeEntryKind::File(data) => data,
            TreeEntryKind::Hardlink { target } => match &layer.entries[target].kind {
                TreeEntryKind::File(data) => data,
                _ => return None,
            },
            _ => return None,
        };
        Some(ImageFile::in_layer(key, &layer.name, entry, data))
    }
}

impl<'a> ImageFiles<'a> {
    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// The `n`th file in path order.
    pub fn get(&self, n: usize) -> ImageFile<'a> {
        self.stack
            .file(self.places[n])
            .expect("only regular files are listed")
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = ImageFile<'a>> + Clone + '_ {
        (0..self.places.len()).map(|n| self.get(n))
    }

    /// The index of the file at absolute path `path` (`/usr/bin/hello`).
    pub fn position(&self, path: &str) -> Option<usize> {
        let key = path.strip_prefix('/')?;
        self.places
            .binary_search_by(|&place| self.stack.key(place).as_str().cmp(key))
            .ok()
    }

    /// Each file's SHA-1 from `sha1`, in path order, in this list's own allocation (a
    /// place and a reference are the same size): at a million files, the SBOM stage
    /// never holds the SHA-1s' list beside the places. The error is the first file
    /// without a SHA-1.
    pub fn into_sha1s<'s>(
        self,
        sha1: &'s dyn Sha1Lookup,
    ) -> Result<Vec<&'s [u8; 20]>, ImageFile<'a>> {
        let ImageFiles { stack, places } = self;
        let file = |place| stack.file(place).expect("only regular files are listed");
        if let Some(&missing) = places.iter().find(|&&p| sha1.sha1(&file(p)).is_none()) {
            return Err(file(missing));
        }
        Ok(places
            .into_iter()
            .map(|place| sha1.sha1(&file(place)).expect("checked above"))
            .collect())
    }

    /// Keeps the files `keep` holds to (tests make images without some files).
    #[cfg(test)]
    pub fn retain(&mut self, mut keep: impl FnMut(&ImageFile) -> bool) {
        let stack = &self.stack;
        self.places
            .retain(|&place| keep(&stack.file(place).expect("only regular files are listed")));
    }
}

impl std::fmt::Debug for ImageFiles<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Equal when they list the same files, wherever the lists point.
impl PartialEq for ImageFiles<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for ImageFiles<'_> {}

impl Serialize for ImageFiles<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// A regular file of the final image: its path and the entry that wrote its final
/// version, whose fields the accessors read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFile<'a> {
    /// The path relative to the image root (`usr/bin/hello`). `&String`, not `&str`:
    /// one pointer, not two, in a list of every file (likewise the layer's name).
    key: &'a String,
    written_by: WrittenBy<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WrittenBy<'a> {
    Base(&'a BaseEntry),
    /// An entry of the layer named `layer`, with its content (that of the file a hard
    /// link points to).
    Layer {
        layer: &'a String,
        entry: &'a TreeEntry,
        data: &'a FileData,
    },
}

impl<'a> ImageFile<'a> {
    /// The file at `key` (relative to the image root) written by `entry` of the layer
    /// named `layer`, holding `data`.
    pub fn in_layer(
        key: &'a String,
        layer: &'a String,
        entry: &'a TreeEntry,
        data: &'a FileData,
    ) -> Self {
        ImageFile {
            key,
            written_by: WrittenBy::Layer { layer, entry, data },
        }
    }

    /// Absolute path in the image (`/usr/bin/hello`).
    pub fn path(&self) -> String {
        format!("/{}", self.key)
    }

    pub fn sha256(&self) -> Sha256Digest {
        match self.written_by {
            WrittenBy::Base(e) => base_file(e).0,
            WrittenBy::Layer { data, .. } => match data {
                FileData::Source(c) => c.sha256,
                FileData::Inline(bytes) => Sha256Digest::of(bytes),
            },
        }
    }

    pub fn size(&self) -> u64 {
        match self.written_by {
            WrittenBy::Base(e) => base_file(e).1,
            WrittenBy::Layer { data, .. } => match data {
                FileData::Source(c) => c.size,
                FileData::Inline(bytes) => bytes.len() as u64,
            },
        }
    }

    pub fn mode(&self) -> u32 {
        match self.written_by {
            WrittenBy::Base(e) => e.mode,
            WrittenBy::Layer { entry, .. } => entry.mode,
        }
    }

    pub fn owner(&self) -> Owner {
        match self.written_by {
            WrittenBy::Base(e) => e.owner,
            WrittenBy::Layer { entry, .. } => entry.owner,
        }
    }

    /// Name of the layer that wrote the file's final version.
    pub fn layer(&self) -> Cow<'a, str> {
        match self.written_by {
            WrittenBy::Base(e) => Cow::Owned(base_layer_name(e.layer)),
            WrittenBy::Layer { layer, .. } => Cow::Borrowed(layer),
        }
    }

    pub fn origin(&self) -> FileOrigin<'a> {
        let entry = match self.written_by {
            WrittenBy::Base(_) => return FileOrigin::Base,
            WrittenBy::Layer { entry, .. } => entry,
        };
        match &entry.origin {
            Origin::Source {
                name,
                rel_path,
                line,
            } => FileOrigin::Source {
                name,
                rel_path,
                line: *line,
            },
            Origin::Recipe { line } => FileOrigin::Recipe { line: *line },
            Origin::Generated(from) => FileOrigin::Generated {
                by: &from.by,
                line: from.line,
                inputs: &from.inputs,
            },
            Origin::Accounts | Origin::Parent | Origin::Sbom => FileOrigin::Accounts,
        }
    }
}

/// Where the SBOMs find each file's SHA-1, which SPDX 2.3 requires on every file: for
/// an image, where its layers were written ([`WrittenSha1s`]).
pub trait Sha1Lookup: std::fmt::Debug + Sync {
    fn sha1(&self, file: &ImageFile) -> Option<&[u8; 20]>;
}

/// SHA-1s by content (the base image's files are known so).
impl Sha1Lookup for Sha1Index {
    fn sha1(&self, file: &ImageFile) -> Option<&[u8; 20]> {
        self.get(&file.sha256())
    }
}

/// Each file's SHA-1 where it was computed: by place in the layer that wrote it (see
/// [`crate::layers::EntrySha1s`]), or by content for the base image's files.
#[derive(Debug)]
pub struct WrittenSha1s<'a> {
    pub base: Option<&'a Sha1Index>,
    /// Each layer tree with the SHA-1s of its entries, as written.
    pub layers: Vec<(&'a LayerTree, &'a EntrySha1s)>,
}

impl Sha1Lookup for WrittenSha1s<'_> {
    fn sha1(&self, file: &ImageFile) -> Option<&[u8; 20]> {
        match file.written_by {
            WrittenBy::Base(_) => self.base?.get(&file.sha256()),
            WrittenBy::Layer { layer, entry, .. } => {
                // The layer is known by its name's address: `layer` is borrowed from
                // the tree's own name.
                let (tree, sha1s) = self
                    .layers
                    .iter()
                    .find(|(tree, _)| std::ptr::eq(&tree.name, layer))?;
                // A hard link's bytes are those of the entry it links to.
                let key = match &entry.kind {
                    TreeEntryKind::Hardlink { target } => target,
                    _ => file.key,
                };
                sha1s.get(tree.entries.place_of(key)?)
            }
        }
    }
}

/// The SHA-256 and size of a base file.
fn base_file(e: &BaseEntry) -> (Sha256Digest, u64) {
    match e.kind {
        BaseKind::File { sha256, size } => (sha256, size),
        _ => unreachable!("only the base's regular files are image files"),
    }
}

/// A file serialises to all it says, as one record (the SBOMs' document digest covers
/// it).
impl Serialize for ImageFile<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Record<'r> {
            path: String,
            sha256: Sha256Digest,
            size: u64,
            mode: u32,
            uid: u32,
            gid: u32,
            layer: Cow<'r, str>,
            origin: FileOrigin<'r>,
        }
        let owner = self.owner();
        Record {
            path: self.path(),
            sha256: self.sha256(),
            size: self.size(),
            mode: self.mode(),
            uid: owner.uid,
            gid: owner.gid,
            layer: self.layer(),
            origin: self.origin(),
        }
        .serialize(serializer)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FileOrigin<'a> {
    /// From source `name` (member `rel_path`; empty for a single-file source), put
    /// there by the operation on recipe line `line`.
    Source {
        name: &'a str,
        rel_path: &'a str,
        line: u32,
    },
    /// Inline content from the `file:` operation on recipe line `line`.
    Recipe { line: u32 },
    /// Generated from `accounts:` (`/etc/passwd`, `/etc/group`).
    Accounts,
    /// Made by cairn from the files `inputs` (image path and SHA-256), in place of a
    /// maintainer script of source `by` (a Debian package, on recipe line `line`).
    Generated {
        by: &'a str,
        line: u32,
        inputs: &'a [(String, Sha256Digest)],
    },
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
    /// The package's paths `path_filters:` left out of the image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    /// Its maintainer scripts, none run, with what cairn did instead.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scripts: Vec<crate::debian::MaintainerScript>,
}

/// Applies `layers` in order, on top of the base image's files if there is one, and
/// lists the resulting regular files.
pub fn image_contents<'a>(
    recipe: &Recipe,
    sources: &ResolvedSources,
    base: Option<(&BaseImage, &'a BaseFs)>,
    layers: &'a [LayerTree],
) -> ImageContents<'a> {
    ImageContents {
        files: image_files(base.map(|(_, fs)| fs), layers),
        sources: source_infos(recipe, sources),
        base: base.map(|(image, _)| base_info(image)),
    }
}

/// The regular files of the image, sorted by path: the base's file system with each
/// layer merged in turn. Every step is a pass over sorted lists of places (at a million
/// files, a map of the image would cost more than twice the list).
pub fn image_files<'a>(
    base: Option<&'a BaseFs>,
    layers: impl IntoIterator<Item = &'a LayerTree>,
) -> ImageFiles<'a> {
    let stack = Stack {
        base: base.iter().flat_map(|fs| &fs.entries).collect(),
        layers: layers.into_iter().collect(),
    };
    let mut image: Vec<Place> = (0..stack.base.len())
        .map(|index| Stack::place(BASE as usize, index))
        .collect();
    for layer in 0..stack.layers.len() {
        image = merge_layer(&stack, image, layer);
    }
    // In place: what is not a regular file goes (directories, symlinks).
    image.retain(|&place| stack.file(place).is_some());
    ImageFiles {
        stack,
        places: image,
    }
}

/// `lower` (sorted by key) with layer `layer` applied: its whiteouts remove paths and
/// their subtrees, a non-directory replaces whatever was at its path (children
/// included), a directory keeps what was at its path.
fn merge_layer(stack: &Stack, lower: Vec<Place>, layer: usize) -> Vec<Place> {
    let tree = stack.layers[layer];
    let removed = removed_by(stack, &lower, tree);
    let kept = removed.iter().filter(|removed| !**removed).count();
    let mut merged = Vec::with_capacity(kept + tree.entries.len());
    let mut lower = lower
        .into_iter()
        .zip(removed)
        .filter_map(|(e, removed)| (!removed).then_some(e))
        .peekable();
    for (index, (key, entry)) in tree.entries.iter().enumerate() {
        if entry.kind == TreeEntryKind::Whiteout {
            continue;
        }
        while let Some(e) = lower.next_if(|&e| stack.key(e) < key) {
            merged.push(e);
        }
        if let Some(kept) = lower.next_if(|&e| stack.key(e) == key) {
            // Only a directory can meet a path still there: it keeps what was there.
            if entry.kind == TreeEntryKind::Dir {
                merged.push(kept);
                continue;
            }
        }
        merged.push(Stack::place(layer, index));
    }
    merged.extend(lower);
    merged
}

/// Which entries of `lower` (sorted by key) `layer` removes: what its whiteouts name,
/// and the paths and subtrees its non-directories replace.
fn removed_by(stack: &Stack, lower: &[Place], layer: &LayerTree) -> Vec<bool> {
    let mut removed = vec![false; lower.len()];
    if lower.is_empty() {
        return removed;
    }
    let position = |key: &str| lower.partition_point(|&e| stack.key(e).as_str() < key);
    // A path's subtree is the path itself and the keys from `path/` up to `path0`
    // ('0' follows '/'): `path-x` sorts between the two.
    let remove_children = |removed: &mut [bool], dir: &str| {
        let range = if dir.is_empty() {
            0..lower.len()
        } else {
            position(&format!("{dir}/"))..position(&format!("{dir}0"))
        };
        removed[range].fill(true);
    };
    for (key, entry) in &layer.entries {
        let (path, with_self) = match whiteout::whiteout(key) {
            Some(Whiteout::Path(path)) => (Cow::Owned(path), true),
            Some(Whiteout::Opaque(dir)) => (Cow::Owned(dir), false),
            None if entry.kind == TreeEntryKind::Dir => continue,
            None => (Cow::Borrowed(key.as_str()), true),
        };
        remove_children(&mut removed, &path);
        if with_self {
            if let Ok(at) = lower.binary_search_by(|&e| stack.key(e).as_str().cmp(&path)) {
                removed[at] = true;
            }
        }
    }
    removed
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
                left_out: p.left_out.clone(),
                scripts: p.scripts.clone(),
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

#[cfg(test)]
#[path = "contents_tests.rs"]
mod tests;
