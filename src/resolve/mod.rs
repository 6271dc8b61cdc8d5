//! Stage 2: resolve. Pins every source by digest and snapshots its contents.
//!
//! Takes a validated [`Recipe`] and the lock file; gives [`ResolvedSources`], in which
//! every source has a digest that matched its pin (from the recipe or the lock) and a
//! [`SourceTree`] listing exactly what later stages may read. File bytes are read again
//! when a layer is written and checked against the digests recorded here, so a source
//! that changes mid-build is an error, never a silent difference. A source with a
//! `signature:` is verified ([`signature`]) before it is snapshotted or unpacked, and
//! the digest pinned for it is that of the bytes the signature was verified over.

pub mod base;
pub mod containment;
pub mod hash_index;
mod host;
pub mod lock;
pub mod packages;
pub mod platforms;
pub mod signature;

use containment::SourceRoots;
use hash_index::HashIndex;
pub use host::normalised_file_mode;
pub use lock::{lock_path_for, LockedKind, LockedSource, Lockfile};

use crate::diag::{self, Diagnose};
use crate::digest::Sha256Digest;
use crate::recipe::{Diagnostic, Recipe, SignatureSpec, SourceKind, SourceSpec};
use crate::snapshot::{archive, SourceEntryKind, SourceTree};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// How pins are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// CI mode: every source must be pinned and the lock must match the recipe exactly.
    Locked,
    /// A normal build: unpinned sources are pinned (with a warning) and the lock updated.
    PinMissing,
    /// `cairn lock`: re-pin every source not pinned in the recipe itself, as its bytes
    /// are now; keep the base image's and the packages' pins while they still match
    /// the recipe, resolving only what is missing or stale.
    Repin,
    /// `cairn lock --update`: as [`LockMode::Repin`], and resolve the base image's
    /// reference and the packages afresh (newer versions from the mirror).
    Update,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ResolvedSource {
    pub name: String,
    pub kind: LockedKind,
    pub digest: Sha256Digest,
    /// The source's entries, shared by every platform that has the source (it is read
    /// once), never copied: it holds an entry per file. `None` once the layers are
    /// assembled: the assembler takes it ([`Self::take_tree`]) or releases it
    /// ([`ResolvedSources::release_trees`]).
    tree: Option<Arc<SourceTree>>,
    /// Key id of the verified detached signature, if the recipe gave one.
    pub signer: Option<String>,
}

impl ResolvedSource {
    pub fn new(
        name: String,
        kind: LockedKind,
        digest: Sha256Digest,
        tree: SourceTree,
        signer: Option<String>,
    ) -> Self {
        ResolvedSource {
            name,
            kind,
            digest,
            tree: Some(Arc::new(tree)),
            signer,
        }
    }

    /// The source's entries, sorted by path.
    ///
    /// # Panics
    /// Once the entries are taken or released: only the plan and the layer assembler
    /// read entries, and the assembler takes them.
    pub fn tree(&self) -> &SourceTree {
        self.tree
            .as_deref()
            .expect("source entries are read only before the layers are assembled")
    }

    /// Takes this platform's hold on the entries, for the last operation that reads
    /// them: the list itself when no other platform shares it (to be freed as it is
    /// read, [`SourceTree::read_freeing`]), else the shared list.
    ///
    /// # Panics
    /// When the entries were taken or released before.
    pub fn take_tree(&mut self) -> Result<SourceTree, Arc<SourceTree>> {
        let tree = self
            .tree
            .take()
            .expect("a source's entries are taken once, by their last reader");
        Arc::try_unwrap(tree)
    }

    /// The entries, to change in a test.
    #[cfg(test)]
    pub fn tree_mut(&mut self) -> &mut SourceTree {
        Arc::make_mut(self.tree.as_mut().expect("not released"))
    }
}

/// Serialises to the canonical form the warm image key is hashed from
/// ([`crate::warm::ImageInputs`]): a field is in the key unless skipped here.
#[derive(Debug, serde::Serialize)]
pub struct ResolvedSources {
    pub sources: BTreeMap<String, ResolvedSource>,
    /// The lock as it should now be on disk.
    pub lock: Lockfile,
    /// Whether `lock` differs from the lock that was read: not in the warm key, as the
    /// first build after a pin and the next one make the same image.
    #[serde(skip)]
    pub lock_changed: bool,
    /// Not in the warm key: messages for the user, not inputs.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The recipe's Debian packages, once installed ([`packages::hook_install`]).
    pub packages: Option<crate::debian::InstalledPackages>,
}

impl ResolvedSources {
    /// Frees this platform's hold on the sources' entries, an entry per file, once the
    /// layers are assembled: the layer trees share the paths and contents they need,
    /// and nothing later reads entries. A source another platform still has stays.
    pub fn release_trees(&mut self) {
        for source in self.sources.values_mut() {
            source.tree = None;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Source(Box<Diagnostic>),
    #[error("{message}")]
    Lock { message: String, hint: String },
}

impl Diagnose for ResolveError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            ResolveError::Source(diagnostic) => diagnostic.hint(),
            ResolveError::Lock { hint, .. } => Some(hint.into()),
        }
    }

    fn location(&self) -> Option<diag::Location<'_>> {
        match self {
            ResolveError::Source(diagnostic) => diagnostic.location(),
            ResolveError::Lock { .. } => None,
        }
    }
}

fn source_error(recipe: &Recipe, spec: &SourceSpec, message: String, hint: &str) -> ResolveError {
    ResolveError::Source(Box::new(
        Diagnostic::new(&recipe.file, spec.span, message).with_hint(hint),
    ))
}

/// Resolves every source of `recipe`. Archive members are staged (content-addressed)
/// below `staging`, which must exist and outlive the returned trees. With `cache_dir`,
/// `path:` sources keep a [`hash_index`] there, so unchanged files are not re-read
/// (except on `--locked` builds, which read every file). A source must resolve inside
/// the recipe's directory or one of `roots` ([`containment`]).
pub fn resolve(
    recipe: &Recipe,
    lock: &Lockfile,
    lock_path: &Path,
    mode: LockMode,
    staging: &Path,
    cache_dir: Option<&Path>,
    roots: &SourceRoots,
) -> Result<ResolvedSources, ResolveError> {
    // Packages are pinned by their own stage; the sources' stage keeps their pins.
    let mut new_lock = Lockfile {
        packages: lock.packages.clone(),
        ..Lockfile::default()
    };
    let mut sources = BTreeMap::new();
    let mut warnings = Vec::new();

    for spec in recipe.sources.values() {
        let host_path = roots
            .resolve(
                &format!("source `{}`", spec.name),
                &recipe.file.dir,
                &spec.path,
            )
            .map_err(|e| {
                ResolveError::Source(Box::new(
                    Diagnostic::new(&recipe.file, spec.span, e.to_string()).with_hint_of(&e),
                ))
            })?;
        let verified = match &spec.signature {
            Some(signature) => Some(verify_signature(recipe, spec, signature, &host_path)?),
            None => None,
        };
        let index = match (cache_dir, spec.kind) {
            (Some(dir), SourceKind::Path) => {
                match HashIndex::open(dir, &host_path, mode != LockMode::Locked) {
                    Ok(index) => Some(index),
                    Err(e) => {
                        warnings.push(format!(
                            "source `{}`: no file hash index in {}: {e}",
                            spec.name,
                            dir.display()
                        ));
                        None
                    }
                }
            }
            _ => None,
        };
        let (kind, digest, tree) = snapshot(recipe, spec, &host_path, staging, index.as_ref())?;
        if let Some(index) = index {
            if let Err(e) = index.save() {
                warnings.push(format!(
                    "source `{}`: the file hash index was not saved: {e}",
                    spec.name
                ));
            }
        }
        if let Some(verified) = &verified {
            if verified.sha256 != digest {
                return Err(source_error(
                    recipe,
                    spec,
                    format!(
                        "source `{}` ({}) changed while it was read: its signature was verified over {}, then it read as {digest}",
                        spec.name, spec.path, verified.sha256
                    ),
                    "something is writing to the source during the build; build again once it has finished",
                ));
            }
        }
        let locked = lock.sources.get(&spec.name);
        let lock_name = lock_path.display();

        if let Some(pinned) = spec.sha256 {
            if pinned != digest {
                return Err(source_error(
                    recipe,
                    spec,
                    format!(
                        "source `{}` ({}) does not match its pin: expected {pinned}, found {digest}",
                        spec.name, spec.path
                    ),
                    "if the new content is intended, update `sha256:` in the recipe",
                ));
            }
        }
        match (locked, mode) {
            (Some(l), _) if l.kind == kind && l.sha256 == digest => {}
            (Some(l), LockMode::Locked | LockMode::PinMissing) if spec.sha256.is_none() => {
                return Err(source_error(
                    recipe,
                    spec,
                    format!(
                        "source `{}` ({}) does not match {lock_name}: expected {} {}, found {kind} {digest}",
                        spec.name, spec.path, l.kind, l.sha256
                    ),
                    "if the new content is intended, run `cairn lock` to re-pin it",
                ));
            }
            // Pinned (and matched) in the recipe itself: the lock need not repeat it.
            (None, LockMode::Locked) if spec.sha256.is_some() => {}
            (_, LockMode::Locked) => {
                let message = match locked {
                    None => format!(
                        "source `{}` ({}) is not pinned: no `sha256:` in the recipe and no entry in {lock_name}",
                        spec.name, spec.path
                    ),
                    Some(_) => format!(
                        "{lock_name} disagrees with the recipe's pin for source `{}`",
                        spec.name
                    ),
                };
                return Err(source_error(
                    recipe,
                    spec,
                    message,
                    "--locked builds use only pinned inputs; run `cairn lock` and commit the lock file",
                ));
            }
            (None, LockMode::PinMissing) if spec.sha256.is_none() => warnings.push(format!(
                "source `{}` was not pinned; pinned it as {digest} in {lock_name}",
                spec.name
            )),
            _ => {}
        }
        new_lock.sources.insert(
            spec.name.clone(),
            LockedSource {
                kind,
                sha256: digest,
            },
        );
        sources.insert(
            spec.name.clone(),
            ResolvedSource::new(
                spec.name.clone(),
                kind,
                digest,
                tree,
                verified.map(|v| v.key_id),
            ),
        );
    }

    if mode == LockMode::Locked {
        if let Some(stale) = lock
            .sources
            .keys()
            .find(|k| !recipe.sources.contains_key(*k))
        {
            return Err(ResolveError::Lock {
                message: format!(
                    "{} pins source `{stale}`, which the recipe does not have",
                    lock_path.display()
                ),
                hint: "run `cairn lock` to bring the lock file up to date, and commit it".into(),
            });
        }
    }
    let lock_changed = &new_lock != lock;
    Ok(ResolvedSources {
        sources,
        lock: new_lock,
        lock_changed,
        warnings,
        packages: None,
    })
}

/// Checks the source's detached signature; paths are relative to the recipe file.
fn verify_signature(
    recipe: &Recipe,
    spec: &SourceSpec,
    signature: &SignatureSpec,
    host_path: &Path,
) -> Result<signature::Verified, ResolveError> {
    let dir = &recipe.file.dir;
    signature::verify(
        host_path,
        &dir.join(&signature.path),
        &dir.join(&signature.key),
    )
    .map_err(|e| {
        ResolveError::Source(Box::new(
            Diagnostic::new(
                &recipe.file,
                spec.span,
                format!("source `{}` ({}): {e}", spec.name, spec.path),
            )
            .with_hint_of(&e),
        ))
    })
}

fn snapshot(
    recipe: &Recipe,
    spec: &SourceSpec,
    host_path: &Path,
    staging: &Path,
    index: Option<&HashIndex>,
) -> Result<(LockedKind, Sha256Digest, SourceTree), ResolveError> {
    match spec.kind {
        SourceKind::Path => match host::snapshot(host_path, index) {
            Ok(host::HostSnapshot::File(tree)) => {
                let SourceEntryKind::File(content) = &tree.entries[0].kind else {
                    unreachable!("a file snapshot holds one file")
                };
                Ok((LockedKind::File, content.sha256, tree))
            }
            Ok(host::HostSnapshot::Dir(tree)) => {
                Ok((LockedKind::Dir, host::dir_digest(&tree), tree))
            }
            Err(e) => Err(source_error(
                recipe,
                spec,
                format!("source `{}`: {e}", spec.name),
                "source paths are relative to the recipe file; check the path and permissions",
            )),
        },
        SourceKind::Archive => {
            let (tree, digest) =
                archive::unpack(host_path, staging, recipe.limits).map_err(|e| {
                    let hint = e.hint().map_or_else(
                        || "archive sources must be tar, tar.gz, tar.zst or tar.xz with safe member names".into(),
                        Cow::into_owned,
                    );
                    source_error(recipe, spec, format!("source `{}`: {e}", spec.name), &hint)
                })?;
            Ok((LockedKind::Archive, digest, tree))
        }
    }
}

#[cfg(test)]
mod tests;
