//! Debian packages in an image index over several platforms, from the test's signed
//! apt repository publishing amd64, arm64 and `all` packages: each platform resolves
//! against its own architecture's index (nothing runs, so nothing is emulated), the
//! lock has a section per platform, the `Architecture: all` package is one `.deb`,
//! downloaded once, and, in buckets of its own, one layer both images share. The real
//! arm64 image running under qemu-user is in `debian_mirror`.

use super::debian::{lock_of, Work};
use crate::common::apt::{AptRepo, Faults, Pkg};
use crate::common::run_ok;
use crate::multiarch::blob;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The ELF header of an x86-64 (62) or AArch64 (183) executable: what cairn's ELF
/// machine check and a loader read.
fn elf_header(machine: u16) -> Vec<u8> {
    let mut header = vec![0u8; 64];
    header[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    header[16] = 2; // ET_EXEC
    header[18..20].copy_from_slice(&machine.to_le_bytes());
    header
}

/// `tool` built for amd64 and for arm64 (its `/usr/bin/tool` that machine's ELF),
/// both needing `tool-data`, which is `Architecture: all`. With `max_layers: 3` the
/// two names fall in different buckets (2 and 0).
fn packages(tool_version: &'static str) -> Vec<Pkg> {
    let tool = |arch: &'static str, machine: u16| {
        let mut p = crate::common::apt::pkg("tool", tool_version, "Depends: tool-data");
        p.arch = arch;
        p.files
            .push(("usr/bin/tool".into(), elf_header(machine), 0o755));
        p
    };
    let mut data = crate::common::apt::pkg("tool-data", "1.0-1", "");
    data.arch = "all";
    vec![tool("amd64", 62), tool("arm64", 183), data]
}

/// The repository's recipe for `tool`, for `platforms`.
fn recipe(repo: &AptRepo, work: &Work, platforms: &str) -> std::path::PathBuf {
    let recipe = repo.recipe(work.dir.path(), "tool");
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "epoch: 1700000000\n",
        &format!("epoch: 1700000000\n{platforms}\n"),
    );
    std::fs::write(&recipe, text).unwrap();
    recipe
}

/// Each platform's layer digests (bottom first), from the image index.
fn layers_by_platform(layout: &Path) -> BTreeMap<String, Vec<String>> {
    named_layers_by_platform(layout)
        .into_iter()
        .map(|(arch, layers)| (arch, layers.into_iter().map(|(_, d)| d).collect()))
        .collect()
}

/// The layer digests (bottom first) a single-platform build report lists.
fn report_layers(report: &Value) -> Vec<String> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn layer_file(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The paths of a layer, as tar lists them.
fn members(layout: &Path, digest: &str) -> Vec<String> {
    let listed = run_ok(
        Command::new("tar")
            .arg("-tzf")
            .arg(layer_file(layout, digest)),
    );
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn each_platform_installs_its_architectures_packages_and_shares_the_arch_all_layer() {
    let repo = AptRepo::new(&packages("1.0-1"), Faults::default());
    let work = Work::new();
    let recipe = recipe(&repo, &work, "platforms: [linux/amd64, linux/arm64]");

    // The lock: a section per platform, each from its architecture's index; the `all`
    // package is the same .deb in both.
    let locked = run_ok(work.cairn("lock").arg(&recipe));
    let listing = String::from_utf8_lossy(&locked.stdout);
    for line in [
        "deb:tool@linux/amd64\t1.0-1 amd64\tsha256:",
        "deb:tool@linux/arm64\t1.0-1 arm64\tsha256:",
        "deb:tool-data@linux/arm64\t1.0-1 all\tsha256:",
    ] {
        assert!(listing.contains(line), "{line} missing:\n{listing}");
    }
    let lock = lock_of(&recipe);
    let sections = lock["packages"].as_object().unwrap();
    assert_eq!(
        sections.keys().collect::<Vec<_>>(),
        ["linux/amd64", "linux/arm64"]
    );
    for (platform, arch) in [("linux/amd64", "amd64"), ("linux/arm64", "arm64")] {
        let section = &lock["packages"][platform];
        assert_eq!(section["architecture"], arch);
        assert_eq!(section["packages"]["tool"]["architecture"], arch);
        assert_eq!(
            section["packages"]["tool"]["index"],
            format!("main/binary-{arch}/Packages.gz")
        );
    }
    let data = |platform: &str| lock["packages"][platform]["packages"]["tool-data"].clone();
    assert_eq!(data("linux/amd64")["sha256"], data("linux/arm64")["sha256"]);
    assert_ne!(
        lock["packages"]["linux/amd64"]["packages"]["tool"]["sha256"],
        lock["packages"]["linux/arm64"]["packages"]["tool"]["sha256"]
    );

    // The repository's InRelease was fetched once, for both platforms; the `all`
    // package was downloaded once, each architecture's tool once.
    assert_eq!(repo.requests_for("dists/stable/InRelease"), 1);
    for deb in [
        "tool-data_1.0-1_all.deb",
        "tool_1.0-1_amd64.deb",
        "tool_1.0-1_arm64.deb",
    ] {
        assert_eq!(repo.requests_for(&format!("pool/main/{deb}")), 1, "{deb}");
    }

    // Reproducible from the lock, and the lock stays as it is.
    let lock_bytes = std::fs::read(recipe.with_extension("lock")).unwrap();
    let a = work.build(&recipe, "a", &["--locked"]);
    let b = work.build(&recipe, "b", &["--locked", "--jobs", "1"]);
    assert_eq!(a["manifest_digest"], b["manifest_digest"]);
    assert_eq!(
        crate::common::tree_bytes(&work.out("a/pkgs")),
        crate::common::tree_bytes(&work.out("b/pkgs"))
    );
    assert_eq!(
        std::fs::read(recipe.with_extension("lock")).unwrap(),
        lock_bytes
    );
    // Each image's package is its machine's: no foreign-ELF warning.
    let warnings = a["warnings"].to_string();
    assert!(!warnings.contains("ELF"), "{warnings}");
    for key in ["deb:tool@linux/amd64", "deb:tool-data@linux/arm64"] {
        assert!(a["sources"][key].is_string(), "{key}: {}", a["sources"]);
    }

    // Each image holds its architecture's tool; the tool-data layer is one blob both
    // manifests name.
    let layout = work.out("a/pkgs");
    let layers = layers_by_platform(&layout);
    let with = |arch: &str, path: &str| -> String {
        layers[arch]
            .iter()
            .find(|d| members(&layout, d).iter().any(|m| m == path))
            .unwrap_or_else(|| panic!("no {arch} layer has {path}"))
            .clone()
    };
    for (arch, machine) in [("amd64", 62u16), ("arm64", 183)] {
        let root = work.out(&format!("root-{arch}"));
        std::fs::create_dir_all(&root).unwrap();
        for digest in &layers[arch] {
            run_ok(
                Command::new("tar")
                    .arg("-xzf")
                    .arg(layer_file(&layout, digest))
                    .arg("-C")
                    .arg(&root),
            );
        }
        let tool = std::fs::read(root.join("usr/bin/tool")).unwrap();
        assert_eq!(tool, elf_header(machine), "{arch}");
        let status = std::fs::read_to_string(root.join("var/lib/dpkg/status.d/tool")).unwrap();
        assert!(
            status.contains(&format!("Architecture: {arch}\n")),
            "{status}"
        );
    }
    let data_amd64 = with("amd64", "usr/share/tool-data/1.0-1.txt");
    assert_eq!(data_amd64, with("arm64", "usr/share/tool-data/1.0-1.txt"));
    assert_ne!(with("amd64", "usr/bin/tool"), with("arm64", "usr/bin/tool"));
    assert!(
        members(&layout, &data_amd64)
            .iter()
            .all(|m| !m.contains("tool/") && !m.ends_with("/tool")),
        "the shared layer holds only tool-data"
    );
}

#[test]
fn lock_update_and_diff_name_each_platforms_new_versions_and_a_lock_of_other_platforms_is_reresolved(
) {
    let repo = AptRepo::new(&packages("1.0-1"), Faults::default());
    let work = Work::new();
    // A lock of one section, as a single-platform recipe has it (and every lock had
    // before packages came to image indexes).
    let recipe = recipe(&repo, &work, "platform: linux/amd64");
    run_ok(work.cairn("lock").arg(&recipe));
    assert_eq!(lock_of(&recipe)["packages"]["architecture"], "amd64");
    let single = work.build(&recipe, "single", &["--locked"]);

    // The recipe now lists two platforms: `--locked` refuses the old lock and says
    // how to fix it; `cairn lock` resolves arm64 and keeps amd64's pins.
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "platform: linux/amd64",
        "platforms: [linux/amd64, linux/arm64]",
    );
    std::fs::write(&recipe, text).unwrap();
    let err = work.build_err(&recipe, &["--locked"]);
    assert!(err.contains("run `cairn lock`"), "{err}");
    let old_lock = lock_of(&recipe);
    run_ok(work.cairn("lock").arg(&recipe));
    let lock = lock_of(&recipe);
    assert_eq!(lock["packages"]["linux/amd64"], old_lock["packages"]);
    assert_eq!(lock["packages"]["linux/arm64"]["architecture"], "arm64");
    let index = work.build(&recipe, "index", &["--locked"]);
    // The amd64 image of the index has the single-platform image's layers, byte for
    // byte, but for the embedded SBOM (the last), which names tool-data's layer
    // `packages-all-0` there, `packages-0` here.
    let layers = layers_by_platform(&work.out("index/pkgs"));
    let single_layers = report_layers(&single);
    let (_, index_files) = layers["amd64"].split_last().unwrap();
    let (_, single_files) = single_layers.split_last().unwrap();
    assert_eq!(index_files, single_files);
    assert_ne!(index["manifest_digest"], single["manifest_digest"]);

    // The mirror publishes tool 1.1-1 for both: `--update` and `cairn diff` name it
    // per platform, and not the `all` package, which stayed.
    let lock_file = recipe.with_extension("lock");
    let before = work.dir.path().join("before.lock");
    std::fs::copy(&lock_file, &before).unwrap();
    let mut updated = packages("1.0-1");
    updated.extend(packages("1.1-1").into_iter().filter(|p| p.name == "tool"));
    repo.republish(&updated);
    let update = run_ok(work.cairn("lock").arg(&recipe).arg("--update"));
    let said = String::from_utf8_lossy(&update.stderr);
    let listed = work.diff_locks(&before, &lock_file);
    for arch in ["amd64", "arm64"] {
        let change = format!("deb:tool@linux/{arch}: 1.0-1 {arch} -> 1.1-1 {arch}");
        assert!(said.contains(&format!("changed {change}")), "{said}");
        assert!(listed.contains(&format!("{change}\n")), "{listed}");
    }
    assert!(
        said.contains("changed repository test@linux/arm64: stable (InRelease sha256:"),
        "{said}"
    );
    assert!(!said.contains("deb:tool-data"), "{said}");
    assert!(!listed.contains("deb:tool-data"), "{listed}");
    let updated_lock: Value = lock_of(&recipe);
    assert_eq!(
        updated_lock["packages"]["linux/arm64"]["packages"]["tool"]["version"],
        "1.1-1"
    );

    // Back to one platform: `--locked` refuses the sections of two; `cairn lock`
    // writes the one section, keeping amd64's pins.
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "platforms: [linux/amd64, linux/arm64]",
        "platform: linux/amd64",
    );
    std::fs::write(&recipe, text).unwrap();
    let err = work.build_err(&recipe, &["--locked"]);
    assert!(
        err.contains("not those of the recipe's platforms") && err.contains("run `cairn lock`"),
        "{err}"
    );
    run_ok(work.cairn("lock").arg(&recipe));
    assert_eq!(
        lock_of(&recipe)["packages"],
        updated_lock["packages"]["linux/amd64"]
    );
}

/// Each platform's layers (bottom first) as `(name, digest)`: the name from the image
/// config's history (`cairn: layer <name>`), the digest from the manifest.
fn named_layers_by_platform(layout: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let index_json = crate::multiarch::read_json(&layout.join("index.json"));
    let index = blob(
        layout,
        index_json["manifests"][0]["digest"].as_str().unwrap(),
    );
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let manifest = blob(layout, m["digest"].as_str().unwrap());
            let config = blob(layout, manifest["config"]["digest"].as_str().unwrap());
            let names = config["history"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["empty_layer"] != true)
                .map(|h| {
                    let by = h["created_by"].as_str().unwrap();
                    by.strip_prefix("cairn: layer ").unwrap_or(by).to_string()
                });
            let digests = manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string());
            (
                m["platform"]["architecture"].as_str().unwrap().into(),
                names.zip(digests).collect(),
            )
        })
        .collect()
}

#[test]
fn with_platforms_arch_all_packages_get_layers_of_their_own_that_every_platform_shares() {
    let repo = AptRepo::new(&packages("1.0-1"), Faults::default());
    let work = Work::new();
    // One bucket: without buckets of their own, `tool-data` (all) and `tool` (amd64 or
    // arm64) would share the one package layer, which would differ per platform.
    let one_bucket = |platforms: &str| {
        let recipe = recipe(&repo, &work, platforms);
        let text = std::fs::read_to_string(&recipe)
            .unwrap()
            .replace("max_layers: 3", "max_layers: 1");
        std::fs::write(&recipe, text).unwrap();
        recipe
    };

    // A single-platform image keeps the one layer holding both.
    let recipe = one_bucket("platform: linux/amd64");
    let single = work.build(&recipe, "single", &[]);
    let layout = work.out("single/pkgs");
    let single_layers = report_layers(&single);
    let both: Vec<&String> = single_layers
        .iter()
        .filter(|d| {
            let m = members(&layout, d);
            m.iter().any(|m| m == "usr/bin/tool")
                && m.iter().any(|m| m == "usr/share/tool-data/1.0-1.txt")
        })
        .collect();
    assert_eq!(both.len(), 1, "{single_layers:?}");

    // Two platforms: `packages-all-0` below `packages-0`, the same blob in both
    // manifests, stored once; `packages-0` is each architecture's own.
    std::fs::remove_file(recipe.with_extension("lock")).unwrap();
    let recipe = one_bucket("platforms: [linux/amd64, linux/arm64]");
    let a = work.build(&recipe, "a", &[]);
    let layout = work.out("a/pkgs");
    let layers = named_layers_by_platform(&layout);
    let names =
        |arch: &str| -> Vec<&str> { layers[arch].iter().map(|(n, _)| n.as_str()).collect() };
    for arch in ["amd64", "arm64"] {
        assert_eq!(
            names(arch),
            ["packages-all-0", "packages-0", "base", "sbom"],
            "{arch}"
        );
    }
    let digest = |arch: &str, name: &str| -> String {
        layers[arch]
            .iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .clone()
    };
    let shared = digest("amd64", "packages-all-0");
    assert_eq!(shared, digest("arm64", "packages-all-0"));
    assert_ne!(digest("amd64", "packages-0"), digest("arm64", "packages-0"));
    let shared_members = members(&layout, &shared);
    assert!(
        shared_members
            .iter()
            .any(|m| m == "usr/share/tool-data/1.0-1.txt")
            && shared_members.iter().all(|m| !m.ends_with("/tool")),
        "{shared_members:?}"
    );
    // Stored once: of the layout's blobs, one holds tool-data's file.
    let holding_data = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|hex| {
            let digest = format!("sha256:{hex}");
            layers.values().flatten().any(|(_, d)| *d == digest)
                && members(&layout, &digest)
                    .iter()
                    .any(|m| m == "usr/share/tool-data/1.0-1.txt")
        })
        .count();
    assert_eq!(holding_data, 1);
    // Its dpkg metadata names the `all` architecture, as the .deb does.
    let root = work.out("root-all");
    std::fs::create_dir_all(&root).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(layer_file(&layout, &shared))
            .arg("-C")
            .arg(&root),
    );
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status.d/tool-data")).unwrap();
    assert!(status.contains("\nArchitecture: all\n"), "{status}");

    // Reproducible.
    let b = work.build(&recipe, "b", &["--locked"]);
    assert_eq!(a["manifest_digest"], b["manifest_digest"]);
    assert_eq!(
        crate::common::tree_bytes(&layout),
        crate::common::tree_bytes(&work.out("b/pkgs"))
    );
}
