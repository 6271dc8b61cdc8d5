//! A build into a full file system (a small tmpfs the test mounts, as root) fails with
//! the operating system's reason said once, not once per error that wraps it.

use crate::common::*;
use std::path::PathBuf;
use std::process::Command;

/// A tmpfs of `size` mounted on a new directory; unmounted when dropped.
struct SmallTmpfs {
    _dir: tempfile::TempDir,
    mount_point: PathBuf,
}

impl SmallTmpfs {
    fn mount(size: &str) -> SmallTmpfs {
        let dir = tempfile::tempdir().unwrap();
        let mount_point = dir.path().join("full");
        std::fs::create_dir(&mount_point).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(&mount_point),
        );
        SmallTmpfs {
            _dir: dir,
            mount_point,
        }
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount_point).status();
    }
}

#[test]
fn a_full_disk_is_reported_once() {
    let full = SmallTmpfs::mount("16k");
    let (code, stderr) = run_err(
        cairn()
            .arg("build")
            .arg(repo_root().join("recipes/hello.yaml"))
            .args(["--locked", "--quiet", "-o"])
            .arg(&full.mount_point),
    );
    assert_eq!(code, 1);
    assert_eq!(
        stderr.matches("No space left on device").count(),
        1,
        "the reason should be said once:\n{stderr}"
    );
}
