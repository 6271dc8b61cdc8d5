//! Layer compression choices and the layer cache, through the real binary: what a user
//! sees in the build report (`cached` per layer), the manifest (media types) and the
//! readers (`inspect`, `trace`, `diff`). The cache shared through a registry is
//! tested in `tools::layer_cache`.

use crate::common;
use crate::common::{build_json, build_json_with, cairn, run_ok};
use std::fs;
use std::path::{Path, PathBuf};

/// A recipe with two directory sources, each in its own layer, in a fresh directory.
pub(crate) struct Project {
    dir: tempfile::TempDir,
    builds: std::cell::Cell<usize>,
}

impl Project {
    pub(crate) fn new(compression: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (source, files) in [
            ("app", ["bin/run", "lib/a.txt"]),
            ("docs", ["README", "x/y.md"]),
        ] {
            for file in files {
                let path = dir.path().join(source).join(file);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, format!("{source} {file}\n").repeat(2000)).unwrap();
            }
        }
        let recipe = format!(
            "cairn: 1\nname: cached\nepoch: 1700000000\ncompression: {compression}\n\
             sources:\n  app: {{ path: app }}\n  docs: {{ path: docs }}\n\
             layers:\n  - name: app\n    contents:\n      - copy: app\n        to: /opt/app\n\
             \x20 - name: docs\n    compression: none\n    contents:\n      - copy: docs\n        to: /usr/share/doc/app\n"
        );
        fs::write(dir.path().join("recipe.yaml"), recipe).unwrap();
        Project {
            dir,
            builds: Default::default(),
        }
    }

    pub(crate) fn recipe(&self) -> PathBuf {
        self.dir.path().join("recipe.yaml")
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Builds with the layer cache in `cache` (or none) into a fresh output directory
    /// inside the project, kept for the caller to read.
    pub(crate) fn build(&self, cache: Option<&Path>) -> serde_json::Value {
        self.builds.set(self.builds.get() + 1);
        let out = self.path(&format!("out-{}", self.builds.get()));
        match cache {
            Some(cache) => {
                let cache = cache.to_str().unwrap();
                build_cached(&self.recipe(), &out, &["--cache-dir", cache])
            }
            None => build_json(&self.recipe(), &out, &[]),
        }
    }
}

/// Builds like [`build_json`], with the layer cache on.
pub(crate) fn build_cached(recipe: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut cmd = cairn();
    cmd.env_remove("CAIRN_NO_CACHE");
    build_json_with(cmd, recipe, out, extra)
}

/// (layer name, cached) for each layer of a build report.
pub(crate) fn cached(report: &serde_json::Value) -> Vec<(String, bool)> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["cached"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn layout(report: &serde_json::Value) -> PathBuf {
    PathBuf::from(report["layout"].as_str().unwrap())
}

fn manifest(report: &serde_json::Value) -> serde_json::Value {
    let digest = report["manifest_digest"].as_str().unwrap();
    let path = layout(report).join("blobs/sha256").join(&digest[7..]);
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

#[test]
fn zstd_and_uncompressed_layers_have_their_media_types_and_are_readable() {
    let project = Project::new("zstd");
    let (key, public, _) = common::keygen(project.dir.path(), "signer");
    let report = build_json(
        &project.recipe(),
        &project.path("signed"),
        &["--sign-key", key.to_str().unwrap()],
    );
    let media_types: Vec<String> = manifest(&report)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        media_types,
        [
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar",
            // The SBOM layer takes the recipe's compression.
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ]
    );
    let inspect = run_ok(cairn().arg("inspect").arg(layout(&report)).arg("--json"));
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(text.contains("opt/app/bin/run") && text.contains("usr/share/doc/app/x/y.md"));
    let trace = run_ok(
        cairn()
            .arg("trace")
            .arg(layout(&report))
            .arg("/usr/share/doc/app/README"),
    );
    assert!(String::from_utf8_lossy(&trace.stdout).contains("docs"));

    // verify reads every layer to check the SBOM against the files.
    let verdict = run_ok(
        cairn()
            .arg("verify")
            .arg(layout(&report))
            .arg("--key")
            .arg(&public)
            .arg("--json"),
    );
    let verdict: serde_json::Value = serde_json::from_slice(&verdict.stdout).unwrap();
    assert_eq!(verdict["verified"], true, "{verdict}");

    // The same files, gzip-compressed: diff sees no file differences, only layers.
    let gzip = Project::new("gzip");
    let gzip_report = gzip.build(None);
    let diff = cairn()
        .arg("diff")
        .arg(layout(&gzip_report))
        .arg(layout(&report))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        !text.contains("/opt/app/bin/run"),
        "diff reports unchanged files as changed:\n{text}"
    );
}

#[test]
fn a_rebuild_takes_every_layer_from_the_cache_and_gives_the_same_image() {
    let project = Project::new("gzip");
    let cache = tempfile::tempdir().unwrap();
    let cold = project.build(Some(cache.path()));
    assert!(cached(&cold).iter().all(|(_, c)| !c), "{:?}", cached(&cold));
    let warm = project.build(Some(cache.path()));
    assert!(cached(&warm).iter().all(|(_, c)| *c), "{:?}", cached(&warm));
    let uncached = project.build(None);
    assert_eq!(warm["manifest_digest"], cold["manifest_digest"]);
    assert_eq!(uncached["manifest_digest"], cold["manifest_digest"]);
    // The SBOM of a cached build still has every file's SHA-1.
    let spdx = fs::read_to_string(warm["spdx"].as_str().unwrap()).unwrap();
    let uncached_spdx = fs::read_to_string(uncached["spdx"].as_str().unwrap()).unwrap();
    assert_eq!(spdx, uncached_spdx);
    assert!(spdx.contains("SHA1"));
}

#[test]
fn changing_one_file_rebuilds_only_its_layer() {
    let project = Project::new("zstd");
    let cache = tempfile::tempdir().unwrap();
    project.build(Some(cache.path()));
    fs::write(project.path("docs/README"), "new text\n").unwrap();
    run_ok(cairn().arg("lock").arg(project.recipe()));
    let report = project.build(Some(cache.path()));
    assert_eq!(
        cached(&report),
        [
            ("app".to_string(), true),
            ("docs".to_string(), false),
            // The SBOM lists the changed file, so it changes too.
            ("sbom".to_string(), false),
        ]
    );
    assert_eq!(report["image_cached"], false);
    assert_eq!(
        project.build(None)["manifest_digest"],
        report["manifest_digest"]
    );
    // The new image is recorded: the next rebuild replays it.
    let again = project.build(Some(cache.path()));
    assert_eq!(again["image_cached"], true);
    assert_eq!(again["manifest_digest"], report["manifest_digest"]);
}

/// Every file of a layout (blobs, index.json, oci-layout) and the side files beside it,
/// by name relative to the output directory.
fn output_files(report: &serde_json::Value) -> Vec<(String, Vec<u8>)> {
    let layout = layout(report);
    let out_dir = layout.parent().unwrap();
    let mut files: Vec<(String, Vec<u8>)> = walk(&layout)
        .into_iter()
        .chain(
            ["spdx", "cyclonedx", "attestations"]
                .iter()
                .filter_map(|k| report[*k].as_str().map(PathBuf::from)),
        )
        .map(|path| {
            let name = path.strip_prefix(out_dir).unwrap().display().to_string();
            (name, fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn an_unchanged_rebuild_is_replayed_with_identical_bytes_in_every_blob() {
    let project = Project::new("gzip");
    let (key, _, _) = common::keygen(project.dir.path(), "signer");
    let key = key.to_str().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let build = |n: &str, cached: bool| {
        let out = project.path(n);
        if cached {
            build_cached(
                &project.recipe(),
                &out,
                &["--cache-dir", cache_dir, "--sign-key", key],
            )
        } else {
            build_json(&project.recipe(), &out, &["--sign-key", key])
        }
    };
    let cold = build("cold", true);
    assert_eq!(cold["image_cached"], false);
    let warm = build("warm", true);
    assert_eq!(warm["image_cached"], true);
    assert!(cached(&warm).iter().all(|(_, c)| *c), "{:?}", cached(&warm));
    let uncached = build("uncached", false);
    assert_eq!(uncached["image_cached"], false);
    let expected = output_files(&uncached);
    assert!(expected.iter().any(|(name, _)| name == "cached.spdx.json"));
    for report in [&cold, &warm] {
        let files = output_files(report);
        let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&files), names(&expected));
        for ((name, bytes), (_, want)) in files.iter().zip(&expected) {
            assert!(bytes == want, "{name} differs from an uncached build's");
        }
    }
    // What a replay publishes reads back whole (`inspect` re-hashes every blob).
    run_ok(cairn().arg("inspect").arg(layout(&warm)));
}

#[test]
fn a_damaged_image_record_or_sbom_blob_is_not_trusted() {
    let project = Project::new("zstd");
    let cache = tempfile::tempdir().unwrap();
    let cold = project.build(Some(cache.path()));
    let spdx = fs::read(cold["spdx"].as_str().unwrap()).unwrap();
    let images = cache.path().join("layers-v1/images");
    let record = fs::read_dir(&images)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    // A record that does not parse is dropped and the image built anew.
    fs::write(&record, b"{\"layers\": [").unwrap();
    let rebuilt = project.build(Some(cache.path()));
    assert_eq!(rebuilt["image_cached"], false);
    assert_eq!(rebuilt["manifest_digest"], cold["manifest_digest"]);
    assert_eq!(project.build(Some(cache.path()))["image_cached"], true);

    // The cached SPDX document overwritten in place with as many other bytes (as an
    // editor writing through a hard link would): not used, and the output is what an
    // uncached build gives.
    let sbom_blob = cache
        .path()
        .join("layers-v1/blobs/sha256")
        .join(cairn::digest::Sha256Digest::of(&spdx).hex());
    let mut perms = fs::metadata(&sbom_blob).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(&sbom_blob, perms).unwrap();
    fs::write(&sbom_blob, vec![b' '; spdx.len()]).unwrap();
    let again = project.build(Some(cache.path()));
    assert_eq!(again["image_cached"], false);
    assert_eq!(again["manifest_digest"], cold["manifest_digest"]);
    assert_eq!(fs::read(again["spdx"].as_str().unwrap()).unwrap(), spdx);
    // Regenerated and stored again: the next build replays intact blobs.
    let third = project.build(Some(cache.path()));
    assert_eq!(third["image_cached"], true);
    assert_eq!(fs::read(third["spdx"].as_str().unwrap()).unwrap(), spdx);
    run_ok(cairn().arg("inspect").arg(layout(&third)));
}

#[test]
fn a_source_file_made_executable_is_not_replayed_from_the_old_image() {
    // A single-file source's digest is that of its bytes, so chmod +x keeps its pin;
    // the image (mode 0755 instead of 0644) must still change.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("tool.sh"), "echo hi\n").unwrap();
    fs::write(
        dir.path().join("recipe.yaml"),
        "cairn: 1\nname: tool\nsources:\n  tool: { path: tool.sh }\n\
         layers:\n  - name: bin\n    contents:\n      - copy: tool\n        to: /usr/bin/tool\n",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().to_str().unwrap();
    let recipe = dir.path().join("recipe.yaml");
    let first = build_cached(&recipe, &dir.path().join("a"), &["--cache-dir", cache_dir]);
    let tool = dir.path().join("tool.sh");
    let mut perms = fs::metadata(&tool).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(&tool, perms).unwrap();
    let second = build_cached(&recipe, &dir.path().join("b"), &["--cache-dir", cache_dir]);
    assert_eq!(second["image_cached"], false);
    assert_ne!(second["manifest_digest"], first["manifest_digest"]);
    let uncached = build_json(&recipe, &dir.path().join("c"), &[]);
    assert_eq!(second["manifest_digest"], uncached["manifest_digest"]);
}

#[test]
fn a_cached_blob_changed_in_place_is_not_used() {
    let project = Project::new("gzip");
    let cache = tempfile::tempdir().unwrap();
    let cold = project.build(Some(cache.path()));
    // Every cached blob overwritten in place, same size, other bytes; permissions do
    // not stop root.
    overwrite_in_place(&cache.path().join("layers-v1/blobs/sha256"), false);
    let all_cached = |report: &serde_json::Value, want: bool| {
        let layers = cached(report);
        assert!(layers.iter().all(|(_, c)| *c == want), "{layers:?}");
    };
    let again = project.build(Some(cache.path()));
    all_cached(&again, false);
    assert_eq!(again["manifest_digest"], cold["manifest_digest"]);
    // The damaged blobs were replaced: the next build hits, with intact blobs
    // (`inspect` re-hashes every blob it reads).
    let third = project.build(Some(cache.path()));
    all_cached(&third, true);
    assert_eq!(third["manifest_digest"], cold["manifest_digest"]);
    run_ok(cairn().arg("inspect").arg(layout(&third)));
}

#[test]
fn cache_info_and_prune() {
    let project = Project::new("gzip");
    let cache = tempfile::tempdir().unwrap();
    project.build(Some(cache.path()));
    let info = |cache: &Path| -> serde_json::Value {
        let out = run_ok(
            cairn()
                .args(["cache", "info", "--json", "--cache-dir"])
                .arg(cache),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = info(cache.path());
    // Three layers, and the image record with its two SBOM blobs.
    assert_eq!(before["entries"], 3);
    assert_eq!(before["images"], 1);
    assert_eq!(before["blobs"], 5);
    // Unused for less than a day: nothing goes.
    run_ok(
        cairn()
            .args(["cache", "prune", "--older-than", "1d", "--cache-dir"])
            .arg(cache.path()),
    );
    assert_eq!(info(cache.path())["entries"], 3);
    assert_eq!(info(cache.path())["images"], 1);
    let out = run_ok(
        cairn()
            .args(["cache", "prune", "--max-size", "0", "--json", "--cache-dir"])
            .arg(cache.path()),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["removed_entries"], 4);
    assert_eq!(report["after"]["bytes"], 0);
    // An emptied cache is simply cold again.
    let rebuilt = project.build(Some(cache.path()));
    assert!(cached(&rebuilt).iter().all(|(_, c)| !c));
}

#[test]
fn concurrent_builds_share_one_cache_safely() {
    let project = Project::new("zstd");
    let cache = tempfile::tempdir().unwrap();
    let expected = project.build(None)["manifest_digest"].clone();
    let children: Vec<_> = (0..4)
        .map(|i| {
            cairn()
                .env_remove("CAIRN_NO_CACHE")
                .arg("build")
                .arg(project.recipe())
                .arg("-o")
                .arg(project.path(&format!("concurrent-{i}")))
                .args(["--json", "--cache-dir"])
                .arg(cache.path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["manifest_digest"], expected);
    }
    let warm = project.build(Some(cache.path()));
    assert!(cached(&warm).iter().all(|(_, c)| *c), "{:?}", cached(&warm));
    assert_eq!(warm["manifest_digest"], expected);
}

/// Two runners, each with its own empty local cache, share layers through a registry.
/// A registry that is down costs a warning, never the build.
#[test]
fn an_unreachable_cache_registry_is_a_warning() {
    let project = Project::new("gzip");
    let cache = tempfile::tempdir().unwrap();
    let port = common::registry::free_port();
    let report = build_cached(
        &project.recipe(),
        &project.path("out"),
        &[
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--cache-registry",
            &format!("127.0.0.1:{port}/ci/cache"),
            "--insecure",
        ],
    );
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("layer cache registry"), "{warnings}");
    assert_eq!(
        report["manifest_digest"],
        project.build(None)["manifest_digest"]
    );
}

/// (inode, bytes) of every blob file in `dir`, by name.
fn blob_files(dir: &Path) -> std::collections::BTreeMap<String, (u64, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                (fs::metadata(&path).unwrap().ino(), fs::read(&path).unwrap()),
            )
        })
        .collect()
}

/// Overwrites every blob of the cache in place with as many other bytes; with
/// `keep_mtime`, puts its mtime back, so the cache's inode, size and mtime check cannot
/// tell.
fn overwrite_in_place(cache_blobs: &Path, keep_mtime: bool) {
    for entry in fs::read_dir(cache_blobs).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::metadata(&path).unwrap();
        let mut perms = meta.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
        fs::set_permissions(&path, perms).unwrap();
        let file = fs::File::options().write(true).open(&path).unwrap();
        std::io::Write::write_all(&mut &file, &vec![0xaa; meta.len() as usize]).unwrap();
        if keep_mtime {
            file.set_modified(meta.modified().unwrap()).unwrap();
        }
    }
}

/// Asserts that every blob file of the layout `report` names holds its digest's bytes.
fn assert_blobs_match_their_names(report: &serde_json::Value) {
    for (name, (_, bytes)) in blob_files(&layout(report).join("blobs/sha256")) {
        assert_eq!(cairn::digest::Sha256Digest::of(&bytes).hex(), name);
    }
    run_ok(cairn().arg("inspect").arg(layout(report)));
}

#[test]
fn a_cached_blob_changed_in_place_with_its_mtime_kept_is_never_published() {
    let project = Project::new("gzip");
    let cache = tempfile::tempdir().unwrap();
    let cold = project.build(Some(cache.path()));
    let cache_blobs = cache.path().join("layers-v1/blobs/sha256");
    let earlier_blobs = layout(&cold).join("blobs/sha256");
    let earlier = blob_files(&earlier_blobs);

    // The cache and the output share no inode: each blob of both is its own file.
    for (name, (ino, _)) in &blob_files(&cache_blobs) {
        if let Some((layout_ino, _)) = earlier.get(name) {
            assert_ne!(
                ino, layout_ino,
                "blob {name} shares its inode with the output"
            );
        }
    }

    // An unchanged rebuild would replay the whole image from the cache: the tampered
    // blobs are refused, and the image is what the cold build gave.
    overwrite_in_place(&cache_blobs, true);
    // The earlier output did not change with them.
    assert_eq!(blob_files(&earlier_blobs), earlier);
    let replayed = project.build(Some(cache.path()));
    assert_eq!(replayed["image_cached"], false);
    assert_eq!(replayed["manifest_digest"], cold["manifest_digest"]);
    let warnings = replayed["warnings"].to_string();
    assert!(
        warnings.contains("was changed after it was written"),
        "{warnings}"
    );
    assert_blobs_match_their_names(&replayed);

    // A changed recipe (one layer's input changed) would reuse the other layer: it is
    // written anew, and the image is what a build without the cache gives.
    overwrite_in_place(&cache_blobs, true);
    fs::write(project.path("docs/README"), "changed\n").unwrap();
    run_ok(cairn().arg("lock").arg(project.recipe()));
    let changed = project.build(Some(cache.path()));
    assert!(
        cached(&changed).iter().all(|(_, c)| !c),
        "{:?}",
        cached(&changed)
    );
    assert_eq!(
        changed["manifest_digest"],
        project.build(None)["manifest_digest"]
    );
    assert_blobs_match_their_names(&changed);
    assert_eq!(blob_files(&earlier_blobs), earlier);
}

#[test]
fn a_rebuild_in_place_keeps_the_published_blobs_only_while_they_are_intact() {
    use std::os::unix::fs::MetadataExt;
    let project = Project::new("gzip");
    let cache = tempfile::tempdir().unwrap();
    let out = project.path("out");
    let first = build_cached(
        &project.recipe(),
        &out,
        &["--cache-dir", cache.path().to_str().unwrap()],
    );
    let blobs = layout(&first).join("blobs/sha256");
    let published = blob_files(&blobs);

    // Unchanged: the published blobs are kept (the same files), none shared with the cache.
    let again = build_cached(
        &project.recipe(),
        &out,
        &["--cache-dir", cache.path().to_str().unwrap()],
    );
    assert_eq!(again["manifest_digest"], first["manifest_digest"]);
    let kept = blob_files(&blobs);
    assert!(kept.keys().eq(published.keys()));
    for layer in manifest(&again)["layers"].as_array().unwrap() {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        assert_eq!(kept[hex].0, published[hex].0, "layer {hex} was not kept");
    }
    for entry in fs::read_dir(&blobs).unwrap() {
        assert_eq!(entry.unwrap().metadata().unwrap().nlink(), 1);
    }

    // A published blob changed in place (mtime kept) is not kept: the rebuild takes it
    // from the cache, checked, and every blob is its digest's bytes again.
    overwrite_in_place(&blobs, true);
    let repaired = build_cached(
        &project.recipe(),
        &out,
        &["--cache-dir", cache.path().to_str().unwrap()],
    );
    assert_eq!(repaired["manifest_digest"], first["manifest_digest"]);
    assert_blobs_match_their_names(&repaired);
}
