//! Debian packages from a signed apt repository, end to end through the real binary:
//! the repository is made by the test (dpkg-deb, gpg) and served on a loopback port
//! by python3's http.server (see `common::apt`).

use crate::common;
use crate::common::apt::{fixture_packages, pkg, AptRepo, Faults};
use crate::common::{cairn, run_err, run_ok};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A test's directory and package cache (shared with `debian_base`).
pub(super) struct Work {
    pub(super) dir: tempfile::TempDir,
}

impl Work {
    pub(super) fn new() -> Work {
        Work {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub(super) fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    pub(super) fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// `cairn SUBCOMMAND` with this test's own package cache.
    pub(super) fn cairn(&self, sub: &str) -> Command {
        let mut cmd = cairn();
        cmd.env("XDG_CACHE_HOME", self.cache()).arg(sub);
        cmd
    }
    pub(super) fn build(&self, recipe: &Path, out: &str, extra: &[&str]) -> Value {
        let output = run_ok(
            self.cairn("build")
                .arg(recipe)
                .arg("-o")
                .arg(self.out(out))
                .arg("--json")
                .args(extra),
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
    /// `cairn diff A B` of two locks that differ (exit 1): what it lists.
    pub(super) fn diff_locks(&self, a: &Path, b: &Path) -> String {
        let diff = self.cairn("diff").arg(a).arg(b).output().unwrap();
        assert_eq!(diff.status.code(), Some(1), "{diff:?}");
        String::from_utf8_lossy(&diff.stdout).into_owned()
    }
    pub(super) fn build_err(&self, recipe: &Path, extra: &[&str]) -> String {
        let (code, stderr) = run_err(
            self.cairn("build")
                .arg(recipe)
                .arg("-o")
                .arg(self.out("failed"))
                .args(extra),
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(
            !self.out("failed/pkgs").exists(),
            "a failed build left output"
        );
        // Like every build error: placed in the recipe, with a hint.
        assert!(
            stderr.contains(&format!("--> {}:", recipe.display())) && stderr.contains("= help:"),
            "{stderr}"
        );
        stderr
    }
}

pub(super) fn lock_of(recipe: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(recipe.with_extension("lock")).unwrap()).unwrap()
}

#[test]
fn resolves_versions_alternatives_provides_and_arch_all_and_traces_files_to_the_signing_key() {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "app");
    let report = work.build(&recipe, "out", &[]);
    assert!(report["warnings"][0]
        .as_str()
        .unwrap()
        .contains("resolved 4 packages"));

    let lock = lock_of(&recipe);
    let pkgs = &lock["packages"]["packages"];
    let chosen: Vec<(&str, &str, &str)> = pkgs
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                v["version"].as_str().unwrap(),
                v["architecture"].as_str().unwrap(),
            )
        })
        .collect();
    // libfoo: the highest version; mta: the provider of the second alternative;
    // app-data: Architecture all.
    assert_eq!(
        chosen,
        [
            ("app", "1.0-1", "amd64"),
            ("app-data", "1.0-1", "all"),
            ("libfoo", "2.0-1", "amd64"),
            ("postfix-lite", "3.0-1", "amd64")
        ]
    );
    let repo_lock = &lock["packages"]["repositories"]["test"];
    assert_eq!(repo_lock["signed_by"], repo.fingerprint.as_str());
    let lock_text = std::fs::read_to_string(recipe.with_extension("lock")).unwrap();
    assert!(!lock_text.contains("127.0.0.1"), "the lock names no mirror");

    // Files trace through package, .deb, index and InRelease to the key.
    let layout = work.out("out/pkgs");
    let trace = run_ok(
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("trace")
            .arg(&layout)
            .arg("/usr/bin/app"),
    );
    let text = String::from_utf8_lossy(&trace.stdout);
    let deb_sha = pkgs["app"]["sha256"].as_str().unwrap();
    let index_sha = pkgs["app"]["index_sha256"].as_str().unwrap();
    let chain = text
        .lines()
        .find(|l| l.trim_start().starts_with("chain"))
        .unwrap_or_else(|| panic!("no chain line:\n{text}"));
    for part in [
        "package app 1.0-1",
        &format!(".deb {deb_sha}"),
        &format!("Packages index {index_sha}"),
        repo_lock["inrelease_sha256"].as_str().unwrap(),
        &format!("signed by key {}", repo.fingerprint),
    ] {
        assert!(chain.contains(part), "{part} missing from: {chain}");
    }

    // SBOMs: one package per .deb with purl, version, license from the DEP-5
    // copyright, the .deb digest; dpkg metadata in the image for scanners.
    let spdx: Value =
        serde_json::from_slice(&std::fs::read(work.out("out/pkgs.spdx.json")).unwrap()).unwrap();
    let libfoo = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libfoo")
        .expect("libfoo in the SPDX SBOM");
    assert_eq!(libfoo["versionInfo"], "2.0-1");
    assert_eq!(libfoo["licenseDeclared"], "MIT");
    assert_eq!(
        libfoo["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/libfoo@2.0-1?arch=amd64"
    );
    assert_eq!(
        format!(
            "sha256:{}",
            libfoo["checksums"][0]["checksumValue"].as_str().unwrap()
        ),
        pkgs["libfoo"]["sha256"].as_str().unwrap()
    );
    let files: Vec<&str> = spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fileName"].as_str().unwrap())
        .collect();
    for f in [
        "./var/lib/dpkg/status.d/app",
        "./var/lib/dpkg/status.d/app.md5sums",
        "./usr/share/libfoo/2.0-1.txt",
    ] {
        assert!(files.contains(&f), "{f} not in {files:?}");
    }
    assert!(!files.contains(&"./usr/share/libfoo/1.0-1.txt"));
    // Each file is linked to its package: the package CONTAINS it.
    let file_id = spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileName"] == "./usr/share/libfoo/2.0-1.txt")
        .unwrap()["SPDXID"]
        .clone();
    assert_eq!(libfoo["filesAnalyzed"], true);
    assert!(spdx["relationships"].as_array().unwrap().iter().any(|r| {
        r["spdxElementId"] == libfoo["SPDXID"]
            && r["relationshipType"] == "CONTAINS"
            && r["relatedSpdxElement"] == file_id
    }));
    common::pyspdxtools(&work.out("out/pkgs.spdx.json")).unwrap();
    common::cyclonedx_validate(&work.out("out/pkgs.cdx.json")).unwrap();

    // The status file is the control stanza with a Status line, as dpkg writes it.
    let status = file_in_layout(&layout, "var/lib/dpkg/status.d/app");
    assert!(
        status.starts_with("Package: app\nStatus: install ok installed\nVersion: 1.0-1\n"),
        "{status}"
    );
}

/// The content of `path` in the image, from the first layer tar that has it.
fn file_in_layout(layout: &Path, path: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    for blob in common::layer_blobs(layout) {
        let out = Command::new("tar")
            .arg("-xzf")
            .arg(blob)
            .arg("-C")
            .arg(dir.path())
            .arg(path)
            .output()
            .unwrap();
        if out.status.success() {
            return std::fs::read_to_string(dir.path().join(path)).unwrap();
        }
    }
    panic!("{path} is in no layer");
}

/// Every member of every layer of the layout's image, as tar lists them.
fn members_of_layout(layout: &Path) -> Vec<String> {
    let mut members = Vec::new();
    for blob in common::layer_blobs(layout) {
        let listed = run_ok(Command::new("tar").arg("-tzf").arg(blob));
        members.extend(
            String::from_utf8_lossy(&listed.stdout)
                .lines()
                .map(String::from),
        );
    }
    members
}

/// `path_filters:` leaves package files out as dpkg's `--path-exclude` and
/// `--path-include` would, keeps what an include brings back with its directories, and
/// both SBOMs say what was left out.
#[test]
fn path_filters_leave_files_out_as_dpkg_does_and_the_sboms_record_them() {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "app");
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "layering:",
        "path_filters:\n  - exclude: /usr/share/*\n  - include: /usr/share/doc/*/copyright\nlayering:",
    );
    std::fs::write(&recipe, text).unwrap();
    work.build(&recipe, "out", &[]);
    let layout = work.out("out/pkgs");
    let members = members_of_layout(&layout);
    for kept in [
        "usr/bin/app",
        "usr/share/doc/libfoo/",
        "usr/share/doc/libfoo/copyright",
    ] {
        assert!(
            members.iter().any(|m| m == kept),
            "{kept} missing: {members:?}"
        );
    }
    for gone in ["usr/share/libfoo/2.0-1.txt", "usr/share/app/1.0-1.txt"] {
        assert!(
            !members.iter().any(|m| m == gone),
            "{gone} kept: {members:?}"
        );
    }
    // The license still comes from the copyright file, and the SBOMs list what is gone,
    // still valid SPDX 2.3 and CycloneDX 1.6.
    common::pyspdxtools(&work.out("out/pkgs.spdx.json")).unwrap();
    common::cyclonedx_validate(&work.out("out/pkgs.cdx.json")).unwrap();
    let spdx: Value =
        serde_json::from_slice(&std::fs::read(work.out("out/pkgs.spdx.json")).unwrap()).unwrap();
    let libfoo = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "libfoo")
        .unwrap();
    assert_eq!(libfoo["licenseDeclared"], "MIT");
    let annotation = libfoo["annotations"][0]["comment"].as_str().unwrap();
    assert!(
        annotation.contains("left out 2 paths")
            && annotation.contains("/usr/share/libfoo/2.0-1.txt"),
        "{annotation}"
    );
    assert_eq!(
        libfoo["annotations"][0]["annotationDate"],
        spdx["creationInfo"]["created"]
    );
    let cdx: Value =
        serde_json::from_slice(&std::fs::read(work.out("out/pkgs.cdx.json")).unwrap()).unwrap();
    let component = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "libfoo")
        .unwrap();
    assert!(component["properties"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "cairn:package:left-out"
            && p["value"] == "/usr/share/libfoo/2.0-1.txt"));
}

/// Two packages that ship one path: the one whose `Replaces` names the other gets it,
/// otherwise the build fails naming both; `Conflicts`/`Breaks` refuse to install
/// packages together, naming both.
#[test]
fn replaces_decides_a_shared_file_and_conflicts_refuse_the_pair() {
    let tool = |name: &'static str, fields: &'static str| {
        let mut p = pkg(name, "1.0-1", fields);
        p.files.push((
            "usr/bin/tool".into(),
            format!("#!/bin/sh\necho {name}\n").into_bytes(),
            0o755,
        ));
        p
    };
    let mut packages = fixture_packages();
    packages.extend([
        tool("tool-a", ""),
        tool("tool-b", "Replaces: tool-a (<< 2)"),
        tool("tool-c", ""),
        tool("tool-d", "Breaks: tool-a"),
    ]);
    let repo = AptRepo::new(&packages, Faults::default());
    let work = Work::new();

    let recipe = repo.recipe(work.dir.path(), "tool-a, tool-b");
    work.build(&recipe, "replaced", &[]);
    let layout = work.out("replaced/pkgs");
    assert_eq!(
        file_in_layout(&layout, "usr/bin/tool"),
        "#!/bin/sh\necho tool-b\n"
    );
    let trace = run_ok(work.cairn("trace").arg(&layout).arg("/usr/bin/tool"));
    assert!(
        String::from_utf8_lossy(&trace.stdout).contains("package tool-b 1.0-1"),
        "{}",
        String::from_utf8_lossy(&trace.stdout)
    );

    let recipe = repo.recipe(work.dir.path(), "tool-a, tool-c");
    let err = work.build_err(&recipe, &[]);
    assert!(
        err.contains("packages `tool-a` and `tool-c` both ship /usr/bin/tool, and neither declares `Replaces:` the other"),
        "{err}"
    );

    let recipe = repo.recipe(work.dir.path(), "tool-a, tool-d");
    let err = work.build_err(&recipe, &[]);
    assert!(
        err.contains("packages `tool-d` 1.0-1 and `tool-a` 1.0-1 cannot be installed together")
            && err.contains("Breaks: tool-a"),
        "{err}"
    );
}

/// The links `update-alternatives --install` calls in `postinst` scripts would make, as
/// dpkg's auto mode leaves them: the highest priority wins, with its slaves, and the
/// administrative file; a call cairn cannot read without running the script is a
/// warning.
#[test]
fn alternatives_are_linked_as_auto_mode_chooses() {
    let awk = |name: &'static str, postinst: &'static str| {
        let mut p = pkg(name, "1.0-1", "");
        p.files.push((
            format!("usr/bin/{name}"),
            format!("#!/bin/sh\necho {name}\n").into_bytes(),
            0o755,
        ));
        p.postinst = postinst;
        p
    };
    let mut packages = fixture_packages();
    packages.extend([
        awk(
            "mawk-lite",
            "#!/bin/sh\nset -e\nupdate-alternatives --install /usr/bin/awk awk /usr/bin/mawk-lite 5 \\\n  --slave /usr/bin/nawk nawk /usr/bin/mawk-lite\n",
        ),
        awk(
            "gawk-lite",
            "#!/bin/sh\nupdate-alternatives --install /usr/bin/awk awk /usr/bin/gawk-lite 10\nupdate-alternatives --install /usr/bin/x x \"$X\" 1\n",
        ),
    ]);
    let repo = AptRepo::new(&packages, Faults::default());
    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "mawk-lite");
    let (key, _, _) = common::keygen(work.dir.path(), "signer");
    work.build(&recipe, "mawk", &["--sign-key", key.to_str().unwrap()]);
    // The provenance lists the script, not run, and what cairn did in its place.
    let provenance = common::provenance_of(&work.out("mawk/pkgs.intoto.jsonl"));
    let mawk = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "deb:mawk-lite")
        .unwrap()
        .clone();
    let script = &mawk["annotations"]["maintainerScripts"][0];
    assert_eq!(script["name"], "postinst");
    assert_eq!(script["run"], false);
    assert_eq!(script["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        script["doneNatively"][0],
        "update-alternatives --install /usr/bin/awk awk /usr/bin/mawk-lite 5 --slave /usr/bin/nawk nawk /usr/bin/mawk-lite"
    );
    let layout = work.out("mawk/pkgs");
    let rootfs = work.dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    common::unpack_layout(&layout, &rootfs);
    let link = |path: &str| std::fs::read_link(rootfs.join(path)).unwrap();
    assert_eq!(link("usr/bin/awk"), Path::new("/etc/alternatives/awk"));
    assert_eq!(
        link("etc/alternatives/awk"),
        Path::new("/usr/bin/mawk-lite")
    );
    assert_eq!(link("usr/bin/nawk"), Path::new("/etc/alternatives/nawk"));
    assert_eq!(
        std::fs::read_to_string(rootfs.join("var/lib/dpkg/alternatives/awk")).unwrap(),
        "auto\n/usr/bin/awk\nnawk\n/usr/bin/nawk\n\n/usr/bin/mawk-lite\n5\n/usr/bin/mawk-lite\n\n"
    );

    // Both installed: the higher priority wins; the unreadable call is a warning.
    let recipe = repo.recipe(work.dir.path(), "mawk-lite, gawk-lite");
    let built = work.build(&recipe, "both", &[]);
    let rootfs = work.dir.path().join("rootfs-both");
    std::fs::create_dir_all(&rootfs).unwrap();
    common::unpack_layout(&work.out("both/pkgs"), &rootfs);
    assert_eq!(
        std::fs::read_link(rootfs.join("etc/alternatives/awk")).unwrap(),
        Path::new("/usr/bin/gawk-lite")
    );
    assert!(
        !rootfs.join("usr/bin/nawk").exists(),
        "gawk-lite has no nawk slave"
    );
    let warnings = built["warnings"].to_string();
    assert!(
        warnings.contains("package `gawk-lite`: its postinst calls `update-alternatives --install /usr/bin/x x \\\"$X\\\" 1`"),
        "{warnings}"
    );
}

/// Merged /usr: files a package ships under /bin and /lib land in /usr, those two are
/// symlinks into it, and a recipe layer writes through neither.
#[test]
fn package_files_under_bin_and_lib_land_in_usr_behind_symlinks() {
    let mut legacy = pkg("legacy", "1.0-1", "");
    legacy.files.extend([
        (
            "bin/legacy".to_string(),
            b"#!/bin/sh\necho legacy\n".to_vec(),
            0o755,
        ),
        ("lib/legacy/data".to_string(), b"data\n".to_vec(), 0o644),
    ]);
    let mut packages = fixture_packages();
    packages.push(legacy);
    let repo = AptRepo::new(&packages, Faults::default());
    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "legacy");
    work.build(&recipe, "out", &[]);
    let rootfs = work.dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    common::unpack_layout(&work.out("out/pkgs"), &rootfs);
    assert_eq!(
        std::fs::read_link(rootfs.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("lib")).unwrap(),
        Path::new("usr/lib")
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("usr/bin/legacy")).unwrap(),
        "#!/bin/sh\necho legacy\n"
    );
    assert!(rootfs.join("usr/lib/legacy/data").is_file());
    assert!(
        !rootfs.join("sbin").exists(),
        "no package put files in /sbin"
    );
    // The SBOM names the file where it is.
    let spdx = std::fs::read_to_string(work.out("out/pkgs.spdx.json")).unwrap();
    assert!(spdx.contains("\"./usr/bin/legacy\""), "{spdx}");

    // A recipe layer writing below /bin is told to use /usr/bin.
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "      - dir: /tmp\n        mode: 0o1777\n",
        "      - symlink: /bin/sh\n        target: legacy\n",
    );
    std::fs::write(&recipe, text).unwrap();
    let err = work.build_err(&recipe, &[]);
    assert!(
        err.contains("/bin/sh goes through /bin, which is a symlink"),
        "{err}"
    );
}

/// A recipe made only of `packages:` builds: its image is the packages' layers (and the
/// SBOMs), with the package's files in place.
#[test]
fn a_recipe_of_packages_alone_builds() {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "app");
    let text = std::fs::read_to_string(&recipe).unwrap();
    let without_layers = &text[..text.find("layers:\n").unwrap()];
    std::fs::write(&recipe, without_layers).unwrap();
    work.build(&recipe, "out", &[]);
    assert_eq!(
        file_in_layout(&work.out("out/pkgs"), "usr/bin/app"),
        "#!/bin/sh\necho app\n"
    );
}

#[test]
fn a_missing_dependency_is_an_error_naming_the_chain() {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "broken");
    let err = work.build_err(&recipe, &[]);
    assert!(err.contains("cannot install missing-lib (>= 3)"), "{err}");
    assert!(err.contains("needed by broken 1.0-1"), "{err}");
    assert!(err.contains("no package `missing-lib`"), "{err}");
    assert!(!recipe.with_extension("lock").exists());
}

#[test]
fn a_tampered_deb_is_refused() {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let deb = repo.root().join("pool/main/app-data_1.0-1_all.deb");
    let mut bytes = std::fs::read(&deb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&deb, bytes).unwrap();
    let work = Work::new();
    let err = work.build_err(&repo.recipe(work.dir.path(), "app"), &[]);
    assert!(err.contains("package `app-data` 1.0-1"), "{err}");
    assert!(err.contains("does not match its pin"), "{err}");
}

#[test]
fn a_tampered_packages_index_is_refused() {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let binary = repo.root().join("dists/stable/main/binary-amd64");
    // Both forms the InRelease lists: cairn must not fall back to the other.
    let text = std::fs::read_to_string(binary.join("Packages"))
        .unwrap()
        .replace("Version: 2.0-1", "Version: 9.0-1");
    std::fs::write(binary.join("Packages"), &text).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, text.as_bytes()).unwrap();
    std::fs::write(binary.join("Packages.gz"), gz.finish().unwrap()).unwrap();
    let work = Work::new();
    let err = work.build_err(&repo.recipe(work.dir.path(), "app"), &[]);
    assert!(
        err.contains("repository `test`: its Packages index main/binary-amd64/Packages.gz does not match its pin"),
        "{err}"
    );
}

/// A mirror in the middle of an update (or a cache in front of it that has not caught
/// up): the new InRelease, but the indexes under their own names still the old ones.
/// The Release offers `Acquire-By-Hash`, so cairn asks for each index by its digest, as
/// apt does, gets the one the InRelease signs and installs the update; the stale files
/// are never asked for.
#[test]
fn indexes_come_by_hash_so_a_mirror_in_the_middle_of_an_update_serves_the_signed_ones() {
    let repo = AptRepo::new(
        &fixture_packages(),
        Faults {
            by_hash: true,
            ..Faults::default()
        },
    );
    let binary = repo.root().join("dists/stable/main/binary-amd64");
    let stale: Vec<(&str, Vec<u8>)> = ["Packages", "Packages.gz"]
        .into_iter()
        .map(|name| (name, std::fs::read(binary.join(name)).unwrap()))
        .collect();
    let mut updated = fixture_packages();
    updated.push(pkg("libfoo", "2.0-2", ""));
    repo.republish(&updated);
    let signed = std::fs::read(binary.join("Packages.gz")).unwrap();
    for (name, bytes) in stale {
        std::fs::write(binary.join(name), bytes).unwrap();
    }

    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "app");
    work.build(&recipe, "out", &[]);
    assert_eq!(
        lock_of(&recipe)["packages"]["packages"]["libfoo"]["version"],
        "2.0-2"
    );
    let by_hash = format!(
        "dists/stable/main/binary-amd64/by-hash/SHA256/{}",
        common::sha256_hex(&signed)
    );
    assert_eq!(repo.requests_for(&by_hash), 1);
    assert_eq!(
        repo.requests_for("dists/stable/main/binary-amd64/Packages.gz"),
        0
    );
}

/// A mirror whose Release offers `Acquire-By-Hash` but that lacks the by-hash file
/// (404): the index is fetched by its name instead, and checked the same.
#[test]
fn an_index_missing_by_hash_is_fetched_by_name() {
    let repo = AptRepo::new(
        &fixture_packages(),
        Faults {
            by_hash: true,
            ..Faults::default()
        },
    );
    let binary = "dists/stable/main/binary-amd64";
    let packages_gz = std::fs::read(repo.root().join(binary).join("Packages.gz")).unwrap();
    std::fs::remove_dir_all(repo.root().join(binary).join("by-hash")).unwrap();
    let work = Work::new();
    work.build(&repo.recipe(work.dir.path(), "app"), "out", &[]);
    let by_hash = format!(
        "{binary}/by-hash/SHA256/{}",
        common::sha256_hex(&packages_gz)
    );
    assert_eq!(repo.requests_for(&by_hash), 1);
    assert_eq!(repo.requests_for(&format!("{binary}/Packages.gz")), 1);
}

/// A server that fails each file's first request (503 for the InRelease and the index,
/// a `.deb` broken off halfway): every download is tried again and the build succeeds.
#[test]
fn a_server_error_or_a_download_broken_off_is_tried_again() {
    let repo = AptRepo::new(
        &fixture_packages(),
        Faults {
            flaky: true,
            ..Faults::default()
        },
    );
    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "app");
    work.build(&recipe, "out", &[]);
    assert_eq!(
        file_in_layout(&work.out("out/pkgs"), "usr/bin/app"),
        "#!/bin/sh\necho app\n"
    );
    for path in [
        "dists/stable/InRelease",
        "dists/stable/main/binary-amd64/Packages.gz",
        "pool/main/app_1.0-1_amd64.deb",
        "pool/main/libfoo_2.0-1_amd64.deb",
    ] {
        assert_eq!(repo.requests_for(path), 2, "{path}");
    }
}

/// A lock made before the mirror published a new Release rebuilds where the package
/// cache holds the pinned InRelease; elsewhere the error says what happened and to
/// update the lock.
#[test]
fn a_lock_whose_release_the_mirror_replaced_says_so_and_how_to_update() {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "app");
    run_ok(work.cairn("lock").arg(&recipe));
    let pinned = lock_of(&recipe)["packages"]["repositories"]["test"]["inrelease_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let mut updated = fixture_packages();
    updated.push(pkg("libfoo", "2.0-2", ""));
    repo.republish(&updated);

    work.build(&recipe, "out", &["--locked"]);
    let elsewhere = Work::new();
    let err = elsewhere.build_err(&recipe, &["--locked"]);
    assert!(
        err.contains(&format!("the lock file pins its InRelease as {pinned}"))
            && err.contains("it has published a new Release since the lock was made"),
        "{err}"
    );
    assert!(err.contains("run `cairn lock --update`"), "{err}");
}

#[test]
fn a_bad_signature_is_refused() {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let inrelease = repo.root().join("dists/stable/InRelease");
    let text = std::fs::read_to_string(&inrelease)
        .unwrap()
        .replace("Codename: test", "Codename: evil");
    std::fs::write(&inrelease, text).unwrap();
    let work = Work::new();
    let err = work.build_err(&repo.recipe(work.dir.path(), "app"), &[]);
    assert!(err.contains("InRelease is not trustworthy"), "{err}");
    assert!(err.contains("does not match the text"), "{err}");
}

#[test]
fn an_unknown_key_is_refused() {
    let repo = AptRepo::new(
        &fixture_packages(),
        Faults {
            unknown_key: true,
            ..Faults::default()
        },
    );
    let work = Work::new();
    let err = work.build_err(&repo.recipe(work.dir.path(), "app"), &[]);
    assert!(err.contains("which is not in the keyring"), "{err}");
    // Placed at the repository whose InRelease it is.
    assert!(
        err.contains("repository `test`: InRelease is not trustworthy"),
        "{err}"
    );
    assert!(err.contains("\n5 |   test:\n"), "{err}");
}

#[test]
fn an_unsigned_release_is_refused() {
    let repo = AptRepo::new(
        &fixture_packages(),
        Faults {
            unsigned: true,
            ..Faults::default()
        },
    );
    let work = Work::new();
    let err = work.build_err(&repo.recipe(work.dir.path(), "app"), &[]);
    assert!(err.contains("an unsigned Release is refused"), "{err}");
}

#[test]
fn an_expired_release_is_refused() {
    let repo = AptRepo::new(
        &fixture_packages(),
        Faults {
            expired: true,
            ..Faults::default()
        },
    );
    let work = Work::new();
    let err = work.build_err(&repo.recipe(work.dir.path(), "app"), &[]);
    assert!(
        err.contains("expired on Thu, 01 Jan 2015 00:00:00 UTC"),
        "{err}"
    );
}

/// `mirror: host` follows the host's apt configuration, read as apt reads it (here
/// from `$APT_CONFIG`, whose `Dir::Etc` holds the sources and `apt.conf.d`): where the
/// host turns `Valid-Until` checking off, for all sources or for one, an expired
/// Release is used, with a warning naming why. A mirror the recipe names itself is
/// always checked, whatever the host says.
#[test]
fn an_expired_release_is_used_for_mirror_host_only_where_the_hosts_apt_accepts_it() {
    let repo = AptRepo::new(
        &fixture_packages(),
        Faults {
            expired: true,
            ..Faults::default()
        },
    );
    let work = Work::new();
    let etc = work.dir.path().join("etc/apt");
    std::fs::create_dir_all(etc.join("apt.conf.d")).unwrap();
    let apt_config = work.dir.path().join("apt.conf");
    std::fs::write(&apt_config, format!("Dir::Etc \"{}\";\n", etc.display())).unwrap();
    let sources = |options: &str| {
        std::fs::write(
            etc.join("sources.list"),
            format!("deb {options}{} stable main\n", repo.url),
        )
        .unwrap()
    };
    let named = repo.recipe(work.dir.path(), "app");
    let host = work.dir.path().join("host.yaml");
    std::fs::write(
        &host,
        std::fs::read_to_string(&named)
            .unwrap()
            .replace(&format!("mirror: {}", repo.url), "mirror: host"),
    )
    .unwrap();
    // Each build resolves: a build from a lock checks no expiry.
    let build = |recipe: &Path, out: &str| {
        let _ = std::fs::remove_file(recipe.with_extension("lock"));
        work.cairn("build")
            .env("APT_CONFIG", &apt_config)
            .arg(recipe)
            .arg("-o")
            .arg(work.out(out))
            .arg("--json")
            .output()
            .unwrap()
    };
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // The host checks: refused.
    sources("");
    let refused = build(&host, "checked");
    assert!(
        !refused.status.success() && stderr(&refused).contains("expired on Thu, 01 Jan 2015"),
        "{}",
        stderr(&refused)
    );

    // The host does not, in a file of apt.conf.d (a later `yes` in apt.conf would win).
    let lagging = etc.join("apt.conf.d/99lagging-mirror");
    std::fs::write(&lagging, "Acquire {\n  Check-Valid-Until \"false\";\n};\n").unwrap();
    let used = build(&host, "host-wide");
    assert!(used.status.success(), "{}", stderr(&used));
    let report: Value = serde_json::from_slice(&used.stdout).unwrap();
    let warning = format!(
        "repository `test`: its Release expired on Thu, 01 Jan 2015 00:00:00 UTC; used anyway, as the host's apt configuration says (`Acquire::Check-Valid-Until` false in {})",
        lagging.display()
    );
    assert!(
        report["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w == &warning),
        "{report:#}"
    );
    assert!(stderr(&used).contains(&warning), "{}", stderr(&used));
    assert_eq!(
        file_in_layout(&work.out("host-wide/pkgs"), "usr/bin/app"),
        "#!/bin/sh\necho app\n"
    );
    std::fs::write(
        etc.join("apt.conf"),
        "Acquire::Check-Valid-Until \"yes\";\n",
    )
    .unwrap();
    assert!(!build(&host, "main-file-wins").status.success());

    // For one source only.
    std::fs::remove_file(etc.join("apt.conf")).unwrap();
    std::fs::remove_file(&lagging).unwrap();
    sources("[check-valid-until=no] ");
    let used = build(&host, "one-source");
    assert!(
        stderr(&used).contains(&format!(
            "(`check-valid-until=no` on the host's apt source {})",
            repo.url
        )),
        "{}",
        stderr(&used)
    );

    // The recipe's own mirror: checked.
    let named = build(&named, "named");
    assert!(
        !named.status.success() && stderr(&named).contains("expired on Thu, 01 Jan 2015"),
        "{}",
        stderr(&named)
    );
}

#[test]
fn the_lock_round_trips_and_locked_builds_are_identical_and_work_offline() {
    let mut repo = AptRepo::new(&fixture_packages(), Faults::default());
    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "app");
    let locked = run_ok(work.cairn("lock").arg(&recipe));
    let listing = String::from_utf8_lossy(&locked.stdout);
    assert!(
        listing.contains("deb:libfoo\t2.0-1 amd64\tsha256:"),
        "{listing}"
    );
    let lock_before = std::fs::read(recipe.with_extension("lock")).unwrap();

    let a = work.build(&recipe, "a", &["--locked"]);
    let b = work.build(&recipe, "b", &["--locked"]);
    assert_eq!(a["manifest_digest"], b["manifest_digest"]);
    assert_eq!(
        std::fs::read(recipe.with_extension("lock")).unwrap(),
        lock_before
    );

    // Everything is cached: no server needed.
    repo.stop_server();
    let c = work.build(&recipe, "c", &["--locked", "--offline"]);
    assert_eq!(a["manifest_digest"], c["manifest_digest"]);

    // A cache entry that rotted is noticed, not used.
    let pin = lock_of(&recipe)["packages"]["packages"]["libfoo"]["sha256"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let cached = work.cache().join("cairn/debs").join(&pin);
    std::fs::write(&cached, b"rotten").unwrap();
    let err = work.build_err(&recipe, &["--locked", "--offline"]);
    assert!(err.contains("package `libfoo` 2.0-1"), "{err}");
    assert!(err.contains("--offline forbids downloading it"), "{err}");

    // The lock is for this request only.
    std::fs::write(
        &recipe,
        std::fs::read_to_string(&recipe)
            .unwrap()
            .replace("packages: [app]", "packages: [app, libfoo]"),
    )
    .unwrap();
    let err = work.build_err(&recipe, &["--locked"]);
    assert!(err.contains("do not match the recipe"), "{err}");
}

#[test]
fn lock_keeps_package_pins_until_update_which_reports_the_new_versions_as_diff_does() {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "app");
    run_ok(work.cairn("lock").arg(&recipe));
    let lock_file = recipe.with_extension("lock");
    let before = work.dir.path().join("before.lock");
    std::fs::copy(&lock_file, &before).unwrap();

    // The mirror publishes a fixed libfoo.
    let mut updated = fixture_packages();
    updated.push(pkg("libfoo", "2.0-2", ""));
    repo.republish(&updated);

    // A plain `cairn lock` keeps the pins, which still match the recipe.
    let kept = run_ok(work.cairn("lock").arg(&recipe));
    assert!(
        String::from_utf8_lossy(&kept.stderr).contains("unchanged:"),
        "{}",
        String::from_utf8_lossy(&kept.stderr)
    );
    assert_eq!(
        std::fs::read(&lock_file).unwrap(),
        std::fs::read(&before).unwrap()
    );

    // `--update` takes the fix and says so.
    let update = run_ok(work.cairn("lock").arg(&recipe).arg("--update"));
    let said = String::from_utf8_lossy(&update.stderr);
    assert!(
        said.contains("changed deb:libfoo: 2.0-1 amd64 -> 2.0-2 amd64"),
        "{said}"
    );
    assert!(
        said.contains("changed repository test: stable (InRelease sha256:"),
        "{said}"
    );
    assert!(
        !said.contains("deb:app"),
        "unchanged packages are not listed: {said}"
    );
    assert_eq!(
        lock_of(&recipe)["packages"]["packages"]["libfoo"]["version"],
        "2.0-2"
    );

    // `cairn diff` of the two locks lists the same, and exits 1; of a lock with itself, 0.
    let listed = work.diff_locks(&before, &lock_file);
    assert!(
        listed.contains("deb:libfoo: 2.0-1 amd64 -> 2.0-2 amd64\n"),
        "{listed}"
    );
    let json = work
        .cairn("diff")
        .arg(&before)
        .arg(&lock_file)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(json.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["identical"], false);
    assert!(json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["what"] == "deb:libfoo"
            && c["old"] == "2.0-1 amd64"
            && c["new"] == "2.0-2 amd64"));
    let same = work
        .cairn("diff")
        .arg(&before)
        .arg(&before)
        .output()
        .unwrap();
    assert_eq!(same.status.code(), Some(0));
    let missing = work
        .cairn("diff")
        .arg(&before)
        .arg(work.dir.path().join("missing.lock"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn a_lock_that_disagrees_with_the_signed_metadata_is_refused() {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let work = Work::new();
    let recipe = repo.recipe(work.dir.path(), "app");
    run_ok(work.cairn("lock").arg(&recipe));
    let lock_path = recipe.with_extension("lock");
    let good = std::fs::read_to_string(&lock_path).unwrap();
    let lock: Value = serde_json::from_str(&good).unwrap();

    // Another signer than the InRelease really has.
    let signer = lock["packages"]["repositories"]["test"]["signed_by"]
        .as_str()
        .unwrap();
    std::fs::write(&lock_path, good.replace(signer, &"A".repeat(40))).unwrap();
    let err = work.build_err(&recipe, &["--locked"]);
    assert!(
        err.contains(&format!("its InRelease is signed by {signer}")),
        "{err}"
    );

    // An index digest the signed InRelease does not give.
    let index = lock["packages"]["packages"]["app"]["index_sha256"]
        .as_str()
        .unwrap();
    let forged = format!("sha256:{}", "0".repeat(64));
    std::fs::write(&lock_path, good.replacen(index, &forged, 1)).unwrap();
    let err = work.build_err(&recipe, &["--locked"]);
    assert!(
        err.contains("the signed InRelease gives that index as"),
        "{err}"
    );

    // A package from a repository the lock does not list.
    let edited = good.replacen(
        "\"repository\": \"test\"",
        "\"repository\": \"elsewhere\"",
        1,
    );
    assert_ne!(edited, good);
    std::fs::write(&lock_path, edited).unwrap();
    let err = work.build_err(&recipe, &["--locked"]);
    assert!(err.contains("which the lock does not list"), "{err}");
}

#[test]
fn images_with_overlapping_package_sets_share_layers() {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let work = Work::new();
    let layers_of = |packages: &str, out: &str| -> Vec<String> {
        let dir = work.dir.path().join(out);
        std::fs::create_dir_all(&dir).unwrap();
        let recipe = repo.recipe(&dir, packages);
        let text = std::fs::read_to_string(&recipe)
            .unwrap()
            .replace("max_layers: 3", "max_layers: 64");
        std::fs::write(&recipe, text).unwrap();
        let report = work.build(&recipe, out, &[]);
        report["layers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["name"].as_str().unwrap().starts_with("packages-"))
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    // app pulls in app-data, libfoo and postfix-lite: one layer each here.
    let all = layers_of("app", "all");
    let some = layers_of("postfix-lite, libfoo", "some");
    assert_eq!((all.len(), some.len()), (4, 2));
    for layer in &some {
        assert!(all.contains(layer), "{layer} is not shared: {all:?}");
    }
    // `cairn diff` names the packages that differ, with their versions.
    let diff = work
        .cairn("diff")
        .arg(work.out("some/pkgs"))
        .arg(work.out("all/pkgs"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(
        text.contains("source deb:app: - -> 1.0-1 sha256:"),
        "{text}"
    );
    assert!(!text.contains("source deb:libfoo"), "{text}");
}
