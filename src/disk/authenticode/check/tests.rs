//! Unit tests of the Authenticode reader: signatures cairn writes and signatures the
//! real `sbsign` (Debian's sbsigntool, OpenSSL's PKCS#7, with a signing time) writes
//! are read back and hold; a changed image, a changed signature and malformed tables
//! are told apart; and a change to any byte of a signed image but its PE checksum and
//! the table's end padding is refused.

use super::super::image_hash;
use super::super::tests::{image, test_key, OPTIONAL};
use super::super::{CERTIFICATE_TABLE, DATA_DIRECTORIES};
use super::*;
use std::process::Command;

/// Debian's OVMF snakeoil db key (encrypted with the passphrase `snakeoil`) and its
/// certificate: another signer than the repository's test key.
pub(crate) const SNAKEOIL_KEY: &str = "/usr/share/ovmf/PkKek-1-snakeoil.key";
pub(crate) const SNAKEOIL_CERT: &str = "/usr/share/ovmf/PkKek-1-snakeoil.pem";

/// `pe` signed by the real `sbsign` with the snakeoil pair (the key decrypted first:
/// sbsign asks for a passphrase on the terminal).
pub(crate) fn sbsign_snakeoil(pe: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("snakeoil.key");
    let run = |c: &mut Command| {
        let out = c
            .output()
            .expect("the tool runs (TEST_TOOLS: openssl, sbsigntool)");
        assert!(
            out.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("openssl")
        .args([
            "pkey",
            "-passin",
            "pass:snakeoil",
            "-in",
            SNAKEOIL_KEY,
            "-out",
        ])
        .arg(&key));
    let (input, output) = (dir.path().join("in.efi"), dir.path().join("out.efi"));
    std::fs::write(&input, pe).unwrap();
    run(Command::new("sbsign")
        .arg("--key")
        .arg(&key)
        .args(["--cert", SNAKEOIL_CERT, "--output"])
        .arg(&output)
        .arg(&input));
    std::fs::read(output).unwrap()
}

pub(crate) fn snakeoil_sha256() -> Sha256Digest {
    let pem = std::fs::read(SNAKEOIL_CERT).unwrap();
    let (_, der) = der::pem::decode_vec(&pem).unwrap();
    Sha256Digest::of(&der)
}

fn only<'s, 'a>(signed: &'s SignedImage<'a>) -> &'s Signature<'a> {
    match &signed.signatures[..] {
        [Ok(signature)] => signature,
        [Err(e)] => panic!("{e}"),
        other => panic!("{} signatures", other.len()),
    }
}

/// Where the last WIN_CERTIFICATE's PKCS#7 ends in `signed`: the RSA signature is
/// its last bytes (neither signer writes unauthenticated attributes).
fn pkcs7_end(signed: &[u8]) -> usize {
    let l = layout(signed).unwrap();
    let (at, _) = l.certificate_table;
    let length = u32::from_le_bytes(signed[at..at + 4].try_into().unwrap()) as usize;
    at + length
}

#[test]
fn a_signature_cairn_writes_reads_back_and_holds() {
    let key = test_key();
    let pe = image();
    let signed_pe = key.sign(&pe).unwrap();
    let signed = signatures(&signed_pe).unwrap();
    assert_eq!(signed.image_hash, image_hash(&pe).unwrap());
    let signature = only(&signed);
    assert_eq!(signature.cert_sha256, key.cert_sha256);
    assert_eq!(signature.subject, key.subject);
    assert_eq!(signature.signed_hash, signed.image_hash);
    assert_eq!(signature.problems(signed.image_hash), []);
    assert!(signatures(&pe).unwrap().signatures.is_empty(), "unsigned");
    // An entry of size 0 is no table, wherever it points (a fuzzer's find).
    let mut nowhere = pe.clone();
    let entry = OPTIONAL + DATA_DIRECTORIES + 8 * CERTIFICATE_TABLE;
    nowhere[entry..entry + 4].copy_from_slice(&0x8900_0000u32.to_le_bytes());
    assert!(signatures(&nowhere).unwrap().signatures.is_empty());

    // A byte of a section: the image no longer hashes to what was signed.
    let mut changed = signed_pe.clone();
    changed[0x500] ^= 1;
    let signed = signatures(&changed).unwrap();
    assert_eq!(
        only(&signed).problems(signed.image_hash),
        [SignatureProblem::ImageHash {
            signed: image_hash(&pe).unwrap(),
            actual: signed.image_hash
        }]
    );
    // A byte of the RSA signature: the image is as signed, the signature is not.
    let mut forged = signed_pe.clone();
    forged[pkcs7_end(&signed_pe) - 1] ^= 1;
    let signed = signatures(&forged).unwrap();
    assert_eq!(
        only(&signed).problems(signed.image_hash),
        [SignatureProblem::Rsa]
    );
}

#[test]
fn a_signature_sbsign_writes_reads_back_and_holds() {
    let pe = image();
    let signed_pe = sbsign_snakeoil(&pe);
    let signed = signatures(&signed_pe).unwrap();
    let signature = only(&signed);
    assert_eq!(signature.cert_sha256, snakeoil_sha256());
    assert!(
        signature.subject.contains("O=SnakeOil"),
        "{}",
        signature.subject
    );
    assert_eq!(signature.signed_hash, image_hash(&pe).unwrap());
    assert_eq!(signature.problems(signed.image_hash), []);

    // sbsign over cairn's signature adds a second one; both hold.
    let key = test_key();
    let both = sbsign_snakeoil(&key.sign(&pe).unwrap());
    let signed = signatures(&both).unwrap();
    let certificates: Vec<Sha256Digest> = signed
        .signatures
        .iter()
        .map(|s| {
            let s = s.as_ref().unwrap();
            assert_eq!(s.problems(signed.image_hash), []);
            s.cert_sha256
        })
        .collect();
    assert_eq!(certificates, [key.cert_sha256, snakeoil_sha256()]);

    // The messageDigest attribute checked apart from the RSA signature: a changed
    // byte of the SpcIndirectDataContent's file link leaves the image hash alone.
    let mut relinked = signed_pe.clone();
    let obsolete: Vec<u8> = "<<<Obsolete>>>"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    let at = relinked
        .windows(obsolete.len())
        .position(|w| w == obsolete)
        .expect("sbsign writes the obsolete link");
    relinked[at + 1] = b'(';
    let signed = signatures(&relinked).unwrap();
    assert_eq!(
        only(&signed).problems(signed.image_hash),
        [SignatureProblem::MessageDigest]
    );
}

#[test]
fn a_certificate_table_that_is_not_a_signature_is_named() {
    let signed_pe = test_key().sign(&image()).unwrap();
    let l = layout(&signed_pe).unwrap();
    let (at, size) = l.certificate_table;
    let error = |pe: &[u8]| {
        let mut read = signatures(pe).unwrap().signatures.into_iter();
        match (read.next(), read.next()) {
            (Some(Err(e)), None) => e,
            _ => panic!("read as a signature"),
        }
    };

    let mut other_type = signed_pe.clone();
    other_type[at + 6] = 1;
    let e = error(&other_type);
    assert_eq!(e.at, at);
    assert!(e.what.contains("type 0x0001"), "{e}");

    let mut too_long = signed_pe.clone();
    too_long[at..at + 4].copy_from_slice(&(size as u32 + 8).to_le_bytes());
    assert!(
        error(&too_long).what.contains("does not fit"),
        "{}",
        error(&too_long)
    );

    // The first byte of the PKCS#7: a SET, not the ContentInfo's SEQUENCE.
    let mut not_sequence = signed_pe.clone();
    not_sequence[at + 8] = SET;
    assert!(
        error(&not_sequence)
            .what
            .contains("the ContentInfo has tag 0x31"),
        "{}",
        error(&not_sequence)
    );
    // Its length made longer than the bytes there are.
    let mut truncated = signed_pe.clone();
    truncated[at + 11] = 0xff;
    assert!(
        error(&truncated).what.starts_with("not DER"),
        "{}",
        error(&truncated)
    );
    let e = error(&truncated).to_string();
    assert!(
        e.starts_with(&format!("the signature at byte {at} of the image")),
        "{e}"
    );
}

#[test]
fn every_byte_of_a_signed_image_counts_but_the_checksum_and_the_padding() {
    let key = test_key();
    let signers = [
        (key.sign(&image()).unwrap(), key.cert_sha256),
        (sbsign_snakeoil(&image()), snakeoil_sha256()),
    ];
    for (signed_pe, cert_sha256) in signers {
        let l = layout(&signed_pe).unwrap();
        let end = pkcs7_end(&signed_pe);
        // Neither the image hash nor the signature covers the PE checksum, and nothing
        // reads the zeros that align the certificate table's end.
        let uncovered: Vec<usize> = (l.checksum..l.checksum + 4)
            .chain(end..signed_pe.len())
            .collect();
        let mut accepted = Vec::new();
        for at in 0..signed_pe.len() {
            let mut pe = signed_pe.clone();
            pe[at] ^= 1;
            let Ok(signed) = signatures(&pe) else {
                continue;
            };
            let holds =
                signed.signatures.iter().flatten().any(|s| {
                    s.cert_sha256 == cert_sha256 && s.problems(signed.image_hash).is_empty()
                });
            if holds {
                accepted.push(at);
            }
        }
        assert_eq!(accepted, uncovered, "signed by {cert_sha256}");
    }
}
