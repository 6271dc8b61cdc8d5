//! The reproducibility contract: the same recipe and input bytes give the same layout,
//! bit for bit, whatever the directory, working directory, umask, TZ, LANG, file
//! creation order, input mtimes and owners, and thread count.

use crate::common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Copies `from` to `to` creating entries in reverse order, then scrambles the
/// metadata cairn must ignore: mtimes, non-exec mode bits, and (as root) owners.
fn copy_scrambled(from: &Path, to: &Path) {
    let mut entries: Vec<_> = walkdir::WalkDir::new(from)
        .into_iter()
        .map(|e| e.unwrap())
        .collect();
    entries.reverse();
    for (i, entry) in entries.iter().enumerate() {
        let dest = to.join(entry.path().strip_prefix(from).unwrap());
        let ft = entry.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            continue;
        }
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &dest).unwrap();
            continue;
        }
        std::fs::copy(entry.path(), &dest).unwrap();
        let exec = entry.metadata().unwrap().permissions().mode() & 0o100 != 0;
        let mode = if exec { 0o700 } else { 0o600 } | if i % 2 == 0 { 0o066 } else { 0 };
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).unwrap();
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 * i as u64 + 7);
        let f = std::fs::File::options().write(true).open(&dest).unwrap();
        f.set_modified(when).unwrap();
        drop(f);
        if unsafe_is_root() {
            std::os::unix::fs::chown(&dest, Some(1234 + i as u32), Some(4321)).unwrap();
        }
    }
}

fn unsafe_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn build_in(cwd: &Path, recipe: &Path, out: &Path, env: &[(&str, &str)], umask: &str, jobs: &str) {
    let mut cmd = Command::new("sh");
    cmd.current_dir(cwd)
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .args(["build", "--locked", "--quiet", "--no-cache", "--jobs", jobs])
        .arg(recipe)
        .arg("-o")
        .arg(out)
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_ok(&mut cmd);
}

#[test]
fn layouts_are_identical_under_varied_conditions() {
    let root = repo_root();
    let first = tempfile::tempdir().unwrap();
    build_in(
        &root,
        Path::new("recipes/hello.yaml"),
        first.path(),
        &[],
        "022",
        "1",
    );

    let elsewhere = tempfile::tempdir().unwrap();
    let copied = elsewhere.path().join("some/deeper/place");
    copy_scrambled(&root.join("recipes"), &copied);
    let second = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    build_in(
        cwd.path(),
        &copied.join("hello.yaml"),
        second.path(),
        &[
            ("TZ", "Pacific/Kiritimati"),
            ("LANG", "tr_TR.UTF-8"),
            ("LC_ALL", "tr_TR.UTF-8"),
        ],
        "077",
        "4",
    );

    let a = tree_bytes(&first.path().join("hello"));
    let b = tree_bytes(&second.path().join("hello"));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, bytes) in &a {
        assert!(bytes == &b[path], "{path} differs between the two builds");
    }
    // Directory sources are pinned in the lock, so the scrambled copy must not need a
    // re-pin: the `--locked` build above accepted the committed lock, and pinning the
    // copy afresh (`cairn lock`, with its lock file removed) writes the committed lock
    // back byte for byte. Order, mtimes, modes, owners and place reach no source digest.
    let lock = copied.join("hello.lock");
    std::fs::remove_file(&lock).unwrap();
    run_ok(cairn().arg("lock").arg(copied.join("hello.yaml")));
    assert!(
        std::fs::read(root.join("recipes/hello.lock")).unwrap() == std::fs::read(&lock).unwrap(),
        "`cairn lock` on the scrambled copy wrote a lock unlike recipes/hello.lock:\n{}",
        std::fs::read_to_string(&lock).unwrap()
    );
}

#[test]
fn source_date_epoch_is_the_fallback_and_the_recipe_epoch_wins() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write_recipe(
        dir.path(),
        "r.yaml",
        "cairn: 1\nname: t\nlayers:\n  - name: l\n    contents:\n      - file: /x\n        content: hi\n",
    );
    let created = |env: Option<&str>| {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = cairn();
        cmd.args(["build", "--json", "-o"])
            .arg(out.path())
            .arg(&recipe);
        if let Some(v) = env {
            cmd.env("SOURCE_DATE_EPOCH", v);
        }
        let report: serde_json::Value = serde_json::from_slice(&run_ok(&mut cmd).stdout).unwrap();
        report["epoch"].as_u64().unwrap()
    };
    assert_eq!(created(None), 0);
    assert_eq!(created(Some("1234")), 1234);
    std::fs::write(
        &recipe,
        "cairn: 1\nname: t\nepoch: 99\nlayers:\n  - name: l\n    contents:\n      - file: /x\n        content: hi\n",
    )
    .unwrap();
    assert_eq!(created(Some("1234")), 99);
}
