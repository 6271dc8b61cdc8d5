//! Assembling each layer's file tree from the recipe's operations and the resolved
//! sources, with every rule about paths applied in one place:
//!
//! - a path is written at most once per layer (identical directories excepted);
//! - every parent directory is present in the layer; a parent the layer does not set
//!   itself keeps the mode and owner it has in earlier layers (default 0755 root), so
//!   writing `/tmp/x` never resets `/tmp` from 1777;
//! - no path goes through a symlink (from this layer or an earlier one);
//! - symlinks from an archive resolve (through the layer's links) inside the directory
//!   the archive is extracted to;
//! - `remove` whiteouts name a path that exists in an earlier layer and is not written
//!   again in the same layer.

use super::links::{check_resolves_inside, Found};
use super::sorted::SortedMap;
use crate::base::fs::{layer_name as base_layer_name, BaseFs, BaseKind};
use crate::diag::{Diagnose, Location};
use crate::oci::whiteout::{whiteout, Whiteout};
use crate::recipe::{Accounts, Diagnostic, ImagePath, LayerSpec, OpKind, Owner, Recipe, Span};
use crate::resolve::{LockedKind, ResolvedSources};
use crate::snapshot::{Content, SourceEntry, SourceEntryKind};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The name of the layer that `accounts:` generates.
pub const ACCOUNTS_LAYER: &str = "accounts";

/// One layer: entries keyed by their path relative to the image root (`usr/bin/x`),
/// in byte-wise order, which is the order they are written in.
#[derive(Debug, Clone)]
pub struct LayerTree {
    pub name: String,
    pub entries: SortedMap<TreeEntry>,
}

/// Serialises to what reaches the layer's bytes, for the layer cache key
/// ([`super::cache::layer_key`]): every field unless skipped here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeEntry {
    pub kind: TreeEntryKind,
    pub mode: u32,
    pub owner: Owner,
    /// Not in the layer's bytes: where the entry came from only traces it.
    #[serde(skip)]
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TreeEntryKind {
    File(FileData),
    Dir,
    Symlink {
        target: String,
    },
    /// A hard link to another entry of the same layer (its key).
    Hardlink {
        target: String,
    },
    /// An OCI whiteout: the key is `dir/.wh.name`.
    Whiteout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileData {
    /// Shared with the source tree it came from.
    Source(Content),
    Inline(Arc<[u8]>),
}

/// A file's data serialises to what its bytes are, their size and SHA-256, whether
/// they are a source's file or inline: the same bytes make the same layer.
impl Serialize for FileData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FileData::Source(content) => content.serialize(serializer),
            FileData::Inline(bytes) => {
                /// The shape a [`Content`] serialises to.
                #[derive(Serialize)]
                struct InlineContent {
                    size: u64,
                    sha256: crate::digest::Sha256Digest,
                }
                InlineContent {
                    size: bytes.len() as u64,
                    sha256: crate::digest::Sha256Digest::of(bytes),
                }
                .serialize(serializer)
            }
        }
    }
}

/// Where an entry came from, so every file in the image can be traced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A member of a source (`rel_path` is empty for a single-file source), put there
    /// by the operation on recipe line `line`. Both strings are shared, with the source
    /// tree and the other entries of the same source; the name is behind one word (an
    /// `Arc<str>` is two), which keeps a [`TreeEntry`] at 104 bytes.
    Source {
        name: Arc<String>,
        rel_path: Arc<str>,
        line: u32,
    },
    /// An inline `dir`/`file`/`symlink`/`remove` operation in the recipe.
    Recipe { line: u32 },
    /// A parent directory cairn added so that the layer is self-contained.
    Parent,
    /// Generated from `accounts:`.
    Accounts,
    /// The SBOMs cairn embeds in the image.
    Sbom,
    /// Made by cairn from other files of the image, in place of a maintainer script
    /// (e.g. the CA bundle). Behind one pointer, shared by every entry made from the
    /// same inputs, so that the enum stays small.
    Generated(Arc<GeneratedFrom>),
}

impl Origin {
    /// The entry's path in its source ("" for a single-file source and for every other
    /// origin): with the source's content, where a directory source's file is read
    /// ([`Content::path_in`]).
    pub fn rel_path(&self) -> &str {
        match self {
            Origin::Source { rel_path, .. } => rel_path,
            _ => "",
        }
    }
}

/// What a generated file was made from, and by what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFrom {
    /// The source (a Debian package, `deb:<name>`) whose script cairn did natively.
    pub by: Arc<str>,
    /// Recipe line of that source (`packages:` or the package's entry).
    pub line: u32,
    /// The files it was made from: absolute image path (or `<source>/<member>` for a
    /// package's control file, which is not in the image) and SHA-256, in the order read.
    pub inputs: Vec<(String, crate::digest::Sha256Digest)>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TreeError(pub Box<Diagnostic>);

impl Diagnose for TreeError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        self.0.hint()
    }

    fn location(&self) -> Option<Location<'_>> {
        self.0.location()
    }
}

/// What the image looks like after the layers assembled so far: a lookup through the
/// layer stack (top layer first, then the base), not a copy of it; the assembler looks
/// up few paths (parents once per directory, removes, links), and a copy of a layer
/// of a million files would cost a map of a million keys.
#[derive(Clone, Copy)]
struct ImageView<'a> {
    base: Option<&'a BaseFs>,
    layers: &'a [LayerTree],
}

struct ViewEntry<'a> {
    kind: ViewKind,
    mode: u32,
    owner: Owner,
    /// The name of the layer that wrote it.
    layer: Cow<'a, str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ViewKind {
    Dir,
    Symlink,
    Other,
}

impl<'a> ImageView<'a> {
    /// What `key` is in the image, as applying the layers in order makes it: a layer's
    /// own entry wins; otherwise the layer hides `key` if it removes it or a parent
    /// (`dir/.wh.name`), empties a parent (`dir/.wh..wh..opq`), or replaces a parent
    /// with a non-directory.
    fn get(&self, key: &str) -> Option<ViewEntry<'a>> {
        for layer in self.layers.iter().rev() {
            if let Some(e) = layer.entries.get(key) {
                let kind = match e.kind {
                    TreeEntryKind::Whiteout => return None,
                    TreeEntryKind::Dir => ViewKind::Dir,
                    TreeEntryKind::Symlink { .. } => ViewKind::Symlink,
                    _ => ViewKind::Other,
                };
                return Some(ViewEntry {
                    kind,
                    mode: e.mode,
                    owner: e.owner,
                    layer: Cow::Borrowed(&layer.name),
                });
            }
            if hides(layer, key) {
                return None;
            }
        }
        let e = self.base?.entries.get(key)?;
        let kind = match e.kind {
            BaseKind::Dir => ViewKind::Dir,
            BaseKind::Symlink { .. } => ViewKind::Symlink,
            BaseKind::File { .. } => ViewKind::Other,
        };
        Some(ViewEntry {
            kind,
            mode: e.mode,
            owner: e.owner,
            layer: Cow::Owned(base_layer_name(e.layer)),
        })
    }
}

/// Whether `layer`, which has no entry at `key`, hides what earlier layers have there.
fn hides(layer: &LayerTree, key: &str) -> bool {
    let opaque_in = |dir: &str| {
        let marker = if dir.is_empty() {
            ".wh..wh..opq".to_string()
        } else {
            format!("{dir}/.wh..wh..opq")
        };
        layer.entries.contains_key(&marker)
    };
    let removed = |path: &str| {
        let marker = match path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        layer.entries.contains_key(&marker)
    };
    if removed(key) || opaque_in("") {
        return true;
    }
    ancestors(key).any(|parent| {
        removed(parent)
            || opaque_in(parent)
            || layer
                .entries
                .get(parent)
                .is_some_and(|e| !matches!(e.kind, TreeEntryKind::Dir))
    })
}

/// The parents of `key`, nearest first.
fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    key.rmatch_indices('/').map(move |(i, _)| &key[..i])
}

/// Builds every layer's tree: the recipe's layers in order, then the accounts layer,
/// on top of the base image's file system if there is one.
///
/// Takes the sources' entries as it reads them and releases every source's entries by
/// the end ([`ResolvedSources::release_trees`]): the layer trees share the paths and
/// contents they need, and the entries, one per file, are not read again.
pub fn assemble(
    recipe: &Recipe,
    sources: &mut ResolvedSources,
    base: Option<&BaseFs>,
) -> Result<Vec<LayerTree>, TreeError> {
    assemble_on(recipe, sources, base, Vec::new())
}

/// [`assemble`] on top of layers cairn built before the recipe's own (Debian
/// packages): returns `below` followed by the recipe's layers and the accounts layer.
pub fn assemble_on(
    recipe: &Recipe,
    sources: &mut ResolvedSources,
    base: Option<&BaseFs>,
    below: Vec<LayerTree>,
) -> Result<Vec<LayerTree>, TreeError> {
    let mut layers = below;
    let mut readers = readers(recipe);
    for spec in &recipe.layers {
        let view = ImageView {
            base,
            layers: &layers,
        };
        let layer = LayerAssembler::new(recipe, &spec.name, view).recipe_layer(
            spec,
            sources,
            &mut readers,
        )?;
        layers.push(layer);
    }
    let package_accounts = sources.packages.as_ref().and_then(|p| p.accounts.as_ref());
    if recipe.accounts.is_some() || package_accounts.is_some() {
        let view = ImageView {
            base,
            layers: &layers,
        };
        let layer = LayerAssembler::new(recipe, ACCOUNTS_LAYER, view).accounts_layer(
            recipe.accounts.as_ref(),
            package_accounts,
            base,
        )?;
        layers.push(layer);
    }
    sources.release_trees();
    Ok(layers)
}

/// How many operations of `recipe` read each source's entries: the last one takes
/// them ([`read_entries`]).
fn readers(recipe: &Recipe) -> BTreeMap<&str, usize> {
    let mut readers = BTreeMap::new();
    for op in recipe.layers.iter().flat_map(|spec| &spec.contents) {
        if let OpKind::Extract { source, .. } | OpKind::Copy { source, .. } = &op.kind {
            *readers.entry(source.as_str()).or_insert(0) += 1;
        }
    }
    readers
}

/// Calls `read` with each entry of source `name`, in order. The last operation to read
/// a source takes its entries and, unless another platform shares them, frees them as
/// it reads ([`crate::snapshot::SourceTree::read_freeing`]): at a million files the
/// source's list and the layer's are otherwise both alive at the build's peak.
fn read_entries<E>(
    sources: &mut ResolvedSources,
    readers: &mut BTreeMap<&str, usize>,
    name: &str,
    read: impl FnMut(&SourceEntry) -> Result<(), E>,
) -> Result<(), E> {
    let left = readers
        .get_mut(name)
        .expect("readers are counted from the same recipe");
    *left -= 1;
    let source = sources
        .sources
        .get_mut(name)
        .expect("every source is resolved");
    if *left > 0 {
        return source.tree().entries.iter().try_for_each(read);
    }
    match source.take_tree() {
        Ok(owned) => owned.read_freeing(read),
        Err(shared) => shared.entries.iter().try_for_each(read),
    }
}

struct LayerAssembler<'a> {
    recipe: &'a Recipe,
    view: ImageView<'a>,
    name: &'a str,
    /// Every entry written, appended in the order written (a layer may take a million
    /// from one source: one list, not a map). [`Self::fold`] sorts it by key and keeps
    /// one entry a key, by the rules [`Self::insert`] states, as if each entry had been
    /// checked when it was written.
    written: Vec<Written>,
    /// How many entries were written, the next one's `seq`.
    count: u32,
    /// `(seq, span)`: the operation that wrote the entries from `seq` on, in order.
    spans: Vec<(u32, Span)>,
    /// The `seq`s of directories a later `dir` operation may redefine without a
    /// conflict (the destination of a directory copy), ascending.
    weak_dirs: Vec<u32>,
}

struct Written {
    /// A `Box<str>` (two words, not a `String`'s three): with the source's entries
    /// alive beside this list, it is the build's peak at a million files.
    key: Box<str>,
    entry: TreeEntry,
    /// The order it was written in (for the first conflict and its operation's span).
    seq: u32,
}

impl<'a> LayerAssembler<'a> {
    fn new(recipe: &'a Recipe, name: &'a str, view: ImageView<'a>) -> Self {
        LayerAssembler {
            recipe,
            view,
            name,
            written: Vec::new(),
            count: 0,
            spans: Vec::new(),
            weak_dirs: Vec::new(),
        }
    }

    /// Appends an entry, numbered in the order written.
    fn push(&mut self, key: String, entry: TreeEntry, span: Span) -> u32 {
        let seq = self.count;
        self.count += 1;
        if self.spans.last().is_none_or(|&(_, last)| last != span) {
            self.spans.push((seq, span));
        }
        self.written.push(Written {
            key: key.into_boxed_str(),
            entry,
            seq,
        });
        seq
    }

    /// The span of the operation that wrote entry `seq`.
    fn span_of(&self, seq: u32) -> Span {
        let i = self.spans.partition_point(|&(first, _)| first <= seq);
        self.spans[i - 1].1
    }

    /// Adds a directory unless the layer already has an entry there; an explicit
    /// directory written later replaces it.
    fn insert_weak_dir(&mut self, path: &ImagePath, entry: TreeEntry, span: Span) {
        let key = path.relative().to_string();
        if key.is_empty() {
            return;
        }
        let seq = self.push(key, entry, span);
        self.weak_dirs.push(seq);
    }

    fn error(&self, span: Span, message: String, hint: &str) -> TreeError {
        TreeError(Box::new(
            Diagnostic::new(&self.recipe.file, span, message).with_hint(hint),
        ))
    }

    /// An error found after the entries written so far: a conflict among those came
    /// first and is the one reported.
    fn error_after_written(&mut self, span: Span, message: String, hint: &str) -> TreeError {
        let error = self.error(span, message, hint);
        self.fold().err().unwrap_or(error)
    }

    /// Writes `path`. A path is written once per layer: writing it again is a conflict
    /// unless both are the same directory, or the first is a weak directory and the
    /// second a directory (which replaces it); a weak directory where an entry is
    /// already written is dropped. The conflicts are found by [`Self::fold`].
    fn insert(&mut self, path: &ImagePath, entry: TreeEntry, span: Span) -> Result<(), TreeError> {
        let key = path.relative().to_string();
        let is_whiteout_name = path.file_name().is_some_and(|n| n.starts_with(".wh."));
        if is_whiteout_name != (entry.kind == TreeEntryKind::Whiteout) {
            return Err(self.error_after_written(
                span,
                format!("{path}: names starting with `.wh.` are OCI whiteouts and would delete files from earlier layers"),
                "rename the file; to delete a path from an earlier layer, use `remove:`",
            ));
        }
        if key.is_empty() {
            if entry.kind == TreeEntryKind::Dir {
                return Ok(()); // the image root is implicit
            }
            return Err(self.error_after_written(
                span,
                "cannot replace the image root `/`".into(),
                "write below `/`",
            ));
        }
        self.push(key, entry, span);
        Ok(())
    }

    /// Sorts what is written by key and keeps one entry a key by the rules of
    /// [`Self::insert`]; the first conflict in the order written is the error.
    fn fold(&mut self) -> Result<(), TreeError> {
        // A stable sort keeps a key's entries in the order written; most layers
        // arrive sorted (one source, or sources in order) and need none.
        if !self.written.is_sorted_by(|a, b| a.key <= b.key) {
            self.written.sort_by(|a, b| a.key.cmp(&b.key));
        }
        let is_weak = |seq: u32| self.weak_dirs.binary_search(&seq).is_ok();
        // (seq of the second write, seq of the first)
        let mut conflict: Option<(u32, u32)> = None;
        self.written.dedup_by(|next, kept| {
            if next.key != kept.key {
                return false;
            }
            let both_dirs =
                next.entry.kind == TreeEntryKind::Dir && kept.entry.kind == TreeEntryKind::Dir;
            if is_weak(next.seq) {
                // The path was written before the weak directory: it stays.
            } else if both_dirs && is_weak(kept.seq) {
                std::mem::swap(next, kept);
            } else if !(both_dirs
                && next.entry.mode == kept.entry.mode
                && next.entry.owner == kept.entry.owner)
                && conflict.is_none_or(|(seq, _)| next.seq < seq)
            {
                conflict = Some((next.seq, kept.seq));
            }
            true
        });
        let Some((second, first)) = conflict else {
            return Ok(());
        };
        let key = &self
            .written
            .iter()
            .find(|w| w.seq == first)
            .expect("the first write is kept")
            .key;
        Err(self.error(
            self.span_of(second),
            format!(
                "/{key} is written twice in layer `{}` (first by the operation on line {})",
                self.name,
                self.span_of(first).line
            ),
            "a path may be written once per layer; to replace it, write it in a later layer",
        ))
    }

    /// This layer's entry at `key`; only after [`Self::fold`].
    fn own(&self, key: &str) -> Option<&Written> {
        let i = self.written.binary_search_by(|w| (*w.key).cmp(key)).ok()?;
        Some(&self.written[i])
    }

    fn recipe_layer(
        mut self,
        spec: &LayerSpec,
        sources: &mut ResolvedSources,
        readers: &mut BTreeMap<&str, usize>,
    ) -> Result<LayerTree, TreeError> {
        let sizes = spec.contents.iter().map(|op| match &op.kind {
            OpKind::Extract { source, .. } | OpKind::Copy { source, .. } => {
                sources.sources[source].tree().entries.len() + 1
            }
            _ => 1,
        });
        self.written.reserve_exact(sizes.sum());
        for op in &spec.contents {
            let recipe_origin = Origin::Recipe { line: op.span.line };
            match &op.kind {
                OpKind::Extract { source, to, owner } => {
                    let name = Arc::new(source.clone());
                    if sources.sources[source].kind != LockedKind::Archive {
                        return Err(self.error_after_written(
                            op.span,
                            format!("source `{source}` is not an archive"),
                            "use `copy` for files and directories",
                        ));
                    }
                    // The archive's symlinks, in order, to check once all are written.
                    let mut links = Vec::new();
                    read_entries(sources, readers, source, |e| {
                        let path = to.join(&e.rel_path);
                        if let SourceEntryKind::Symlink { target } = &e.kind {
                            links.push((path.clone(), target.clone()));
                        }
                        let kind = self.source_kind(&e.kind, to);
                        let owner = owner.unwrap_or_else(|| {
                            let (uid, gid) = e.owner.unwrap_or((0, 0));
                            Owner { uid, gid }
                        });
                        let origin = Origin::Source {
                            name: Arc::clone(&name),
                            rel_path: Arc::clone(&e.rel_path),
                            line: op.span.line,
                        };
                        self.insert(
                            &path,
                            TreeEntry {
                                kind,
                                mode: e.mode,
                                owner,
                                origin,
                            },
                            op.span,
                        )
                    })?;
                    self.fold()?;
                    self.check_archive_links(&links, source, to, op.span)?;
                }
                OpKind::Copy {
                    source,
                    to,
                    into_dir,
                    mode,
                    owner,
                } => {
                    let name = Arc::new(source.clone());
                    let owner = owner.unwrap_or(Owner::ROOT);
                    match sources.sources[source].kind {
                        LockedKind::File => {
                            let dest = if *into_dir {
                                let spec = &self.recipe.sources[source];
                                let base = spec
                                    .path
                                    .trim_end_matches('/')
                                    .rsplit('/')
                                    .next()
                                    .unwrap_or(&spec.path);
                                to.join(base)
                            } else {
                                to.clone()
                            };
                            // A file source has one entry.
                            read_entries(sources, readers, source, |e| {
                                let entry = TreeEntry {
                                    kind: self.source_kind(&e.kind, to),
                                    mode: mode.map_or(e.mode, |m| m.0),
                                    owner,
                                    origin: Origin::Source {
                                        name: Arc::clone(&name),
                                        rel_path: Arc::clone(&e.rel_path),
                                        line: op.span.line,
                                    },
                                };
                                self.insert(&dest, entry, op.span)
                            })?;
                        }
                        LockedKind::Dir => {
                            if mode.is_some() {
                                return Err(self.error_after_written(
                                    op.span,
                                    format!("`mode` cannot apply to directory source `{source}`"),
                                    "a directory copy keeps each file's mode (0644, or 0755 if executable); set modes on single files with separate `copy` or `file` operations",
                                ));
                            }
                            // The source directory itself becomes `to`, with the op's owner.
                            let top = TreeEntry {
                                kind: TreeEntryKind::Dir,
                                mode: 0o755,
                                owner,
                                origin: Origin::Source {
                                    name: Arc::clone(&name),
                                    rel_path: "".into(),
                                    line: op.span.line,
                                },
                            };
                            self.insert_weak_dir(to, top, op.span);
                            read_entries(sources, readers, source, |e| {
                                let entry = TreeEntry {
                                    kind: self.source_kind(&e.kind, to),
                                    mode: e.mode,
                                    owner,
                                    origin: Origin::Source {
                                        name: Arc::clone(&name),
                                        rel_path: Arc::clone(&e.rel_path),
                                        line: op.span.line,
                                    },
                                };
                                self.insert(&to.join(&e.rel_path), entry, op.span)
                            })?;
                        }
                        LockedKind::Archive | LockedKind::Deb => {
                            return Err(self.error_after_written(
                                op.span,
                                format!("source `{source}` is an archive"),
                                "use `extract` to unpack an archive",
                            ));
                        }
                    }
                }
                OpKind::Dir { path, mode, owner } => {
                    let entry = TreeEntry {
                        kind: TreeEntryKind::Dir,
                        mode: mode.map_or(0o755, |m| m.0),
                        owner: owner.unwrap_or(Owner::ROOT),
                        origin: recipe_origin,
                    };
                    self.insert(path, entry, op.span)?;
                }
                OpKind::File {
                    path,
                    content,
                    mode,
                    owner,
                } => {
                    let entry = TreeEntry {
                        kind: TreeEntryKind::File(FileData::Inline(content.as_bytes().into())),
                        mode: mode.map_or(0o644, |m| m.0),
                        owner: owner.unwrap_or(Owner::ROOT),
                        origin: recipe_origin,
                    };
                    self.insert(path, entry, op.span)?;
                }
                OpKind::Symlink {
                    path,
                    target,
                    owner,
                } => {
                    let entry = TreeEntry {
                        kind: TreeEntryKind::Symlink {
                            target: target.clone(),
                        },
                        mode: 0o777,
                        owner: owner.unwrap_or(Owner::ROOT),
                        origin: recipe_origin,
                    };
                    self.insert(path, entry, op.span)?;
                }
                OpKind::Remove { path } => {
                    let key = path.relative();
                    if self.view.get(key).is_none() {
                        return Err(self.error_after_written(
                            op.span,
                            format!("cannot remove {path}: no earlier layer has it"),
                            "`remove` deletes a path written by an earlier layer",
                        ));
                    }
                    let name = path
                        .file_name()
                        .expect("remove / is rejected by the parser");
                    let whiteout = path
                        .parent()
                        .expect("not the root")
                        .join(&format!(".wh.{name}"));
                    let entry = TreeEntry {
                        kind: TreeEntryKind::Whiteout,
                        mode: 0,
                        owner: Owner::ROOT,
                        origin: recipe_origin,
                    };
                    self.insert(&whiteout, entry, op.span)?;
                }
            }
        }
        self.fold()?;
        self.check_whiteouts()?;
        self.finish()
    }

    /// Checks where each symlink of an archive extracted at `to` resolves (`links`:
    /// its path and target, in the archive's order), through the links of this layer:
    /// inside `to`, or the archive could reach what lies outside it
    /// ([`super::links`]). Only after [`Self::fold`].
    fn check_archive_links(
        &self,
        links: &[(ImagePath, String)],
        source: &str,
        to: &ImagePath,
        span: Span,
    ) -> Result<(), TreeError> {
        let lookup = |key: &str| match self.own(key).map(|w| &w.entry) {
            Some(TreeEntry {
                kind: TreeEntryKind::Symlink { target },
                ..
            }) => Found::Symlink(target),
            Some(_) => Found::Other,
            None => match self.view.get(key) {
                Some(v) if v.kind == ViewKind::Symlink => Found::EarlierSymlink(v.layer),
                _ => Found::Other,
            },
        };
        for (path, target) in links {
            check_resolves_inside(to.relative(), path.relative(), target, lookup).map_err(
                |why| {
                    self.error(
                        span,
                        format!("archive `{source}`: symlink {path} -> {target} {why}"),
                        "an archive may only link inside the directory it is extracted to; \
                         extract it at `/` or fix the link",
                    )
                },
            )?;
        }
        Ok(())
    }

    /// Maps a source entry's kind into the image: hard-link targets are keyed by image path.
    fn source_kind(&self, kind: &SourceEntryKind, to: &ImagePath) -> TreeEntryKind {
        match kind {
            SourceEntryKind::File(c) => TreeEntryKind::File(FileData::Source(c.clone())),
            SourceEntryKind::Dir => TreeEntryKind::Dir,
            SourceEntryKind::Symlink { target } => TreeEntryKind::Symlink {
                target: target.clone(),
            },
            SourceEntryKind::Hardlink { target } => TreeEntryKind::Hardlink {
                target: to.join(target).relative().to_string(),
            },
        }
    }

    /// Refuses a whiteout of a path this layer writes again. Only after [`Self::fold`].
    fn check_whiteouts(&self) -> Result<(), TreeError> {
        for w in &self.written {
            let Some(Whiteout::Path(removed)) = whiteout(&w.key) else {
                continue;
            };
            let prefix = format!("{removed}/");
            let from_prefix = self.written.partition_point(|x| *x.key < *prefix);
            let rewritten = self.own(&removed).is_some()
                || self
                    .written
                    .get(from_prefix)
                    .is_some_and(|x| x.key.starts_with(&prefix));
            if rewritten {
                return Err(self.error(
                    self.span_of(w.seq),
                    format!(
                        "/{removed} is removed and written again in layer `{}`",
                        self.name
                    ),
                    "a whiteout hides only earlier layers; write the new content in a later layer",
                ));
            }
        }
        Ok(())
    }

    /// Adds missing parent directories and checks no entry goes through a symlink or file.
    ///
    /// Keys are visited in order, so a key's parents come before it: the walk up from
    /// a key stops at the first parent already checked (this layer's own directory, or
    /// one added here), whose own parents were checked then. Each directory is walked
    /// past once, and the work is linear in the paths, however deep the nesting.
    fn finish(mut self) -> Result<LayerTree, TreeError> {
        self.fold()?;
        let mut parents: BTreeMap<String, TreeEntry> = BTreeMap::new();
        for w in &self.written {
            let key = &w.key;
            for parent in ancestors(key) {
                if parents.contains_key(parent) {
                    break;
                }
                if let Some(own) = self.own(parent) {
                    if own.entry.kind != TreeEntryKind::Dir {
                        return Err(self.error(
                            self.span_of(w.seq),
                            format!("/{key} needs /{parent} to be a directory, but layer `{}` makes it a {}", self.name, kind_name(&own.entry.kind)),
                            "write the file somewhere else, or drop the conflicting entry",
                        ));
                    }
                    break;
                }
                let (mode, owner) = match self.view.get(parent) {
                    None => (0o755, Owner::ROOT),
                    Some(v) if v.kind == ViewKind::Dir => (v.mode, v.owner),
                    Some(v) => {
                        let what = if v.kind == ViewKind::Symlink {
                            "a symlink"
                        } else {
                            "a file"
                        };
                        return Err(self.error(
                            self.span_of(w.seq),
                            format!(
                                "/{key} goes through /{parent}, which is {what} in layer `{}`",
                                v.layer
                            ),
                            "cairn never writes through symlinks; use the path the link points to",
                        ));
                    }
                };
                let entry = TreeEntry {
                    kind: TreeEntryKind::Dir,
                    mode,
                    owner,
                    origin: Origin::Parent,
                };
                parents.insert(parent.to_string(), entry);
            }
        }
        let name = self.name.to_string();
        // In place: the list of what was written becomes the layer's.
        let mut entries: Vec<(String, TreeEntry)> = self
            .written
            .into_iter()
            .map(|w| (w.key.into(), w.entry))
            .collect();
        if !parents.is_empty() {
            entries.reserve_exact(parents.len());
            entries.extend(parents);
            // The keys are unique, so an unstable sort is deterministic, and it sorts
            // in place (a stable sort would take a buffer of half the list).
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(LayerTree {
            name,
            entries: SortedMap::from_sorted(entries),
        })
    }

    /// `/etc/passwd`, `/etc/group` and the home directories of `accounts:`, merged
    /// with the base image's files, or with the packages' accounts
    /// ([`super::accounts`]) when they have some.
    fn accounts_layer(
        mut self,
        accounts: Option<&Accounts>,
        packages: Option<&crate::debian::sysusers::PackageAccounts>,
        base: Option<&BaseFs>,
    ) -> Result<LayerTree, TreeError> {
        let files = super::accounts::account_files(self.recipe, packages, base)?;
        let recipe_users = accounts.map(|a| a.users.as_slice()).unwrap_or_default();
        let span = Span::default();
        for (path, content, origin) in files {
            let entry = TreeEntry {
                kind: TreeEntryKind::File(FileData::Inline(content.into_bytes().into())),
                mode: 0o644,
                owner: Owner::ROOT,
                origin,
            };
            self.insert(&ImagePath::parse(path).expect("static path"), entry, span)?;
        }
        for u in recipe_users {
            if u.home.is_root() {
                continue;
            }
            let entry = TreeEntry {
                kind: TreeEntryKind::Dir,
                mode: if u.uid == 0 { 0o700 } else { 0o755 },
                owner: Owner {
                    uid: u.uid,
                    gid: u.gid,
                },
                origin: Origin::Accounts,
            };
            self.insert(&u.home, entry, span)?;
        }
        self.finish()
    }
}

/// A layer of files cairn generates (e.g. the embedded SBOMs), on top of `previous`,
/// following the same path rules as recipe layers.
pub fn generated_layer(
    recipe: &Recipe,
    base: Option<&BaseFs>,
    previous: &[LayerTree],
    name: &str,
    files: Vec<(ImagePath, FileData)>,
) -> Result<LayerTree, TreeError> {
    let entries = files
        .into_iter()
        .map(|(path, data)| {
            let entry = TreeEntry {
                kind: TreeEntryKind::File(data),
                mode: 0o644,
                owner: Owner::ROOT,
                origin: Origin::Sbom,
            };
            (path, entry)
        })
        .collect();
    layer_from_entries(recipe, base, previous, name, entries)
}

/// A layer of entries cairn puts together itself (generated files, Debian packages)
/// on top of the base and `previous`, following the same path rules as recipe layers.
pub fn layer_from_entries(
    recipe: &Recipe,
    base: Option<&BaseFs>,
    previous: &[LayerTree],
    name: &str,
    entries: Vec<(ImagePath, TreeEntry)>,
) -> Result<LayerTree, TreeError> {
    let view = ImageView {
        base,
        layers: previous,
    };
    let mut assembler = LayerAssembler::new(recipe, name, view);
    assembler.written.reserve_exact(entries.len());
    for (path, entry) in entries {
        assembler.insert(&path, entry, Span::default())?;
    }
    assembler.finish()
}

fn kind_name(kind: &TreeEntryKind) -> &'static str {
    match kind {
        TreeEntryKind::File(_) | TreeEntryKind::Hardlink { .. } => "file",
        TreeEntryKind::Dir => "directory",
        TreeEntryKind::Symlink { .. } => "symlink",
        TreeEntryKind::Whiteout => "whiteout",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer holds one a file, and its assembler another while it reads a source
    /// (the source's own entries still alive): at a million files each 8 bytes are
    /// 16 MB of the build's peak.
    #[test]
    fn a_tree_entry_is_104_bytes() {
        assert_eq!(std::mem::size_of::<TreeEntry>(), 104);
    }

    #[test]
    fn the_view_of_earlier_layers_honours_whiteouts_and_replaced_parents() {
        let entry = |kind, mode| TreeEntry {
            kind,
            mode,
            owner: Owner::ROOT,
            origin: Origin::Parent,
        };
        let file = || {
            entry(
                TreeEntryKind::File(FileData::Inline(b"x"[..].into())),
                0o644,
            )
        };
        let layer = |name: &str, entries: Vec<(&str, TreeEntry)>| LayerTree {
            name: name.into(),
            entries: entries
                .into_iter()
                .map(|(k, e)| (k.to_string(), e))
                .collect(),
        };
        let layers = [
            layer(
                "one",
                vec![
                    ("etc", entry(TreeEntryKind::Dir, 0o700)),
                    ("etc/motd", file()),
                    ("opt", entry(TreeEntryKind::Dir, 0o755)),
                    ("opt/a", file()),
                    ("srv", entry(TreeEntryKind::Dir, 0o755)),
                    ("srv/x", file()),
                ],
            ),
            layer(
                "two",
                vec![
                    ("etc/.wh.motd", entry(TreeEntryKind::Whiteout, 0)),
                    ("opt/.wh..wh..opq", entry(TreeEntryKind::Whiteout, 0)),
                    (
                        "srv",
                        entry(
                            TreeEntryKind::Symlink {
                                target: "/x".into(),
                            },
                            0o777,
                        ),
                    ),
                ],
            ),
            layer("three", vec![("opt/b", file())]),
        ];
        let mut base = BaseFs::default();
        base.entries = [(
            "usr".to_string(),
            crate::base::fs::BaseEntry {
                kind: BaseKind::Dir,
                mode: 0o750,
                owner: Owner::ROOT,
                layer: 0,
            },
        )]
        .into();
        let view = ImageView {
            base: Some(&base),
            layers: &layers,
        };
        let seen = |key: &str| view.get(key).map(|v| (v.mode, v.layer.into_owned()));
        assert_eq!(seen("etc"), Some((0o700, "one".into())));
        assert_eq!(seen("etc/motd"), None, "removed by a whiteout");
        assert_eq!(seen("opt/a"), None, "emptied by an opaque whiteout");
        assert_eq!(seen("opt/b"), Some((0o644, "three".into())));
        assert_eq!(seen("srv/x"), None, "its parent became a symlink");
        assert!(view.get("srv").is_some_and(|v| v.kind == ViewKind::Symlink));
        assert_eq!(seen("usr"), Some((0o750, "base:0".into())));
    }

    /// A directory source `files` (`a`, `sub`, `sub/b`) resolved for one platform.
    fn dir_source() -> crate::resolve::ResolvedSource {
        use crate::snapshot::{Location, SourceEntry, SourceTree};
        let dir = Arc::new(std::path::PathBuf::from("/src/files"));
        let entry = |path: &str, kind| SourceEntry {
            rel_path: path.into(),
            kind,
            mode: 0o644,
            owner: None,
        };
        let file = |bytes: &[u8]| {
            SourceEntryKind::File(Content {
                location: Location::InDir {
                    dir: Arc::clone(&dir),
                },
                size: bytes.len() as u64,
                sha256: crate::digest::Sha256Digest::of(bytes),
            })
        };
        let tree = SourceTree {
            entries: vec![
                entry("a", file(b"a")),
                entry("sub", SourceEntryKind::Dir),
                entry("sub/b", file(b"b")),
            ],
        };
        crate::resolve::ResolvedSource::new(
            "files".into(),
            LockedKind::Dir,
            crate::digest::Sha256Digest::of(b"files"),
            tree,
            None,
        )
    }

    fn platform_sources(source: crate::resolve::ResolvedSource) -> ResolvedSources {
        ResolvedSources {
            sources: [("files".to_string(), source)].into(),
            lock: Default::default(),
            lock_changed: false,
            warnings: Vec::new(),
            packages: None,
        }
    }

    /// The last operation to read a source takes its entries (and frees them as it
    /// reads): the earlier ones, and another platform sharing them, still get them all.
    #[test]
    fn a_source_read_by_several_operations_and_platforms_is_in_each() {
        let recipe = crate::recipe::parse(crate::recipe::RecipeFile {
            path: "demo.yaml".into(),
            dir: ".".into(),
            text: "cairn: 1\nname: demo\nsources:\n  files: { path: files/ }\nlayers:\n  \
                   - name: one\n    contents:\n      - copy: files\n        to: /a\n      \
                   - copy: files\n        to: /b\n  - name: two\n    contents:\n      \
                   - copy: files\n        to: /c\n"
                .into(),
        })
        .expect("test recipe parses");
        let shared = dir_source();
        let mut first = platform_sources(shared.clone());
        let mut second = platform_sources(shared);
        for sources in [&mut first, &mut second] {
            let layers = assemble(&recipe, sources, None).unwrap();
            let keys =
                |layer: &LayerTree| -> Vec<String> { layer.entries.keys().cloned().collect() };
            assert_eq!(
                keys(&layers[0]),
                ["a", "a/a", "a/sub", "a/sub/b", "b", "b/a", "b/sub", "b/sub/b"]
            );
            assert_eq!(keys(&layers[1]), ["c", "c/a", "c/sub", "c/sub/b"]);
            // Each file is read from the source's directory at its member path.
            let TreeEntry {
                kind: TreeEntryKind::File(FileData::Source(content)),
                origin,
                ..
            } = &layers[1].entries["c/sub/b"]
            else {
                panic!("a file from the source")
            };
            assert_eq!(
                content.path_in(origin.rel_path()),
                std::path::Path::new("/src/files/sub/b")
            );
        }
    }

    fn test_recipe() -> Recipe {
        crate::recipe::parse(crate::recipe::RecipeFile {
            path: "demo.yaml".into(),
            dir: ".".into(),
            text: "cairn: 1\nname: demo\nlayers:\n  - name: l\n    contents:\n      - dir: /x\n"
                .into(),
        })
        .expect("test recipe parses")
    }

    fn written(
        assembler: &mut LayerAssembler,
        writes: &[(&str, TreeEntryKind, u32, u32)],
    ) -> Result<(), TreeError> {
        for (path, kind, mode, line) in writes {
            let entry = TreeEntry {
                kind: kind.clone(),
                mode: *mode,
                owner: Owner::ROOT,
                origin: Origin::Recipe { line: *line },
            };
            let span = Span {
                line: *line,
                column: 1,
            };
            assembler.insert(&ImagePath::parse(path).unwrap(), entry, span)?;
        }
        Ok(())
    }

    #[test]
    fn the_first_path_written_twice_is_reported_whatever_order_the_paths_sort_in() {
        let recipe = test_recipe();
        let view = ImageView {
            base: None,
            layers: &[],
        };
        let file = || TreeEntryKind::File(FileData::Inline(b"x"[..].into()));
        let mut assembler = LayerAssembler::new(&recipe, "l", view);
        written(
            &mut assembler,
            &[
                ("/z", file(), 0o644, 3),
                ("/a", file(), 0o644, 4),
                ("/z", file(), 0o644, 5),
                ("/a", file(), 0o644, 6),
            ],
        )
        .unwrap();
        let error = assembler.finish().unwrap_err();
        assert_eq!(
            error.to_string(),
            "/z is written twice in layer `l` (first by the operation on line 3)"
        );
        assert_eq!(error.0.span.line, 5);
    }

    #[test]
    fn a_copied_directory_may_be_redefined_and_the_same_directory_written_twice() {
        let recipe = test_recipe();
        let view = ImageView {
            base: None,
            layers: &[],
        };
        let mut assembler = LayerAssembler::new(&recipe, "l", view);
        let dir = |mode| TreeEntry {
            kind: TreeEntryKind::Dir,
            mode,
            owner: Owner::ROOT,
            origin: Origin::Parent,
        };
        let data = ImagePath::parse("/data").unwrap();
        assembler.insert_weak_dir(&data, dir(0o755), Span::default());
        written(
            &mut assembler,
            &[
                ("/data", TreeEntryKind::Dir, 0o700, 2),
                ("/data", TreeEntryKind::Dir, 0o700, 3),
                ("/srv", TreeEntryKind::Dir, 0o750, 4),
            ],
        )
        .unwrap();
        // A directory copy onto a directory already written leaves it as it is.
        let srv = ImagePath::parse("/srv").unwrap();
        assembler.insert_weak_dir(&srv, dir(0o755), Span::default());
        let layer = assembler.finish().unwrap();
        let modes: Vec<(&str, u32)> = layer
            .entries
            .iter()
            .map(|(k, e)| (k.as_str(), e.mode))
            .collect();
        assert_eq!(modes, [("data", 0o700), ("srv", 0o750)]);

        // Another mode is a conflict with the explicit directory, not the copy's.
        let mut assembler = LayerAssembler::new(&recipe, "l", view);
        assembler.insert_weak_dir(&data, dir(0o755), Span::default());
        written(
            &mut assembler,
            &[
                ("/data", TreeEntryKind::Dir, 0o700, 2),
                ("/data", TreeEntryKind::Dir, 0o711, 3),
            ],
        )
        .unwrap();
        assert_eq!(
            assembler.finish().unwrap_err().to_string(),
            "/data is written twice in layer `l` (first by the operation on line 2)"
        );
    }
}
