//! Secure Boot, for real: a `boot: uefi` disk whose unified kernel image cairn signs
//! (Authenticode, natively) boots under OVMF with Secure Boot on and only the test
//! certificate enrolled (`virt-fw-vars` from PyPI's virt-firmware writes PK, KEK and
//! db into a copy of OVMF's empty variable store); the same image with one byte changed,
//! and the image unsigned, are refused by the firmware; `sbverify` (Debian's
//! sbsigntool) agrees. Signing is deterministic: two builds give the same disk.
//! `cairn verify` checks the signature against the certificate the provenance records
//! (its `secure_boot` check), and fails an image made unsigned, changed, re-signed by
//! another key with `sbsign`, or with its signature changed, each written back into the
//! raw disk's ESP with mtools' `mcopy`, as `sbverify` does; those tests boot nothing.

use super::vm::{kernel, make_uefi, write_vm_recipe, MOTD};
use crate::common::ovmf::{enrolled_vars, secure_boot_qemu, test_keys};
use crate::common::qemu::Qemu;
use crate::common::sha256_hex;
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

/// `recipe` without its `secure_boot`, as `unsigned.yaml` beside it.
fn without_secure_boot(recipe: &Path) -> PathBuf {
    let text = std::fs::read_to_string(recipe).unwrap();
    let unsigned = recipe.with_file_name("unsigned.yaml");
    let line = "  secure_boot: { key: keys/db.key, cert: keys/db.crt }\n";
    std::fs::write(&unsigned, text.replace(line, "")).unwrap();
    unsigned
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
    let unsigned_recipe = without_secure_boot(&recipe);
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

/// The check named `name` in a verdict, if there is one.
fn check<'a>(verdict: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
}

/// `image` with its signatures removed by `sbattach --remove` (it removes the first;
/// cairn writes one).
fn sbattach_remove(image: &[u8], scratch: &Path) -> Vec<u8> {
    let path = scratch.join("sbattach.efi");
    std::fs::write(&path, image).unwrap();
    run_ok(Command::new("sbattach").arg("--remove").arg(&path));
    std::fs::read(path).unwrap()
}

/// `image` signed with `sbsign` (after any signature it has).
fn sbsign(key: &Path, cert: &Path, image: &[u8], scratch: &Path) -> Vec<u8> {
    let (input, output) = (
        scratch.join("sbsign-in.efi"),
        scratch.join("sbsign-out.efi"),
    );
    std::fs::write(&input, image).unwrap();
    run_ok(
        Command::new("sbsign")
            .arg("--key")
            .arg(key)
            .arg("--cert")
            .arg(cert)
            .arg("--output")
            .arg(&output)
            .arg(&input),
    );
    std::fs::read(output).unwrap()
}

/// A copy of the raw disk `disk` (with its attestations beside it) in `dir/name/`,
/// whose `\EFI\BOOT\BOOTX64.EFI` mtools' `mcopy` replaced by `uki` inside the ESP.
fn with_uki_mcopied(disk: &Path, uki: &[u8], dir: &Path, name: &str) -> PathBuf {
    let at = dir.join(name);
    std::fs::create_dir(&at).unwrap();
    let copy = at.join("vmtest.raw");
    std::fs::copy(disk, &copy).unwrap();
    std::fs::copy(
        disk.with_file_name("vmtest.disk.intoto.jsonl"),
        at.join("vmtest.disk.intoto.jsonl"),
    )
    .unwrap();
    let (_, partitions) =
        cairn::disk::gpt::read_partitions(&mut std::fs::File::open(&copy).unwrap()).unwrap();
    let esp = partitions.iter().find(|p| p.name == "esp").unwrap();
    let file = at.join("BOOTX64.EFI");
    std::fs::write(&file, uki).unwrap();
    run_ok(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-o")
            .arg("-i")
            .arg(format!("{}@@{}", copy.display(), esp.offset))
            .arg(&file)
            .arg("::/EFI/BOOT/BOOTX64.EFI"),
    );
    let (read_back, _) = uki_of(&std::fs::read(&copy).unwrap(), &at);
    assert!(read_back == uki, "mcopy did not replace the image");
    copy
}

#[test]
fn verify_checks_the_signature_by_the_recorded_certificate_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = signed_recipe(dir.path());
    let (attest_key, attest_pub, _) = keygen(dir.path(), "attest");
    let sign = ["--sign-key", attest_key.to_str().unwrap()];
    let out = dir.path().join("out");
    build_json(&recipe, &out, &sign);
    let disk = out.join("vmtest.raw");
    let (_, cert) = test_keys();
    let fingerprint = sha256_hex(&pem_body(&std::fs::read_to_string(&cert).unwrap()));

    let (verified, verdict) = verify_disk(&disk, &attest_pub);
    assert!(verified, "{verdict:#}");
    let passed = check(&verdict, "secure_boot").expect("a secure_boot check");
    assert_eq!(passed["ok"], true);
    let detail = passed["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "signed by the recorded certificate sha256:{fingerprint}"
        )),
        "{detail}"
    );
    let (uki, _) = uki_of(&std::fs::read(&disk).unwrap(), dir.path());
    let uki_path = dir.path().join("signed.efi");
    std::fs::write(&uki_path, &uki).unwrap();
    assert!(sbverify(&cert, &uki_path).status.success());

    // The snakeoil key is stored encrypted (passphrase `snakeoil`); sbsign wants it plain.
    let snakeoil_key = dir.path().join("snakeoil.key");
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-passin", "pass:snakeoil"])
            .args(["-in", "/usr/share/ovmf/PkKek-1-snakeoil.key", "-out"])
            .arg(&snakeoil_key),
    );
    let snakeoil_cert = Path::new("/usr/share/ovmf/PkKek-1-snakeoil.pem");
    let snakeoil = |image: &[u8]| sbsign(&snakeoil_key, snakeoil_cert, image, dir.path());
    let unsigned = sbattach_remove(&uki, dir.path());
    let mut changed = uki.clone();
    let cmdline = b"root=PARTLABEL=root ro ";
    let at = changed
        .windows(cmdline.len())
        .position(|w| w == cmdline)
        .expect("the .cmdline section")
        + cmdline.len()
        - 2;
    changed[at] = b'w';
    // The WIN_CERTIFICATE ends with the RSA signature: its last byte. The certificate
    // table's file offset is the fifth data directory of the PE32+ optional header.
    let u32_at = |at: usize| u32::from_le_bytes(uki[at..at + 4].try_into().unwrap()) as usize;
    let table = u32_at(u32_at(0x3c) + 24 + 112 + 4 * 8);
    let length = u32_at(table);
    let mut forged = uki.clone();
    forged[table + length - 1] ^= 1;
    let cases: [(&str, Vec<u8>, String); 4] = [
        (
            "unsigned",
            unsigned,
            "is not signed (its certificate table is empty), although the provenance records it signed by certificate sha256:".to_string() + &fingerprint,
        ),
        (
            "changed",
            changed,
            "the image was changed after it was signed, so firmware refuses it".into(),
        ),
        (
            "foreign",
            snakeoil(&sbattach_remove(&uki, dir.path())),
            format!("signature is not by the recorded certificate sha256:{fingerprint}"),
        ),
        (
            "forged",
            forged,
            "does not verify with the certificate's public key; the signature was changed after it was made".into(),
        ),
    ];
    for (name, image, expected) in cases {
        let image_path = dir.path().join(format!("{name}.efi"));
        std::fs::write(&image_path, &image).unwrap();
        assert!(
            !sbverify(&cert, &image_path).status.success(),
            "{name}: sbverify accepted it"
        );
        let tampered = with_uki_mcopied(&disk, &image, dir.path(), name);
        let (verified, verdict) = verify_disk(&tampered, &attest_pub);
        assert!(!verified, "{name}: {verdict:#}");
        let failed = check(&verdict, "secure_boot")
            .unwrap_or_else(|| panic!("{name}: no secure_boot check in {verdict:#}"));
        assert_eq!(failed["ok"], false, "{name}: {failed}");
        let detail = failed["detail"].as_str().unwrap();
        assert!(detail.contains(&expected), "{name}: {detail}");
    }
    let (code, _) = run_err(
        cairn()
            .arg("verify")
            .arg(dir.path().join("forged/vmtest.raw"))
            .arg("--key")
            .arg(&attest_pub),
    );
    assert_ne!(code, 0);

    // Another signature after cairn's (sbsign adds one to a signed image): firmware
    // trusting the recorded certificate still runs it, and the check passes.
    let both = with_uki_mcopied(&disk, &snakeoil(&uki), dir.path(), "both");
    let (_, verdict) = verify_disk(&both, &attest_pub);
    assert_eq!(
        check(&verdict, "secure_boot").unwrap()["ok"],
        true,
        "{verdict:#}"
    );

    // The recipe without `secure_boot`: nothing recorded, nothing signed, no check.
    let unsigned_recipe = without_secure_boot(&recipe);
    let unsigned_out = dir.path().join("unsigned-out");
    build_json(&unsigned_recipe, &unsigned_out, &sign);
    let (verified, verdict) = verify_disk(&unsigned_out.join("vmtest.raw"), &attest_pub);
    assert!(verified, "{verdict:#}");
    assert!(
        check(&verdict, "secure_boot").is_none(),
        "an unsigned recipe got a secure_boot check: {verdict:#}"
    );
}
