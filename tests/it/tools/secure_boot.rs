//! Secure Boot, for real: a `boot: uefi` disk whose unified kernel image cairn signs
//! (Authenticode, natively) boots under OVMF with Secure Boot on and only the test
//! certificate enrolled (`virt-fw-vars` from PyPI's virt-firmware writes PK, KEK and
//! db into a copy of OVMF's empty variable store); the same image with one byte changed,
//! and the image unsigned, are refused by the firmware; `sbverify` (Debian's
//! sbsigntool) agrees. Signing is deterministic: two builds give the same disk.

use super::vm::{kernel, make_uefi, sha256_hex, write_vm_recipe, MOTD};
use crate::common::ovmf::{enrolled_vars, secure_boot_qemu, test_keys};
use crate::common::qemu::Qemu;
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BOOT_TIMEOUT: Duration = Duration::from_secs(180);
/// What OVMF's boot manager prints when the firmware refuses an image.
const REFUSED: &str = "Access Denied";

/// Boots `disk` (raw) under OVMF with the variable store `vars` (copied: the guest
/// may write it). Returns the serial console once the guest powers off, or once the
/// firmware has refused the image (QEMU is then stopped by its PID, as it is past the
/// timeout).
pub(super) fn boot_secure(disk: &Path, vars: &Path) -> String {
    let run = tempfile::tempdir().unwrap();
    let own_vars = run.path().join("vars.fd");
    std::fs::copy(vars, &own_vars).unwrap();
    let mut vm = Qemu::start(
        secure_boot_qemu(disk, &own_vars),
        &run.path().join("serial.log"),
    )
    .expect("qemu-system-x86_64 runs (TEST_TOOLS: qemu-system-x86)");
    loop {
        if vm.exited() {
            return vm.console();
        }
        let text = vm.console();
        if text.contains(REFUSED) || vm.elapsed() > BOOT_TIMEOUT {
            return text;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The unified kernel image in the ESP of raw disk `disk`, and where the ESP is.
pub(super) fn uki_of(disk: &[u8], scratch: &Path) -> (Vec<u8>, std::ops::Range<usize>) {
    let (_, partitions) =
        cairn::disk::gpt::read_partitions(&mut std::io::Cursor::new(disk)).unwrap();
    let esp = partitions.iter().find(|p| p.name == "esp").unwrap();
    let range = esp.offset as usize..(esp.offset + esp.size) as usize;
    let fat = scratch.join("esp.fat");
    std::fs::write(&fat, &disk[range.clone()]).unwrap();
    let uki = cairn::disk::esp::read(&fat, cairn::disk::esp::BOOT_PATH).unwrap();
    std::fs::remove_file(&fat).unwrap();
    (uki, range)
}

/// `disk` with its ESP written anew around `uki` (same size: the image is as long).
pub(super) fn with_uki(
    disk: &[u8],
    esp: std::ops::Range<usize>,
    uki: &[u8],
    scratch: &Path,
) -> Vec<u8> {
    let fat = scratch.join("esp-new.fat");
    cairn::disk::esp::write(&fat, esp.len() as u64, 0x1234_5678, uki).unwrap();
    let mut out = disk.to_vec();
    out[esp].copy_from_slice(&std::fs::read(&fat).unwrap());
    out
}

fn sbverify(cert: &Path, image: &Path) -> std::process::Output {
    Command::new("sbverify")
        .arg("--cert")
        .arg(cert)
        .arg(image)
        .output()
        .expect("sbverify runs (TEST_TOOLS: sbsigntool)")
}

/// A `boot: uefi` recipe in `dir` signed with the test keys, copied to `dir/keys/`.
fn signed_recipe(dir: &Path) -> PathBuf {
    let recipe = write_vm_recipe(dir, &kernel(), "raw");
    make_uefi(&recipe);
    let (key, cert) = test_keys();
    std::fs::create_dir(dir.join("keys")).unwrap();
    std::fs::copy(key, dir.join("keys/db.key")).unwrap();
    std::fs::copy(cert, dir.join("keys/db.crt")).unwrap();
    let text = std::fs::read_to_string(&recipe).unwrap().replace(
        "  boot: uefi\n",
        "  boot: uefi\n  secure_boot: { key: keys/db.key, cert: keys/db.crt }\n",
    );
    std::fs::write(&recipe, text).unwrap();
    recipe
}

#[test]
fn a_signed_disk_boots_under_secure_boot_and_a_changed_or_unsigned_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = signed_recipe(dir.path());
    let (_, cert) = test_keys();
    let vars = enrolled_vars(dir.path(), &cert);
    let out = dir.path().join("out");
    build_json(&recipe, &out, &[]);
    let disk_path = out.join("vmtest.raw");
    let disk = std::fs::read(&disk_path).unwrap();
    let (uki, esp) = uki_of(&disk, dir.path());
    let uki_path = dir.path().join("signed.efi");
    std::fs::write(&uki_path, &uki).unwrap();
    let verified = sbverify(&cert, &uki_path);
    assert!(
        verified.status.success(),
        "sbverify refused cairn's signature: {}",
        String::from_utf8_lossy(&verified.stderr)
    );

    let serial = boot_secure(&disk_path, &vars);
    let marker = format!("CAIRN-MARKER {}  /etc/motd", sha256_hex(MOTD.as_bytes()));
    assert!(
        serial.lines().any(|l| l.starts_with(&marker)),
        "the signed disk did not reach its marker; serial console:\n{serial}"
    );
    assert!(
        serial.contains("Secure boot enabled"),
        "the kernel did not run under Secure Boot; serial console:\n{serial}"
    );

    // One byte of the image changed (`ro` to `rw` in its .cmdline, which would boot
    // just as well), written into the ESP again: sbverify and the firmware refuse it.
    let cmdline = b"root=PARTLABEL=root ro ";
    let at = uki
        .windows(cmdline.len())
        .position(|w| w == cmdline)
        .expect("the .cmdline section")
        + cmdline.len()
        - 2;
    let mut changed = uki.clone();
    changed[at] = b'w';
    let changed_path = dir.path().join("changed.efi");
    std::fs::write(&changed_path, &changed).unwrap();
    let refused = sbverify(&cert, &changed_path);
    assert!(
        !refused.status.success(),
        "sbverify accepted a changed image"
    );
    let changed_disk = dir.path().join("changed.raw");
    std::fs::write(&changed_disk, with_uki(&disk, esp, &changed, dir.path())).unwrap();
    let serial = boot_secure(&changed_disk, &vars);
    assert!(
        serial.contains(REFUSED) && !serial.contains("CAIRN-MARKER"),
        "the changed image was not refused; serial console:\n{serial}"
    );

    // The same recipe without `secure_boot`: its image is not signed, and refused.
    let text = std::fs::read_to_string(&recipe).unwrap();
    let unsigned_recipe = dir.path().join("unsigned.yaml");
    std::fs::write(
        &unsigned_recipe,
        text.replace(
            "  secure_boot: { key: keys/db.key, cert: keys/db.crt }\n",
            "",
        ),
    )
    .unwrap();
    let unsigned_out = dir.path().join("unsigned");
    build_json(&unsigned_recipe, &unsigned_out, &[]);
    let unsigned_disk = unsigned_out.join("vmtest.raw");
    let (unsigned_uki, _) = uki_of(&std::fs::read(&unsigned_disk).unwrap(), dir.path());
    let unsigned_path = dir.path().join("unsigned.efi");
    std::fs::write(&unsigned_path, &unsigned_uki).unwrap();
    assert!(!sbverify(&cert, &unsigned_path).status.success());
    let serial = boot_secure(&unsigned_disk, &vars);
    assert!(
        serial.contains(REFUSED) && !serial.contains("CAIRN-MARKER"),
        "the unsigned image was not refused; serial console:\n{serial}"
    );
}

#[test]
fn signing_is_reproducible_names_the_certificate_and_keeps_the_key_out() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = signed_recipe(dir.path());
    let sign = keygen(dir.path(), "attest").0;
    let sign = sign.to_str().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let report = build_json(&recipe, &a, &["--sign-key", sign]);
    build_json(&recipe, &b, &["--sign-key", sign]);
    let disk_a = std::fs::read(a.join("vmtest.raw")).unwrap();
    assert!(
        disk_a == std::fs::read(b.join("vmtest.raw")).unwrap(),
        "two builds of a signed disk differ"
    );
    let (uki, _) = uki_of(&disk_a, dir.path());
    let (_, cert_path) = test_keys();
    let cert_pem = std::fs::read_to_string(&cert_path).unwrap();
    let cert_der = pem_body(&cert_pem);
    let fingerprint = sha256_hex(&cert_der);
    assert_eq!(
        report["disk"]["secure_boot_cert"],
        format!("sha256:{fingerprint}").as_str()
    );
    let provenance = provenance_of(&a.join("vmtest.disk.intoto.jsonl"));
    let recorded =
        &provenance["predicate"]["buildDefinition"]["internalParameters"]["vm"]["secure_boot"];
    assert_eq!(recorded["cert_sha256"], fingerprint.as_str(), "{recorded}");
    assert!(recorded["cert_subject"]
        .as_str()
        .unwrap()
        .contains("cairn test Secure Boot db key"));
    // The key is nowhere in the outputs: neither its PEM text nor its DER bytes.
    let key_pem = std::fs::read_to_string(dir.path().join("keys/db.key")).unwrap();
    let key_der = pem_body(&key_pem);
    for (name, bytes) in tree_bytes(&a) {
        let found = bytes
            .windows(64)
            .any(|w| w == &key_der[key_der.len() - 64..])
            || bytes
                .windows(64)
                .any(|w| w == key_pem.lines().nth(5).unwrap().as_bytes());
        assert!(!found, "{name} holds the Secure Boot private key");
    }
    // The certificate goes with the signature, as firmware and sbverify need it.
    assert!(uki.windows(cert_der.len()).any(|w| w == cert_der));

    // Flags replace the recipe's keys: another pair, another signature.
    let other_key = dir.path().join("other.key");
    let other_cert = dir.path().join("other.crt");
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:3072", "-nodes", "-sha256"])
            .args(["-days", "30", "-subj", "/CN=cairn flag test/", "-keyout"])
            .arg(&other_key)
            .arg("-out")
            .arg(&other_cert),
    );
    let c = dir.path().join("c");
    let report = build_json(
        &recipe,
        &c,
        &[
            "--secure-boot-key",
            other_key.to_str().unwrap(),
            "--secure-boot-cert",
            other_cert.to_str().unwrap(),
        ],
    );
    let other_der = pem_body(&std::fs::read_to_string(&other_cert).unwrap());
    assert_eq!(
        report["disk"]["secure_boot_cert"],
        format!("sha256:{}", sha256_hex(&other_der)).as_str()
    );
    let (other_uki, _) = uki_of(&std::fs::read(c.join("vmtest.raw")).unwrap(), dir.path());
    let other_path = dir.path().join("other.efi");
    std::fs::write(&other_path, &other_uki).unwrap();
    assert!(sbverify(&other_cert, &other_path).status.success());
    assert!(!sbverify(&cert_path, &other_path).status.success());

    // A key that is not the certificate's is refused before anything is built.
    let (code, stderr) = run_err(
        cairn()
            .arg("build")
            .arg(&recipe)
            .arg("-o")
            .arg(dir.path().join("d"))
            .arg("--secure-boot-key")
            .arg(&other_key)
            .arg("--secure-boot-cert")
            .arg(&cert_path),
    );
    assert_ne!(code, 0);
    assert!(
        stderr.contains("does not belong to the certificate"),
        "{stderr}"
    );
}

/// The bytes of the first PEM block of `text`.
fn pem_body(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}
