//! The driver and its stages through the library API, on a small recipe in a
//! temporary directory: what each stage gives, what an interrupted build leaves, and
//! that the cache keys cover every field of their typed inputs.

use super::context::{BuildContext, BuildHandles, BuildSettings, Quiet};
use super::error::BuildError;
use super::names::{self, SbomFiles};
use super::{attest, build, image, layers, plan};
use crate::debian::PackageOptions;
use crate::digest::Sha256Digest;
use crate::layers::cache::{layer_key, LayerCache};
use crate::layers::{FileData, LayerBlob, LayerTree, Origin, TreeEntry, TreeEntryKind};
use crate::oci::compression::Compression;
use crate::oci::layout::LayoutWriter;
use crate::recipe::{self, Owner, Recipe, RecipeFile};
use crate::resolve::{LockMode, LockedKind, Lockfile, ResolvedSource, ResolvedSources};
use crate::snapshot::{Content, Location, SourceEntry, SourceEntryKind, SourceTree};
use crate::warm::ImageInputs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const RECIPE: &str = "cairn: 1
name: t
epoch: 1700000000
sources:
  motd: { path: motd }
layers:
  - name: l
    contents:
      - copy: motd
        to: /etc/motd
      - file: /etc/hostname
        content: \"t\\n\"
";

/// `RECIPE` with its source file, in `dir`.
fn recipe_in(dir: &Path) -> Recipe {
    std::fs::write(dir.join("motd"), "hello\n").unwrap();
    let path = dir.join("t.yaml");
    std::fs::write(&path, RECIPE).unwrap();
    recipe::parse(RecipeFile {
        path,
        dir: dir.to_path_buf(),
        text: RECIPE.to_string(),
    })
    .unwrap()
}

fn digests(layers: &[LayerBlob]) -> Vec<Sha256Digest> {
    layers.iter().map(|l| l.digest).collect()
}

fn settings(out_dir: PathBuf) -> BuildSettings {
    BuildSettings {
        out_dir,
        format: Default::default(),
        docker_tags: Vec::new(),
        lock_mode: LockMode::PinMissing,
        jobs: 1,
        source_date_epoch: None,
        clock: None,
        packages: PackageOptions {
            cache_dir: PathBuf::from("/nonexistent"),
            now: 0,
            host_sources: Vec::new(),
            host_valid_until_off: None,
            offline: true,
        },
        source_roots: Default::default(),
        strict: false,
    }
}

fn handles(cache: Option<LayerCache>) -> BuildHandles {
    BuildHandles {
        cancel: Arc::new(AtomicBool::new(false)),
        sign_key: None,
        registry: None,
        cache,
        secure_boot: None,
    }
}

#[test]
fn each_stage_gives_its_value_and_the_driver_publishes_them() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe_in(dir.path());
    let settings = settings(dir.path().join("out"));
    let handles = handles(None);
    let cx = BuildContext {
        settings: &settings,
        handles: &handles,
        layout: LayoutWriter::begin(&settings.out_dir, &recipe.name).unwrap(),
        observer: &Quiet,
        epoch: 1_700_000_000,
        jobs: 1,
        started_on: None,
    };
    let mut plan = plan::plan(
        &recipe,
        Lockfile::default(),
        &plan::Pinning {
            lock_path: &dir.path().join("t.lock"),
            mode: LockMode::PinMissing,
            staging: &cx.layout.scratch_dir().unwrap(),
            registry: None,
            cache_dir: None,
            source_roots: &settings.source_roots,
            packages: &settings.packages,
            progress: &Quiet,
        },
    )
    .unwrap();
    let mut platforms = std::mem::take(&mut plan.sources.platforms);
    let [platform] = platforms.as_mut_slice() else {
        panic!("one platform");
    };
    assert!(
        plan.lock.sources.contains_key("motd"),
        "the source is pinned"
    );
    assert!(plan.lock_sha256.is_some());

    let layers = layers::write_layers(&cx, &plan, platform).unwrap();
    let platform = &*platform;
    let names: Vec<&str> = layers.blobs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        ["l", "sbom"],
        "the recipe's layer, then the embedded SBOMs"
    );
    assert!(!layers.replayed());
    assert!(cx.layout.blob_path(&layers.spdx.digest).is_file());
    assert!(cx.layout.blob_path(&layers.cyclonedx.digest).is_file());

    let image = image::assemble(&cx, platform, &layers).unwrap();
    let manifest = std::fs::read(cx.layout.blob_path(&image.manifest.digest)).unwrap();
    assert_eq!(Sha256Digest::of(&manifest), image.manifest.digest);
    assert!(String::from_utf8(manifest)
        .unwrap()
        .contains(&layers.blobs[0].digest.to_string()));

    let attestations = attest::attest(&cx, &plan, platform, &layers, &image).unwrap();
    assert_eq!(attestations.referrers.len(), 2, "the two SBOMs, unsigned");
    assert!(attestations.envelopes.is_empty());
    drop(cx);
    assert!(
        !settings.out_dir.join("t").exists(),
        "nothing is published before the publish stage"
    );

    // The driver, run twice, publishes the same image.
    let first = build(&recipe, &settings, &handles, &Quiet).unwrap();
    assert_eq!(digests(&first.layers), digests(&layers.blobs));
    assert_eq!(first.referrers.len(), 2);
    assert!(first.layout.join("index.json").is_file());
    assert!(settings.out_dir.join("t.spdx.json").is_file());
    assert!(settings.out_dir.join("t.cdx.json").is_file());
    assert_eq!(first.lock_written, Some(dir.path().join("t.lock")));
    let again = build(&recipe, &settings, &handles, &Quiet).unwrap();
    assert_eq!(again.manifest_digest, first.manifest_digest);
    assert_eq!(again.lock_written, None, "the lock is up to date");
}

#[test]
fn an_interrupted_build_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe_in(dir.path());
    let settings = settings(dir.path().join("out"));
    let handles = handles(None);
    handles
        .cancel
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let err = build(&recipe, &settings, &handles, &Quiet).unwrap_err();
    assert!(matches!(err, BuildError::Interrupted(_)), "{err}");
    let left: Vec<_> = std::fs::read_dir(&settings.out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".t.lock")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!dir.path().join("t.lock").exists(), "no lock file written");
}

#[test]
fn an_unchanged_rebuild_is_replayed_from_the_cache_with_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe_in(dir.path());
    let settings = settings(dir.path().join("out"));
    let cache = || {
        LayerCache::open(&dir.path().join("cache"))
            .unwrap()
            .with_program("test".to_string())
    };
    let cold = build(&recipe, &settings, &handles(Some(cache())), &Quiet).unwrap();
    assert!(!cold.image_cached);
    let warm = build(&recipe, &settings, &handles(Some(cache())), &Quiet).unwrap();
    assert!(warm.image_cached, "the second build replays the image");
    assert_eq!(warm.manifest_digest, cold.manifest_digest);
    assert_eq!(digests(&warm.layers), digests(&cold.layers));
}

fn content(byte: u8) -> Content {
    Content {
        location: Location::Path(std::sync::Arc::new(PathBuf::from("/src/f"))),
        size: 1,
        sha256: Sha256Digest::of(&[byte]),
    }
}

fn entry(rel_path: &str, kind: SourceEntryKind) -> SourceEntry {
    SourceEntry {
        rel_path: rel_path.into(),
        kind,
        mode: 0o644,
        owner: None,
    }
}

/// The entries of source `src` of `resolved`, to change for a test.
fn src_tree(resolved: &mut ResolvedSources) -> &mut SourceTree {
    resolved.sources.get_mut("src").unwrap().tree_mut()
}

fn resolved() -> ResolvedSources {
    let source = ResolvedSource::new(
        "src".into(),
        LockedKind::Dir,
        Sha256Digest::of(b"src"),
        SourceTree {
            entries: vec![
                entry("a", SourceEntryKind::File(content(1))),
                entry("b", SourceEntryKind::Dir),
                entry("c", SourceEntryKind::Symlink { target: "a".into() }),
            ],
        },
        None,
    );
    ResolvedSources {
        sources: [("src".to_string(), source)].into(),
        lock: Lockfile::default(),
        lock_changed: false,
        warnings: Vec::new(),
        packages: None,
    }
}

fn image_key(resolved: &ResolvedSources) -> crate::warm::ImageKey {
    ImageInputs {
        recipe_text: RECIPE,
        recipe_file_name: "t.yaml".into(),
        platform: "linux/amd64".into(),
        epoch: 0,
        output_format: Default::default(),
        base: None,
        resolved,
        program: "test",
    }
    .key()
}

/// One edit of the resolved sources.
type Change = fn(&mut ResolvedSources);

/// The regression the hand-listed key invited: any field of the resolved sources
/// that a later stage reads must change the warm key.
#[test]
fn the_warm_key_changes_with_every_field_of_the_resolved_sources() {
    let original = image_key(&resolved());
    let changes: Vec<(&str, Change)> = vec![
        ("kind", |r| {
            r.sources.get_mut("src").unwrap().kind = LockedKind::Archive
        }),
        ("digest", |r| {
            r.sources.get_mut("src").unwrap().digest = Sha256Digest::of(b"other")
        }),
        ("signer", |r| {
            r.sources.get_mut("src").unwrap().signer = Some("key".into())
        }),
        ("entry path", |r| {
            src_tree(r).entries[1].rel_path = "d".into()
        }),
        ("entry mode", |r| src_tree(r).entries[0].mode = 0o755),
        ("entry owner", |r| {
            src_tree(r).entries[0].owner = Some((1, 1))
        }),
        ("file content", |r| {
            src_tree(r).entries[0].kind = SourceEntryKind::File(content(2))
        }),
        ("link target", |r| {
            src_tree(r).entries[2].kind = SourceEntryKind::Symlink { target: "b".into() }
        }),
        ("entry added", |r| {
            let tree = src_tree(r);
            tree.entries.push(entry("d", SourceEntryKind::Dir));
        }),
        ("lock", |r| {
            r.lock.tools.insert("mkfs".into(), "1".into());
        }),
    ];
    for (what, change) in changes {
        let mut changed = resolved();
        change(&mut changed);
        assert_ne!(
            image_key(&changed),
            original,
            "{what} is not in the warm key"
        );
    }
    // What does not reach the image leaves the key alone.
    let mut moved = resolved();
    src_tree(&mut moved).entries[0].kind = SourceEntryKind::File(Content {
        location: Location::Path(std::sync::Arc::new(PathBuf::from("/elsewhere"))),
        ..content(1)
    });
    moved.warnings.push("a warning".into());
    moved.lock_changed = true;
    assert_eq!(image_key(&moved), original);
}

fn tree() -> LayerTree {
    let entry = |kind| TreeEntry {
        kind,
        mode: 0o644,
        owner: Owner { uid: 0, gid: 0 },
        origin: Origin::Recipe { line: 1 },
    };
    LayerTree {
        name: "l".into(),
        entries: [
            (
                "etc/motd".to_string(),
                entry(TreeEntryKind::File(FileData::Source(content(1)))),
            ),
            (
                "etc/hostname".to_string(),
                entry(TreeEntryKind::File(FileData::Inline(Arc::from(
                    &b"t\n"[..],
                )))),
            ),
        ]
        .into_iter()
        .collect(),
    }
}

#[test]
fn the_layer_key_changes_with_what_reaches_the_blob_and_only_that() {
    let key = |tree: &LayerTree| layer_key(tree, 0, Compression::Gzip);
    let original = key(&tree());
    let mut owner = tree();
    owner.entries.get_mut("etc/motd").unwrap().owner.gid = 1;
    let mut mode = tree();
    mode.entries.get_mut("etc/motd").unwrap().mode = 0o600;
    let mut inline = tree();
    inline.entries.get_mut("etc/hostname").unwrap().kind =
        TreeEntryKind::File(FileData::Inline(Arc::from(&b"u\n"[..])));
    for changed in [owner, mode, inline] {
        assert_ne!(key(&changed), original);
    }
    assert_ne!(layer_key(&tree(), 1, Compression::Gzip), original);
    assert_ne!(layer_key(&tree(), 0, Compression::Zstd), original);
    // The same bytes inline or from a source are the same layer; names and origins
    // do not reach the blob.
    let mut same = tree();
    same.name = "other".into();
    same.entries.get_mut("etc/motd").unwrap().origin = Origin::Parent;
    same.entries.get_mut("etc/motd").unwrap().kind =
        TreeEntryKind::File(FileData::Inline(Arc::from(&[1u8][..])));
    assert_eq!(key(&same), original);
}

#[test]
fn side_files_are_named_per_platform_only_for_a_multi_platform_recipe() {
    let parse = |text: &str| {
        recipe::parse(RecipeFile {
            path: PathBuf::from("m.yaml"),
            dir: PathBuf::from("."),
            text: text.to_string(),
        })
        .unwrap()
    };
    let layers = "layers:\n  - name: l\n    contents:\n      - dir: /d\n";
    let single = parse(&format!("cairn: 1\nname: m\n{layers}"));
    let sboms = SbomFiles::of(&single, &single.platform);
    assert_eq!(
        (sboms.spdx(), sboms.cyclonedx()),
        ("m.spdx.json".into(), "m.cdx.json".into())
    );

    let multi = parse(&format!(
        "cairn: 1\nname: m\nplatforms: [linux/amd64, linux/arm/v7]\n{layers}"
    ));
    let arm = SbomFiles::of(&multi, &multi.platforms[1]);
    assert_eq!(arm.spdx(), "m.linux-arm-v7.spdx.json");
    assert_eq!(names::attestations_file("m"), "m.intoto.jsonl");
    let all = names::all_side_files(&multi);
    for name in [
        "m.intoto.jsonl",
        "m.spdx.json",
        "m.cdx.json",
        "m.linux-amd64.spdx.json",
        "m.linux-arm-v7.cdx.json",
    ] {
        assert!(all.iter().any(|n| n == name), "{name} missing from {all:?}");
    }
}
