//! Builds killed (SIGKILL, through `strace` fault injection) at each rename they make:
//! the layout swap, the side files, the layer cache's stores. After every kill, side
//! files present in the output describe the layout there; after the next build,
//! nothing the killed build wrote is left behind (no `.<name>.tmp-*` in the output, no
//! file in the cache's `tmp/`), and the side files match the new layout.

use crate::common::{cairn, keygen, run_ok};
use cairn::digest::Sha256Digest;
use std::fs;
use std::path::Path;

/// A signed image with one directory source whose content the caller varies, so that
/// every build makes another image (and other side files).
struct Project {
    dir: tempfile::TempDir,
    key: std::path::PathBuf,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("app")).unwrap();
        fs::write(
            dir.path().join("recipe.yaml"),
            "cairn: 1\nname: crashy\nepoch: 1700000000\nsources:\n  app: { path: app }\n\
             layers:\n  - name: app\n    contents:\n      - copy: app\n        to: /opt/app\n",
        )
        .unwrap();
        let (key, _, _) = keygen(dir.path(), "signer");
        Project { dir, key }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    /// `cairn build` of the recipe into `out/`, signed, with the cache in `cache/`,
    /// of a source whose content is that of `generation` (pinned afresh).
    fn build(&self, generation: usize) -> std::process::Command {
        let _ = fs::remove_file(self.path("recipe.lock"));
        fs::write(
            self.path("app/version"),
            format!("build {generation}\n").repeat(5000),
        )
        .unwrap();
        let mut cmd = cairn();
        cmd.env_remove("CAIRN_NO_CACHE")
            .arg("build")
            .arg(self.path("recipe.yaml"))
            .arg("-o")
            .arg(self.path("out"))
            .arg("--sign-key")
            .arg(&self.key)
            .arg("--cache-dir")
            .arg(self.path("cache"))
            .arg("-q");
        cmd
    }
}

/// Runs `build` under strace, killed at its `nth` rename (any thread); whether the
/// build finished before that.
pub(super) fn killed_at_rename(build: &std::process::Command, nth: usize) -> bool {
    let mut traced = std::process::Command::new("strace");
    traced
        .args(["-f", "-qq", "-o", "/dev/null"])
        .arg("-e")
        .arg("trace=rename,renameat,renameat2")
        .arg("-e")
        .arg(format!(
            "inject=rename,renameat,renameat2:signal=KILL:when={nth}"
        ))
        .arg(build.get_program())
        .args(build.get_args());
    for (key, value) in build.get_envs() {
        match value {
            Some(value) => traced.env(key, value),
            None => traced.env_remove(key),
        };
    }
    let status = traced.output().unwrap().status;
    !status.success()
}

/// Asserts that each side file in `out` holds what the layout there names: each SBOM
/// is a blob of the layout, and each line of the attestations file too.
fn assert_side_files_describe_the_layout(out: &Path) {
    let blobs = out.join("crashy/blobs/sha256");
    let in_layout = |bytes: &[u8]| blobs.join(Sha256Digest::of(bytes).hex()).is_file();
    for name in ["crashy.spdx.json", "crashy.cdx.json"] {
        if let Ok(bytes) = fs::read(out.join(name)) {
            assert!(in_layout(&bytes), "{name} describes another build's image");
        }
    }
    if let Ok(text) = fs::read_to_string(out.join("crashy.intoto.jsonl")) {
        for line in text.lines() {
            assert!(
                in_layout(line.as_bytes()),
                "crashy.intoto.jsonl holds an envelope of another build"
            );
        }
    }
}

/// The names in `dir`, without the lock files (which stay by design).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".crashy.lock" && n != ".store.lock")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_build_killed_at_any_rename_leaves_no_temporaries_and_no_mismatched_side_files() {
    let project = Project::new();
    let out = project.path("out");
    let cache_tmp = project.path("cache/layers-v1/tmp");
    let mut generation = 0;
    let mut kills = 0;
    // A finished build first: every later kill has a previous output to damage.
    generation += 1;
    run_ok(&mut project.build(generation));
    for nth in 1.. {
        generation += 1;
        if !killed_at_rename(&project.build(generation), nth) {
            break;
        }
        kills += 1;
        assert_side_files_describe_the_layout(&out);
        run_ok(&mut project.build(generation));
        let leftovers: Vec<String> = names(&out)
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "after kill {nth}: {leftovers:?}");
        assert!(
            names(&cache_tmp).is_empty(),
            "after kill {nth}: {:?}",
            names(&cache_tmp)
        );
        assert_eq!(
            names(&out),
            [
                "crashy",
                "crashy.cdx.json",
                "crashy.intoto.jsonl",
                "crashy.spdx.json"
            ]
        );
        assert_side_files_describe_the_layout(&out);
    }
    assert!(kills >= 5, "only {kills} renames to kill at");
}
