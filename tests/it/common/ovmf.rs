//! OVMF, the UEFI firmware of Debian's `ovmf`, with Secure Boot on: a variable store
//! with only the repository's test certificate enrolled (`virt-fw-vars` from PyPI's
//! virt-firmware writes PK, KEK and db into a copy of OVMF's empty store), and the QEMU
//! command line that boots a raw disk with it under TCG.

use super::{python_tool, repo_root, run_ok};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The secure-boot build of OVMF needs SMM, which QEMU emulates (TCG) on q35.
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
const OVMF_EMPTY_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// The repository's test pair, key and certificate (recipes/keys/: public, never
/// trust it).
pub fn test_keys() -> (PathBuf, PathBuf) {
    let keys = repo_root().join("recipes/keys");
    (
        keys.join("secure-boot-test.key"),
        keys.join("secure-boot-test.crt"),
    )
}

/// An OVMF variable store in `dir` with Secure Boot on and `cert` as PK, KEK and the
/// one db entry (no Microsoft keys).
pub fn enrolled_vars(dir: &Path, cert: &Path) -> PathBuf {
    let vars = dir.join("OVMF_VARS_4M.enrolled.fd");
    let owner = "2f287522-266f-5d74-91f5-d77744b62645";
    let cert = cert.to_str().unwrap();
    run_ok(
        Command::new(python_tool("virt-fw-vars"))
            .args(["--input", OVMF_EMPTY_VARS, "--output"])
            .arg(&vars)
            .args(["--set-pk", owner, cert, "--add-kek", owner, cert])
            .args(["--add-db", owner, cert, "--secure-boot"]),
    );
    vars
}

/// `qemu-system-x86_64` booting the raw disk `disk` (in snapshot mode: the guest's
/// writes are dropped) with OVMF, Secure Boot on, and the variable store `vars`, which
/// the guest may write (give it a copy). No network; `-no-reboot`: QEMU exits when the
/// guest resets. Without `-serial` ([`super::qemu::Qemu::start`] adds it).
pub fn secure_boot_qemu(disk: &Path, vars: &Path) -> Command {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", "tcg", "-machine", "q35,smm=on", "-m", "512"])
        .args(["-global", "driver=cfi.pflash01,property=secure,value=on"])
        .args(["-display", "none", "-no-reboot", "-monitor", "none"])
        .args(["-nic", "none"])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=none,id=root,snapshot=on",
            disk.display()
        ))
        .args(["-device", "nvme,drive=root,serial=cairn"]);
    qemu
}
