//! Helpers shared by the integration tests: run the real `cairn` binary, read layouts.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `cairn` command with a clean, fixed environment (no SOURCE_DATE_EPOCH leaking in
/// from the caller's shell).
pub fn cairn() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// Runs the command, panicking with its stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the command, expecting failure; returns stderr.
pub fn run_err(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("spawn");
    assert!(
        !out.status.success(),
        "{cmd:?} unexpectedly succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Builds `recipe` into `out` with `--json` and returns the parsed report.
pub fn build_json(recipe: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let output = run_ok(
        cairn()
            .arg("build")
            .arg(recipe)
            .arg("-o")
            .arg(out)
            .arg("--json")
            .args(extra),
    );
    serde_json::from_slice(&output.stdout).expect("--json prints JSON")
}

/// Every file below `dir` with its bytes (symlinks as `-> target`), for comparing two
/// layouts bit for bit.
pub fn tree_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let ft = entry.file_type();
        let value = if ft.is_symlink() {
            format!("-> {}", std::fs::read_link(entry.path()).unwrap().display()).into_bytes()
        } else if ft.is_file() {
            std::fs::read(entry.path()).unwrap()
        } else {
            b"<dir>".to_vec()
        };
        out.insert(rel, value);
    }
    out
}

/// Copies a directory tree (files, dirs, symlinks), keeping the executable bit.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let dest = to.join(entry.path().strip_prefix(from).unwrap());
        let ft = entry.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Writes `text` as a recipe file in `dir` and returns its path.
pub fn write_recipe(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A tool from the Python validators virtualenv that `cargo xtask test` installs
/// (`$CAIRN_TEST_VENV`, else `target/test-venv`). Panics, never skips, if it is missing.
pub fn python_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("CAIRN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv"));
    let tool = venv.join("bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run `cargo xtask test`, which installs the Python validators",
        tool.display()
    );
    tool
}
