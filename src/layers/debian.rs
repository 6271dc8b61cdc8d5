//! The layers of the recipe's Debian packages ([`crate::debian`] installs them):
//! spreading installed packages over at most `max_layers` layers, below the recipe's
//! own, each package whole in one layer with its dpkg metadata.
//!
//! A package goes to layer `H(name) mod max_layers`, H being the first 8 bytes of
//! SHA-256 of its name; layers that get no package are left out, the rest keep
//! bucket order. A package's layer depends only on its name, its version and the
//! other packages of its bucket, so two images whose package sets overlap share every
//! layer whose bucket holds the same packages at the same versions, and adding or
//! updating one package changes exactly one layer. (Grouping by dependency depth or
//! popularity would move packages between layers whenever the set changes.)
//!
//! In the images of a recipe with `platforms:`, `Architecture: all` packages are
//! spread the same way over buckets of their own, at most `max_layers` more, layers
//! `packages-all-<i>` below the others: each such layer is then the same bytes in
//! every platform's image (same `.deb`s, same dpkg metadata, parents taken from the
//! base alone), one blob that every manifest names. An image of one platform keeps
//! one set of buckets, so its bytes are as they were.
//!
//! When `ca-certificates` is installed, one more layer, `ca-certificates`, above the
//! package layers, holds what cairn makes in place of `update-ca-certificates`
//! ([`crate::debian::ca_certificates`]): the conf, the links and the bundle, each
//! traced to the certificate files it was made from, and the recipe's extra
//! certificates. It is a layer of its own because it depends on the certificates of
//! every package layer.
//!
//! When `libc-bin` (or `libc6`) is installed, one more layer above those, `ld-so-cache`, holds
//! `/etc/ld.so.cache` made from the tree of the layers below
//! ([`crate::debian::ld_so_cache`]), traced to the configuration files and libraries
//! it lists.
//!
//! Metadata, as distroless images carry it, so that scanners (trivy, grype, syft)
//! see every package: `/var/lib/dpkg/status.d/<name>` holds the package's control
//! stanza with `Status: install ok installed` added after `Package:`, and
//! `/var/lib/dpkg/status.d/<name>.md5sums` the package's md5sums file when it has one.
//! With `dpkg_database: full`, each package layer holds the package's files of
//! `/var/lib/dpkg/info` instead ([`crate::debian::dpkg_database`]), and one more layer
//! on top, `dpkg-database`, the status file made from every package's control file.

use super::{FileData, GeneratedFrom, LayerTree, Origin, TreeEntry, TreeEntryKind, TreeError};
use crate::debian::ca_certificates::{self, CaCertificates};
use crate::debian::dpkg_database;
use crate::debian::ld_so_cache;
use crate::debian::{alternatives, source_name, InstalledPackage};
use crate::digest::Sha256Digest;
use crate::recipe::{Diagnostic, DpkgDatabase, ImagePath, Owner, Recipe};
use crate::snapshot::{SourceEntry, SourceEntryKind};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The package layers of the packages [`crate::resolve::packages::hook_install`] installed (none without packages).
pub fn hook_layers(
    recipe: &Recipe,
    resolved: &crate::resolve::ResolvedSources,
    base: Option<&crate::base::BaseFs>,
) -> Result<Vec<LayerTree>, TreeError> {
    let (Some(installed), Some(spec)) = (&resolved.packages, &recipe.packages) else {
        return Ok(Vec::new());
    };
    let mut layers = package_layers(recipe, base, &installed.packages, spec.max_layers)?;
    if let Some(ca) = &installed.ca_certificates {
        let line = installed
            .packages
            .iter()
            .find(|p| p.name == ca_certificates::PACKAGE)
            .map_or(spec.span.line, |p| p.line);
        let layer = ca_layer(recipe, base, &layers, ca, line)?;
        layers.push(layer);
    }
    if let Some(config) = &installed.ld_so_cache {
        let line = installed
            .packages
            .iter()
            .find(|p| p.name == config.package)
            .map_or(spec.span.line, |p| p.line);
        let layer = ld_so_cache_layer(recipe, base, &layers, config, line)?;
        layers.push(layer);
    }
    if spec.dpkg_database == DpkgDatabase::Full {
        let layer = dpkg_database_layer(recipe, base, &layers, &installed.packages, spec.span)?;
        layers.push(layer);
    }
    Ok(layers)
}

/// The name of the layer of [`dpkg_database_layer`].
pub const DPKG_DATABASE_LAYER: &str = "dpkg-database";

/// The package that reads dpkg's database, and in whose place cairn writes its status.
const DPKG: &str = "dpkg";

/// The `dpkg-database` layer (`dpkg_database: full`): `/var/lib/dpkg/status` made from
/// every package's control file, and the rest of dpkg's administrative directory as
/// `dpkg --install` leaves it on a new system (an empty `available`, `info/format`,
/// `updates/`, `triggers/Unincorp`). A layer of its own: the status depends on every
/// package layer. It needs `dpkg` installed, and a base image with its own status is
/// refused: its packages would be dropped from it.
fn dpkg_database_layer(
    recipe: &Recipe,
    base: Option<&crate::base::BaseFs>,
    previous: &[LayerTree],
    packages: &[InstalledPackage],
    span: crate::recipe::Span,
) -> Result<LayerTree, TreeError> {
    let status_path = format!("/{}/status", dpkg_database::ADMIN_DIR);
    refuse_base_file(
        recipe,
        base,
        &status_path,
        span,
        "whose packages cairn does not merge into the status it writes",
        "build on a base without a dpkg database, or drop `dpkg_database: full`",
    )?;
    let Some(dpkg) = packages.iter().find(|p| p.name == DPKG) else {
        return Err(TreeError(Box::new(
            Diagnostic::new(
                &recipe.file,
                span,
                "`dpkg_database: full` writes dpkg's database, but the `dpkg` package is not installed",
            )
            .with_hint("add `dpkg` to `packages:`, or drop `dpkg_database: full` for the distroless metadata"),
        )));
    };
    let stanzas = packages
        .iter()
        .filter_map(|p| Some((p.name.as_str(), p.dpkg_database.as_ref()?.stanza.as_str())));
    let status = dpkg_database::status_file(stanzas);
    let inputs = packages
        .iter()
        .map(|p| {
            (
                format!("{}/control", source_name(&p.name)),
                Sha256Digest::of(p.control.as_bytes()),
            )
        })
        .collect();
    let generated = |inputs| {
        Origin::Generated(Arc::new(GeneratedFrom {
            by: source_name(DPKG).into(),
            line: dpkg.line,
            inputs,
        }))
    };
    let file = |bytes: &[u8], origin: Origin| TreeEntry {
        kind: TreeEntryKind::File(FileData::Inline(bytes.into())),
        mode: 0o644,
        owner: Owner::ROOT,
        origin,
    };
    let dir = TreeEntry {
        kind: TreeEntryKind::Dir,
        mode: 0o755,
        owner: Owner::ROOT,
        origin: Origin::Parent,
    };
    let path = |p: &str| {
        ImagePath::parse(&format!("/{}/{p}", dpkg_database::ADMIN_DIR)).expect("a valid path")
    };
    let entries = vec![
        (path("available"), file(b"", generated(Vec::new()))),
        (path("info/format"), file(b"1\n", generated(Vec::new()))),
        (path("status"), file(status.as_bytes(), generated(inputs))),
        (path("triggers"), dir.clone()),
        (path("triggers/Unincorp"), file(b"", generated(Vec::new()))),
        (path("updates"), dir),
    ];
    super::layer_from_entries(recipe, base, previous, DPKG_DATABASE_LAYER, entries)
}

/// Refuses a base image that has `path` (absolute), a file cairn would generate from
/// inputs it cannot see there: `why` completes "the base image has <path>, ...".
fn refuse_base_file(
    recipe: &Recipe,
    base: Option<&crate::base::BaseFs>,
    path: &str,
    span: crate::recipe::Span,
    why: &str,
    hint: &str,
) -> Result<(), TreeError> {
    if !base.is_some_and(|b| b.entries.contains_key(&path[1..])) {
        return Ok(());
    }
    Err(TreeError(Box::new(
        Diagnostic::new(
            &recipe.file,
            span,
            format!("the base image has {path}, {why}"),
        )
        .with_hint(hint),
    )))
}

/// The name of the layer of [`ld_so_cache_layer`].
pub const LD_SO_CACHE_LAYER: &str = "ld-so-cache";

/// The `ld-so-cache` layer: `/etc/ld.so.cache` as `ldconfig` writes it for the tree of
/// the layers below (the packages' files, merged /usr applied, over the base's
/// directories and symlinks), traced to the configuration files and libraries it was
/// made from. A layer of its own: it depends on the libraries of every package layer.
/// A base image with its own cache is refused: its libraries' bytes are not kept, so
/// cairn would leave them out.
fn ld_so_cache_layer(
    recipe: &Recipe,
    base: Option<&crate::base::BaseFs>,
    previous: &[LayerTree],
    config: &ld_so_cache::LdSoCache,
    line: u32,
) -> Result<LayerTree, TreeError> {
    refuse_base_file(
        recipe,
        base,
        ld_so_cache::CACHE,
        crate::recipe::Span { line, column: 1 },
        "made from libraries whose bytes cairn does not keep to make the image's",
        "install the libraries in the base image's own build, or build on a base without /etc/ld.so.cache",
    )?;
    // The base's directories and symlinks (merged /usr, say), so that paths resolve
    // as in the image; its files are not read.
    let mut tree = ld_so_cache::Tree::default();
    for (path, e) in base.iter().flat_map(|b| b.entries.iter()) {
        match &e.kind {
            crate::base::fs::BaseKind::Dir => tree.insert(path, ld_so_cache::Node::Dir),
            crate::base::fs::BaseKind::Symlink { target } => {
                tree.insert(path, ld_so_cache::Node::Symlink(target.clone()))
            }
            crate::base::fs::BaseKind::File { .. } => {}
        }
    }
    for layer in previous {
        for (path, e) in layer.entries.iter() {
            let node = match &e.kind {
                TreeEntryKind::Dir => ld_so_cache::Node::Dir,
                TreeEntryKind::Symlink { target } => ld_so_cache::Node::Symlink(target.clone()),
                TreeEntryKind::File(data) => ld_so_cache::Node::File(file_bytes(data, &e.origin)),
                TreeEntryKind::Hardlink { target } => {
                    match layer.entries.get(target).map(|t| (&t.kind, &t.origin)) {
                        Some((TreeEntryKind::File(data), origin)) => {
                            ld_so_cache::Node::File(file_bytes(data, origin))
                        }
                        _ => continue,
                    }
                }
                TreeEntryKind::Whiteout => continue,
            };
            tree.insert(path, node);
        }
    }
    let cache = ld_so_cache::generate(&tree, config).map_err(|e| {
        TreeError(Box::new(
            Diagnostic::new(
                &recipe.file,
                crate::recipe::Span { line, column: 1 },
                format!("cannot make {}: {e}", ld_so_cache::CACHE),
            )
            .with_hint("the package cache changed under cairn: build again"),
        ))
    })?;
    let origin = Origin::Generated(Arc::new(GeneratedFrom {
        by: source_name(&config.package).into(),
        line,
        inputs: cache.inputs,
    }));
    let entries = vec![(
        ImagePath::parse(ld_so_cache::CACHE).expect("a valid path"),
        TreeEntry {
            kind: TreeEntryKind::File(FileData::Inline(cache.bytes.into())),
            mode: 0o644,
            owner: Owner::ROOT,
            origin,
        },
    )];
    super::layer_from_entries(recipe, base, previous, LD_SO_CACHE_LAYER, entries)
}

/// The bytes of a layer's file, whose entry came from `origin`.
fn file_bytes(data: &FileData, origin: &Origin) -> ld_so_cache::FileBytes {
    match data {
        FileData::Source(content) => ld_so_cache::FileBytes::Content {
            content: content.clone(),
            rel_path: match origin {
                Origin::Source { rel_path, .. } => Arc::clone(rel_path),
                _ => "".into(),
            },
        },
        FileData::Inline(bytes) => ld_so_cache::FileBytes::Inline(Arc::clone(bytes)),
    }
}

/// The name of the layer of [`ca_layer`].
pub const CA_LAYER: &str = "ca-certificates";

/// The `ca-certificates` layer: `/etc/ca-certificates.conf` (unless a package ships
/// it), the recipe's certificates in `/usr/local/share/ca-certificates`, the links in
/// `/etc/ssl/certs` and the bundle (none without certificates, as the tool writes
/// none). A base image with its own conf is refused: cairn
/// would have to read it to know which certificates it disables.
fn ca_layer(
    recipe: &Recipe,
    base: Option<&crate::base::BaseFs>,
    previous: &[LayerTree],
    ca: &CaCertificates,
    line: u32,
) -> Result<LayerTree, TreeError> {
    refuse_base_file(
        recipe,
        base,
        ca_certificates::CONF,
        recipe
            .packages
            .as_ref()
            .map_or_else(Default::default, |s| s.span),
        "which cairn does not read to make the CA bundle",
        "install `ca-certificates` in the base image's own build, or build on a base without it",
    )?;
    let by: Arc<str> = source_name(ca_certificates::PACKAGE).into();
    let generated = |inputs: &[(String, Sha256Digest)]| {
        Origin::Generated(Arc::new(GeneratedFrom {
            by: Arc::clone(&by),
            line,
            inputs: inputs.to_vec(),
        }))
    };
    let u = &ca.updated;
    let from_bundle = generated(&u.bundle_inputs);
    let entry = |kind, mode, origin: &Origin| TreeEntry {
        kind,
        mode,
        owner: Owner::ROOT,
        origin: origin.clone(),
    };
    let path = |p: &str| ImagePath::parse(p).expect("checked paths");
    let mut entries = Vec::new();
    if let Some(conf) = &u.conf {
        entries.push((
            path(ca_certificates::CONF),
            entry(
                TreeEntryKind::File(FileData::Inline(conf.as_bytes().into())),
                0o644,
                &generated(&u.conf_inputs),
            ),
        ));
    }
    entries.push((
        path(ca_certificates::LOCAL_DIR),
        entry(TreeEntryKind::Dir, 0o755, &Origin::Parent),
    ));
    for local in &ca.local {
        let origin = Origin::Source {
            name: Arc::new(local.source.clone()),
            rel_path: "".into(),
            line: local.line,
        };
        entries.push((
            // Source names are checked (recipe item names): a valid file name.
            path(&local.path()),
            entry(
                TreeEntryKind::File(FileData::Source(local.content.clone())),
                0o644,
                &origin,
            ),
        ));
    }
    for (name, target) in &u.links {
        entries.push((
            path(&format!("{}/{name}", ca_certificates::CERTS_DIR)),
            entry(
                TreeEntryKind::Symlink {
                    target: target.clone(),
                },
                0o777,
                &from_bundle,
            ),
        ));
    }
    // Without a certificate the tool writes no bundle.
    if !u.bundle_inputs.is_empty() {
        entries.push((
            path(ca_certificates::BUNDLE),
            entry(
                TreeEntryKind::File(FileData::Inline(u.bundle.as_slice().into())),
                0o644,
                &from_bundle,
            ),
        ));
    }
    super::layer_from_entries(recipe, base, previous, CA_LAYER, entries)
}

/// Which set of buckets a package goes to. In the images of a recipe with
/// `platforms:`, `Architecture: all` packages have buckets of their own, below the
/// others: their layers then hold the same files in every platform's image, and are
/// one blob the layout stores once (a bucket mixing them with the architecture's
/// packages would differ per platform). An image of one platform keeps one set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum BucketSet {
    ArchitectureAll,
    Others,
}

impl BucketSet {
    fn of(p: &InstalledPackage, multi_platform: bool) -> BucketSet {
        if multi_platform && p.pin.architecture == "all" {
            BucketSet::ArchitectureAll
        } else {
            BucketSet::Others
        }
    }

    /// The name of this set's package layer for bucket `i`.
    fn layer_name(self, i: u64) -> String {
        match self {
            BucketSet::ArchitectureAll => format!("packages-all-{i}"),
            BucketSet::Others => format!("packages-{i}"),
        }
    }
}

fn bucket(name: &str, max_layers: u32) -> u64 {
    let digest = Sha256Digest::of(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    u64::from_be_bytes(first) % u64::from(max_layers.max(1))
}

/// A package's entries, each at the path it lands on in the image.
type Placed<'p> = Vec<(String, &'p SourceEntry)>;

/// The package layers, in bucket order (the `Architecture: all` set first). Two packages that ship the same
/// non-directory path are an error (dpkg would refuse them too); a directory shipped
/// by several packages of one layer takes the mode and owner of the first by name.
pub fn package_layers(
    recipe: &Recipe,
    base: Option<&crate::base::BaseFs>,
    packages: &[InstalledPackage],
    max_layers: u32,
) -> Result<Vec<LayerTree>, TreeError> {
    let usr_merge = UsrMerge::over(base);
    // Each package's entries at the paths they land on (merged /usr applied).
    let placed: Vec<Placed> = packages
        .iter()
        .map(|p| {
            p.tree
                .entries
                .iter()
                .map(|e| (usr_merge.path(&e.rel_path).into_owned(), e))
                .collect()
        })
        .collect();
    // Which package each non-directory path is installed from; a path two packages
    // ship goes to the one whose `Replaces` names the other, and the other's entry
    // for it is `replaced`.
    let mut owners: BTreeMap<&str, &InstalledPackage> = BTreeMap::new();
    let mut replaced: std::collections::BTreeSet<(&str, &str)> = Default::default();
    for (p, entries) in packages.iter().zip(&placed) {
        for (path, e) in entries {
            if e.kind == SourceEntryKind::Dir {
                continue;
            }
            let Some(other) = owners.insert(path, p) else {
                continue;
            };
            if p.replaces(other) {
                replaced.insert((&other.name, path));
            } else if other.replaces(p) {
                owners.insert(path, other);
                replaced.insert((&p.name, path));
            } else {
                return Err(TreeError(Box::new(
                    Diagnostic::new(
                        &recipe.file,
                        crate::recipe::Span {
                            line: p.line,
                            column: 1,
                        },
                        format!(
                            "packages `{}` and `{}` both ship /{path}, and neither declares `Replaces:` the other",
                            other.name, p.name
                        ),
                    )
                    .with_hint(
                        "install only one of them (cairn does not support diversions)",
                    ),
                )));
            }
        }
    }
    // What the packages' `update-alternatives --install` calls leave, by package.
    let installs: Vec<(String, alternatives::Install)> = packages
        .iter()
        .flat_map(|p| p.alternatives.iter().map(|i| (p.name.clone(), i.clone())))
        .collect();
    let shipped = |path: &str| owners.contains_key(path.trim_start_matches('/'));
    let mut made: BTreeMap<String, Vec<alternatives::Made>> = BTreeMap::new();
    for (package, m) in alternatives::auto_links(&installs, shipped, shipped) {
        made.entry(package).or_default().push(m);
    }
    let mut buckets: BTreeMap<(BucketSet, u64), Vec<(&InstalledPackage, &Placed)>> =
        BTreeMap::new();
    for (p, entries) in packages.iter().zip(&placed) {
        let set = BucketSet::of(p, recipe.multi_platform);
        buckets
            .entry((set, bucket(&p.name, max_layers)))
            .or_default()
            .push((p, entries));
    }
    let mut layers = Vec::with_capacity(buckets.len());
    for ((set, i), members) in buckets {
        let mut entries: BTreeMap<String, TreeEntry> = BTreeMap::new();
        // The merged directories this layer put files below, each with the package
        // (the first by name) whose file it was: their symlinks go in this layer.
        let mut merged: BTreeMap<&'static str, (u32, Arc<String>)> = BTreeMap::new();
        for (p, placed) in members {
            let name = Arc::new(source_name(&p.name));
            for (path, e) in placed {
                if replaced.contains(&(p.name.as_str(), path.as_str())) {
                    continue;
                }
                if let Some(dir) = usr_merge.merged_dir(&e.rel_path) {
                    merged
                        .entry(dir)
                        .or_insert_with(|| (p.line, Arc::clone(&name)));
                }
                let entry = tree_entry(p, &name, e, &usr_merge);
                if entry.kind == TreeEntryKind::Dir && entries.contains_key(path.as_str()) {
                    continue;
                }
                entries.insert(path.clone(), entry);
            }
            for m in made.get(&p.name).into_iter().flatten() {
                let (path, kind, mode) = match m {
                    alternatives::Made::Symlink { path, target } => (
                        path,
                        TreeEntryKind::Symlink {
                            target: target.clone(),
                        },
                        0o777,
                    ),
                    alternatives::Made::File { path, content } => (
                        path,
                        TreeEntryKind::File(FileData::Inline(content.as_bytes().into())),
                        0o644,
                    ),
                };
                let entry = TreeEntry {
                    kind,
                    mode,
                    owner: Owner::ROOT,
                    origin: Origin::Source {
                        name: Arc::clone(&name),
                        rel_path: "".into(),
                        line: p.line,
                    },
                };
                entries
                    .entry(path.trim_start_matches('/').to_string())
                    .or_insert(entry);
            }
            for (path, bytes, mode) in dpkg_metadata(p) {
                let entry = TreeEntry {
                    kind: TreeEntryKind::File(FileData::Inline(bytes.into())),
                    mode,
                    owner: Owner::ROOT,
                    origin: Origin::Source {
                        name: Arc::clone(&name),
                        rel_path: "".into(),
                        line: p.line,
                    },
                };
                entries.insert(path, entry);
            }
        }
        for (dir, (line, name)) in merged {
            let link = TreeEntry {
                kind: TreeEntryKind::Symlink {
                    target: format!("usr/{dir}"),
                },
                mode: 0o777,
                owner: Owner::ROOT,
                origin: Origin::Source {
                    name,
                    rel_path: "".into(),
                    line,
                },
            };
            entries.insert(dir.to_string(), link);
        }
        let entries = entries
            .into_iter()
            .map(|(k, e)| {
                let path =
                    // Archive paths are normalised and package names checked
                    // (recipe::valid_package_name): every key is an image path.
                    ImagePath::parse(&format!("/{k}")).expect("checked paths");
                (path, e)
            })
            .collect();
        layers.push(super::layer_from_entries(
            recipe,
            base,
            &layers,
            &set.layer_name(i),
            entries,
        )?);
    }
    Ok(layers)
}

/// `name` is the package's source name, shared by its entries; a hard link's target
/// moves with merged /usr as the file it names does.
fn tree_entry(
    p: &InstalledPackage,
    name: &Arc<String>,
    e: &SourceEntry,
    usr_merge: &UsrMerge,
) -> TreeEntry {
    let kind = match &e.kind {
        SourceEntryKind::File(c) => TreeEntryKind::File(FileData::Source(c.clone())),
        SourceEntryKind::Dir => TreeEntryKind::Dir,
        SourceEntryKind::Symlink { target } => TreeEntryKind::Symlink {
            target: target.clone(),
        },
        SourceEntryKind::Hardlink { target } => TreeEntryKind::Hardlink {
            target: usr_merge.path(target).into_owned(),
        },
    };
    let (uid, gid) = e.owner.unwrap_or((0, 0));
    TreeEntry {
        kind,
        mode: e.mode,
        owner: Owner { uid, gid },
        origin: Origin::Source {
            name: Arc::clone(name),
            rel_path: Arc::clone(&e.rel_path),
            line: p.line,
        },
    }
}

/// Merged /usr, as Debian installs it since bookworm: the top-level directories that
/// hold programs and libraries are symlinks into `/usr` (`bin -> usr/bin`), and a
/// package file under one of them lands in `/usr` (`bin/busybox` -> `usr/bin/busybox`),
/// where dpkg, writing through the symlink, puts it. A directory the base image has as
/// a real directory stays one: its files are not moved, and no symlink hides it.
struct UsrMerge {
    /// Of [`MERGED_DIRS`], those merged in this image.
    merged: Vec<&'static str>,
}

/// The directories merged /usr moves into `/usr`.
const MERGED_DIRS: [&str; 6] = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

impl UsrMerge {
    fn over(base: Option<&crate::base::BaseFs>) -> UsrMerge {
        let real_dir = |dir: &str| {
            base.and_then(|b| b.entries.get(dir))
                .is_some_and(|e| e.kind == crate::base::fs::BaseKind::Dir)
        };
        UsrMerge {
            merged: MERGED_DIRS.into_iter().filter(|d| !real_dir(d)).collect(),
        }
    }

    /// The merged directory `rel_path` is in or is, if any.
    fn merged_dir(&self, rel_path: &str) -> Option<&'static str> {
        let top = rel_path.split('/').next()?;
        self.merged.iter().copied().find(|d| *d == top)
    }

    /// Where a package's `rel_path` lands.
    fn path<'p>(&self, rel_path: &'p str) -> std::borrow::Cow<'p, str> {
        match self.merged_dir(rel_path) {
            Some(_) => format!("usr/{rel_path}").into(),
            None => rel_path.into(),
        }
    }
}

/// The package's dpkg metadata: layer path, bytes, mode. With `dpkg_database: full`
/// its files of `var/lib/dpkg/info` ([`dpkg_database`]); otherwise
/// `var/lib/dpkg/status.d/<name>` and `<name>.md5sums`.
fn dpkg_metadata(p: &InstalledPackage) -> Vec<(String, Vec<u8>, u32)> {
    if let Some(database) = &p.dpkg_database {
        let dir = format!("{}/info", dpkg_database::ADMIN_DIR);
        return database
            .info
            .iter()
            .map(|(name, bytes, mode)| (format!("{dir}/{name}"), bytes.clone(), *mode))
            .collect();
    }
    let dir = "var/lib/dpkg/status.d";
    let mut out = vec![(
        format!("{dir}/{}", p.name),
        status_stanza(&p.control).into_bytes(),
        0o644,
    )];
    if let Some(md5sums) = &p.md5sums {
        out.push((
            format!("{dir}/{}.md5sums", p.name),
            md5sums.clone().into_bytes(),
            0o644,
        ));
    }
    out
}

/// The control stanza with `Status: install ok installed` after its `Package:` line
/// (where dpkg's status file has it), ending in one newline.
fn status_stanza(control: &str) -> String {
    let mut out = String::with_capacity(control.len() + 32);
    let mut added = false;
    for line in control.trim_end_matches('\n').lines() {
        if line.starts_with("Status:") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if !added && line.starts_with("Package:") {
            out.push_str("Status: install ok installed\n");
            added = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_usr_moves_package_paths_unless_the_base_has_the_real_directory() {
        use crate::base::fs::{BaseEntry, BaseFs, BaseKind};
        let merged = UsrMerge::over(None);
        assert_eq!(merged.path("bin/busybox"), "usr/bin/busybox");
        assert_eq!(
            merged.path("lib64/ld-linux-x86-64.so.2"),
            "usr/lib64/ld-linux-x86-64.so.2"
        );
        assert_eq!(merged.path("bin"), "usr/bin");
        assert_eq!(merged.path("binary/x"), "binary/x");
        assert_eq!(merged.path("usr/bin/x"), "usr/bin/x");
        assert_eq!(merged.merged_dir("sbin/init"), Some("sbin"));
        // A base with a real /bin (an older, unmerged system) keeps it; /lib is a
        // symlink there (merged), so it is merged here too.
        let entry = |kind| BaseEntry {
            kind,
            mode: 0o755,
            owner: Owner::ROOT,
            layer: 0,
        };
        let mut base = BaseFs::default();
        base.entries.insert("bin".into(), entry(BaseKind::Dir));
        base.entries.insert(
            "lib".into(),
            entry(BaseKind::Symlink {
                target: "usr/lib".into(),
            }),
        );
        let over_base = UsrMerge::over(Some(&base));
        assert_eq!(over_base.path("bin/ls"), "bin/ls");
        assert_eq!(over_base.merged_dir("bin/ls"), None);
        assert_eq!(over_base.path("lib/x.so"), "usr/lib/x.so");
    }

    #[test]
    fn status_line_follows_package() {
        assert_eq!(
            status_stanza("Package: a\nVersion: 1\nDescription: x\n more\n\n"),
            "Package: a\nStatus: install ok installed\nVersion: 1\nDescription: x\n more\n"
        );
    }

    #[test]
    fn buckets_depend_only_on_the_name_and_stay_in_range() {
        for name in ["libc6", "busybox-static", "ca-certificates", "zlib1g"] {
            assert!(bucket(name, 4) < 4);
            assert_eq!(bucket(name, 4), bucket(name, 4));
            assert_eq!(bucket(name, 1), 0);
        }
        // Spread: 64 names over 4 buckets use every bucket.
        let used: std::collections::BTreeSet<u64> =
            (0..64).map(|i| bucket(&format!("pkg{i}"), 4)).collect();
        assert_eq!(used.len(), 4);
    }
}
