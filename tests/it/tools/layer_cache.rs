//! The layer cache shared through a registry (`--cache-registry`), against a real
//! `docker-registry`: a second runner gets every layer from it.

use crate::common::registry::{Registry, RegistryAuth};
use crate::common::{cairn, run_ok};
use crate::layer_cache::{build_cached, cached, Project};
use std::path::Path;

#[test]
fn a_second_runner_gets_its_layers_from_the_registry_cache() {
    let registry = Registry::start(RegistryAuth::None);
    let cache_ref = format!("{}/ci/cairn-cache", registry.host);
    let project = Project::new("zstd");
    let build_with = |cache: &Path, out: &str| -> serde_json::Value {
        build_cached(
            &project.recipe(),
            &project.path(out),
            &[
                "--cache-dir",
                cache.to_str().unwrap(),
                "--cache-registry",
                &cache_ref,
                "--insecure",
            ],
        )
    };
    let first_runner = tempfile::tempdir().unwrap();
    let first = build_with(first_runner.path(), "runner-1");
    assert!(
        cached(&first).iter().all(|(_, c)| !c),
        "{:?}",
        cached(&first)
    );
    let no_registry_warning = |report: &serde_json::Value| {
        let warnings = report["warnings"].to_string();
        assert!(!warnings.contains("registry"), "{warnings}");
    };
    no_registry_warning(&first);

    let second_runner = tempfile::tempdir().unwrap();
    let second = build_with(second_runner.path(), "runner-2");
    assert!(
        cached(&second).iter().all(|(_, c)| *c),
        "{:?}",
        cached(&second)
    );
    no_registry_warning(&second);
    let cold = project.build(None);
    assert_eq!(second["manifest_digest"], cold["manifest_digest"]);
    assert_eq!(first["manifest_digest"], cold["manifest_digest"]);
    // The layers came into the second runner's local cache.
    let out = run_ok(
        cairn()
            .args(["cache", "info", "--json", "--cache-dir"])
            .arg(second_runner.path()),
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["entries"], 3);
}
