//! Error quality for problems found while building (sources, pins, layer rules,
//! hostile archives): one failing recipe per directory in `fixtures/build-errors/`,
//! its rendered error snapshotted. A fixture may hold an `args` file with extra
//! `cairn build` arguments, one per line.

use crate::common::*;

#[test]
fn each_bad_build_fails_with_a_located_error_and_a_hint() {
    let root = repo_root();
    let mut cases: Vec<_> = std::fs::read_dir(root.join("fixtures/build-errors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "fixtures/build-errors is missing cases");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let out = tempfile::tempdir().unwrap();
        let args = std::fs::read_to_string(case.join("args")).unwrap_or_default();
        let recipe = format!("fixtures/build-errors/{name}/recipe.yaml");
        let (code, stderr) = run_err(
            cairn()
                .current_dir(&root)
                .arg("build")
                .args(args.lines())
                .arg(&recipe)
                .arg("-o")
                .arg(out.path()),
        );
        assert_eq!(code, 1, "{name}: exit code");
        assert!(
            stderr.contains(&format!("--> {recipe}:")) && stderr.contains("= help:"),
            "{name}: the error must point into the recipe and carry a hint:\n{stderr}"
        );
        // Nothing was published and nothing half-written was left behind.
        let left: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "{name}: output directory holds {left:?}");
        // Sources are read (and named) where they resolve, an absolute path: the
        // snapshots hold it relative to the repository, as on any machine.
        let stderr = stderr.replace(&format!("{}/", root.display()), "");
        insta::assert_snapshot!(format!("build-error-{name}"), stderr);
    }
    assert!(
        !root
            .join("fixtures/build-errors/unpinned-locked/recipe.lock")
            .exists(),
        "a --locked build must never write the lock file"
    );
}
