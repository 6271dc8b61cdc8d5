//! Unit tests of the `secure_boot` verdict over real signatures: cairn's, and those
//! the real `sbsign` makes with Debian's OVMF snakeoil key. Each failure says what is
//! wrong and what firmware does about it.

use super::*;
use crate::disk::authenticode::check::tests::{sbsign_snakeoil, snakeoil_sha256};
use crate::disk::authenticode::tests::{image, test_key};

fn recorded(cert_sha256: &str) -> Recorded<'_> {
    Recorded {
        cert_sha256,
        subject: "CN=cairn test Secure Boot db key",
    }
}

fn failed(uki: Option<&[u8]>, recorded: Option<&Recorded>) -> String {
    match verdict(uki, recorded) {
        Some(Err(detail)) => detail,
        other => panic!("not a failure: {other:?}"),
    }
}

#[test]
fn a_signature_by_the_recorded_certificate_passes_and_none_is_no_check() {
    let key = test_key();
    let hex = key.cert_sha256.hex();
    let signed = key.sign(&image()).unwrap();
    let Some(Ok(detail)) = verdict(Some(&signed), Some(&recorded(&hex))) else {
        panic!("refused")
    };
    assert!(
        detail.contains(&format!(
            "is signed by the recorded certificate sha256:{hex} (CN=cairn test"
        )) && detail.contains("RSA PKCS#1 v1.5 SHA-256 signature verifies"),
        "{detail}"
    );
    // sbsign adds the snakeoil signature after cairn's: firmware still finds ours.
    let both = sbsign_snakeoil(&signed);
    assert!(matches!(
        verdict(Some(&both), Some(&recorded(&hex))),
        Some(Ok(_))
    ));
    // Nothing recorded, nothing signed: no check at all.
    assert_eq!(verdict(Some(&image()), None), None);
    assert_eq!(verdict(None, None), None);
}

#[test]
fn an_unsigned_changed_foreign_or_forged_image_fails_with_what_it_means() {
    let key = test_key();
    let hex = key.cert_sha256.hex();
    let ours = recorded(&hex);
    let signed = key.sign(&image()).unwrap();

    let detail = failed(Some(&image()), Some(&ours));
    assert!(
        detail.contains("is not signed (its certificate table is empty)")
            && detail.contains(&format!("signed by certificate sha256:{hex}"))
            && detail.contains("firmware with Secure Boot on refuses to run it"),
        "{detail}"
    );

    let mut changed = signed.clone();
    changed[0x500] ^= 1;
    let detail = failed(Some(&changed), Some(&ours));
    assert!(
        detail.contains(&format!(
            "signature by the recorded certificate sha256:{hex}"
        )) && detail.contains("it signs the image hash sha256:")
            && detail.contains("the image was changed after it was signed, so firmware refuses it"),
        "{detail}"
    );

    let foreign = sbsign_snakeoil(&image());
    let detail = failed(Some(&foreign), Some(&ours));
    assert!(
        detail.contains(&format!(
            "signature is not by the recorded certificate sha256:{hex}"
        )) && detail.contains("but by O=SnakeOil,")
            && detail.contains(&format!("(sha256:{})", snakeoil_sha256().hex()))
            && detail.contains("firmware that trusts only the recorded certificate refuses it"),
        "{detail}"
    );

    // The last byte of the RSA signature, where the WIN_CERTIFICATE ends; the
    // certificate table follows the (8-byte aligned) image.
    let table = image().len();
    let length = u32::from_le_bytes(signed[table..table + 4].try_into().unwrap()) as usize;
    let mut forged = signed.clone();
    forged[table + length - 1] ^= 1;
    let detail = failed(Some(&forged), Some(&ours));
    assert!(
        detail.contains("its RSA signature over the authenticated attributes does not verify")
            && detail.contains("the signature was changed after it was made"),
        "{detail}"
    );

    let detail = failed(Some(&signed), None);
    assert!(
        detail.contains("records no Secure Boot signing")
            && detail.contains(&format!("(sha256:{hex})")),
        "{detail}"
    );
    let detail = failed(None, Some(&ours));
    assert!(detail.contains("the disk has no"), "{detail}");
    let detail = failed(Some(b"MZ"), Some(&ours));
    assert!(detail.contains("not a usable PE32+ file"), "{detail}");
}
