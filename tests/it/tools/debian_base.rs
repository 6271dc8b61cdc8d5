//! Packages on a base image that has packages installed: its dpkg status (the one
//! file of Debian images, the per-package files of distroless ones) is honoured as
//! apt honours what is installed, through the real binary and the signed test
//! repository (`common::apt`).

use super::debian::{lock_of, Work};
use crate::common::apt::{base_image_with, fixture_packages, on_base, pkg, AptRepo, Faults};
use crate::common::{layer_blobs, run_ok, validated_sboms};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `libfoo` 2.0-1 installed, as Debian's `/var/lib/dpkg/status` lists it, beside a
/// package whose configuration files alone are left (not installed).
const DEBIAN_STATUS: &str = "Package: libfoo\nStatus: install ok installed\nVersion: 2.0-1\nArchitecture: amd64\n\nPackage: postfix-lite\nStatus: deinstall ok config-files\nVersion: 3.0-1\nArchitecture: amd64\n";
/// A mail transport agent as distroless lists it: its control stanza, no `Status`.
const DISTROLESS_MTA: &str =
    "Package: exim-lite\nVersion: 4.0-1\nArchitecture: amd64\nProvides: mail-transport-agent\n";

/// The signed test repository of the fixture packages, and a work directory with a
/// base image of `files` and a recipe installing `packages` on it.
fn on_base_with(files: &[(&str, &str)], packages: &str) -> (AptRepo, Work, PathBuf) {
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let work = Work::new();
    base_image_with(work.dir.path(), files);
    let recipe = repo.recipe(work.dir.path(), packages);
    on_base(&recipe);
    (repo, work, recipe)
}

/// The names of the members of the layers of the layout's image above the
/// `below` lowest.
fn members_above(layout: &Path, below: usize) -> Vec<String> {
    layer_blobs(layout)[below..]
        .iter()
        .flat_map(|blob| {
            let listed = run_ok(Command::new("tar").arg("-tzf").arg(blob));
            String::from_utf8_lossy(&listed.stdout)
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `app` needs `libfoo (>= 1.5)`, which the base's `status` has at 2.0-1, and `mta |
/// mail-transport-agent`, which the base's `status.d/exim-lite` provides: only `app`
/// and `app-data` are installed, the lock says what the base gave, the SBOMs list no
/// package twice, and the image rebuilds to the same digest from the lock.
#[test]
fn dependencies_the_base_has_installed_are_not_installed_again() {
    let (_repo, work, recipe) = on_base_with(
        &[
            ("/var/lib/dpkg/status", DEBIAN_STATUS),
            ("/var/lib/dpkg/status.d/exim-lite", DISTROLESS_MTA),
        ],
        "app",
    );

    let first = work.build(&recipe, "a", &[]);
    let lock = lock_of(&recipe);
    let packages = &lock["packages"];
    let installed: Vec<&String> = packages["packages"].as_object().unwrap().keys().collect();
    assert_eq!(installed, ["app", "app-data"], "{lock:#}");
    assert_eq!(
        packages["from_base"],
        serde_json::json!({ "exim-lite": "4.0-1", "libfoo": "2.0-1" })
    );
    assert_eq!(packages["base"], lock["base"]["digest"], "{lock:#}");

    let layout = work.out("a/pkgs");
    let base_layers = layer_blobs(&work.out("images/base")).len();
    let members = members_above(&layout, base_layers);
    assert!(members.iter().any(|m| m == "usr/bin/app"), "{members:?}");
    for not_installed in ["libfoo", "postfix-lite", "exim-lite"] {
        assert!(
            !members.iter().any(|m| m.contains(not_installed)),
            "{not_installed} in {members:?}"
        );
    }

    let (spdx, cdx) = validated_sboms(&work.out("a"), "pkgs");
    let spdx_names: Vec<&str> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let cdx_names: Vec<&str> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for names in [&spdx_names, &cdx_names] {
        assert_eq!(
            names.iter().filter(|n| **n == "app").count(),
            1,
            "{names:?}"
        );
        assert!(!names.contains(&"libfoo"), "{names:?}");
    }

    let again = work.build(&recipe, "b", &["--locked"]);
    assert_eq!(first["manifest_digest"], again["manifest_digest"]);
}

/// The base has `libfoo` 3.0-1 (as distroless lists it), the repository only 2.0-1.
/// Requesting `libfoo` keeps the base's, as `apt install` would ("already the newest
/// version"); a package that needs `libfoo (<< 3)` would downgrade it: an error naming
/// both versions and what needed the older one, with what to do.
#[test]
fn a_package_the_recipe_would_downgrade_is_an_error_naming_both_versions() {
    let mut packages = fixture_packages();
    packages.push(pkg("legacy", "1.0-1", "Depends: libfoo (<< 3)"));
    let repo = AptRepo::new(&packages, Faults::default());
    let work = Work::new();
    base_image_with(
        work.dir.path(),
        &[(
            "/var/lib/dpkg/status.d/libfoo",
            "Package: libfoo\nVersion: 3.0-1\nArchitecture: amd64\n",
        )],
    );
    let recipe = repo.recipe(work.dir.path(), "libfoo");
    on_base(&recipe);
    work.build(&recipe, "kept", &[]);
    let lock = lock_of(&recipe);
    assert_eq!(
        lock["packages"]["packages"],
        serde_json::json!({}),
        "{lock:#}"
    );
    assert_eq!(
        lock["packages"]["from_base"],
        serde_json::json!({ "libfoo": "3.0-1" })
    );

    let recipe = repo.recipe(work.dir.path(), "legacy");
    on_base(&recipe);
    let stderr = work.build_err(&recipe, &[]);
    assert!(
        stderr.contains(
            "package `libfoo` is installed in the base image at 3.0-1; the recipe's \
             repositories have it only at 2.0-1"
        ) && stderr.contains("needed by legacy 1.0-1"),
        "{stderr}"
    );
    // At the request, with what to do.
    assert!(
        stderr.contains("packages: [legacy]") && stderr.contains("-security"),
        "{stderr}"
    );
}

/// A dpkg status that cannot be read is an error at the recipe's `base:`, naming the
/// file and the package, not a base read as having nothing installed.
#[test]
fn an_unreadable_dpkg_status_in_the_base_is_an_error_naming_the_file() {
    let (_repo, work, recipe) = on_base_with(
        &[(
            "/var/lib/dpkg/status",
            "Package: libfoo\nStatus: install ok installed\nVersion: 2.0 1\nArchitecture: amd64\n",
        )],
        "app",
    );
    let stderr = work.build_err(&recipe, &[]);
    assert!(
        stderr.contains(
            "the base image's dpkg status /var/lib/dpkg/status cannot be read: package \
             `libfoo` has an invalid version `2.0 1`"
        ) && stderr.contains("base: { layout: images/base }"),
        "{stderr}"
    );
}

/// A package that `Conflicts` with what the base has installed, through the base's
/// `Provides`, cannot go on top of it (a layer cannot remove the base's package, as apt
/// would): an error at `packages:` naming both packages and versions and what to do.
#[test]
fn a_package_conflicting_with_the_bases_is_an_error_naming_both() {
    let mut packages = fixture_packages();
    packages.push(pkg(
        "sendmail-lite",
        "3.0-1",
        "Provides: mail-transport-agent\nConflicts: mail-transport-agent",
    ));
    let repo = AptRepo::new(&packages, Faults::default());
    let work = Work::new();
    base_image_with(
        work.dir.path(),
        &[("/var/lib/dpkg/status.d/exim-lite", DISTROLESS_MTA)],
    );
    let recipe = repo.recipe(work.dir.path(), "sendmail-lite");
    on_base(&recipe);
    let stderr = work.build_err(&recipe, &[]);
    assert!(
        stderr.contains(
            "`sendmail-lite` 3.0-1 cannot be installed on the base image, which has \
             `exim-lite` 4.0-1: `sendmail-lite` declares `Conflicts`/`Breaks: mail-transport-agent`"
        ) && stderr.contains("packages: [sendmail-lite]")
            && stderr.contains("a layer cannot remove the base's `exim-lite`"),
        "{stderr}"
    );
}
