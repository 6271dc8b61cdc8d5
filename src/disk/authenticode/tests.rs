//! Unit tests of the Authenticode signer: what the image hash covers and skips, the
//! certificate table and checksum it appends, determinism, and what it refuses.

use super::*;
use crate::disk::secure_boot::SecureBootKey;
use std::path::Path;

/// The repository's test pair (recipes/keys/, public: never trust it).
pub(crate) fn test_key() -> SecureBootKey {
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/keys");
    SecureBootKey::read(
        &keys,
        Path::new("secure-boot-test.key"),
        Path::new("secure-boot-test.crt"),
    )
    .unwrap()
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

const COFF: usize = 0x84;
pub(crate) const OPTIONAL: usize = COFF + 20;

/// A minimal PE32+ image: headers in 0x400 bytes with 16 data directories, and two
/// sections of 0x200 bytes each.
pub(crate) fn image() -> Vec<u8> {
    let mut pe = vec![0u8; 0x800];
    pe[0..2].copy_from_slice(b"MZ");
    put_u32(&mut pe, 0x3c, 0x80);
    pe[0x80..0x84].copy_from_slice(b"PE\0\0");
    put_u16(&mut pe, COFF, 0x8664);
    put_u16(&mut pe, COFF + 2, 2);
    put_u16(&mut pe, COFF + 16, 240);
    put_u16(&mut pe, OPTIONAL, PE32_PLUS);
    put_u32(&mut pe, OPTIONAL + 32, 0x1000);
    put_u32(&mut pe, OPTIONAL + 36, 0x200);
    put_u32(&mut pe, OPTIONAL + 56, 0x3000);
    put_u32(&mut pe, OPTIONAL + 60, 0x400);
    put_u32(&mut pe, OPTIONAL + NUMBER_OF_RVA_AND_SIZES, 16);
    for (i, name) in [&b".text"[..], b".data"].iter().enumerate() {
        let s = OPTIONAL + 240 + i * SECTION_HEADER;
        pe[s..s + name.len()].copy_from_slice(name);
        put_u32(&mut pe, s + 8, 0x200);
        put_u32(&mut pe, s + 12, 0x1000 * (i as u32 + 1));
        put_u32(&mut pe, s + 16, 0x200);
        put_u32(&mut pe, s + 20, 0x400 + 0x200 * i as u32);
    }
    for (i, b) in pe[0x400..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    pe
}

fn certificate_entry(pe: &[u8]) -> (usize, usize) {
    let at = OPTIONAL + DATA_DIRECTORIES + 8 * CERTIFICATE_TABLE;
    (u32_at(pe, at).unwrap(), u32_at(pe, at + 4).unwrap())
}

#[test]
fn the_hash_skips_checksum_and_certificate_entry_and_covers_the_rest() {
    let pe = image();
    let hash = image_hash(&pe).unwrap();
    let mut skipped = pe.clone();
    put_u32(&mut skipped, OPTIONAL + CHECKSUM, 0xdead_beef);
    assert_eq!(
        image_hash(&skipped).unwrap(),
        hash,
        "CheckSum is not hashed"
    );
    // What is hashed: the headers before the checksum, after it, and the sections.
    for at in [0x10, OPTIONAL + 70, OPTIONAL + 240 + 2, 0x400, 0x7ff] {
        let mut changed = pe.clone();
        changed[at] ^= 1;
        assert_ne!(image_hash(&changed).unwrap(), hash, "byte {at:#x}");
    }
    // Data after the last section is hashed too.
    let mut longer = pe.clone();
    longer.extend_from_slice(&[0; 8]);
    assert_ne!(image_hash(&longer).unwrap(), hash);
    // Sections are hashed in file order, whatever the order of their headers.
    let mut swapped = pe.clone();
    let (a, b) = (OPTIONAL + 240, OPTIONAL + 240 + SECTION_HEADER);
    let first: Vec<u8> = swapped[a..b].to_vec();
    swapped.copy_within(b..b + SECTION_HEADER, a);
    swapped[b..b + SECTION_HEADER].copy_from_slice(&first);
    let reordered = layout(&swapped).unwrap();
    assert_eq!(reordered.sections, [(0x400, 0x200), (0x600, 0x200)]);
}

#[test]
fn signing_appends_an_aligned_certificate_table_and_is_deterministic() {
    let key = test_key();
    let pe = image();
    let signed = key.sign(&pe).unwrap();
    assert_eq!(signed, key.sign(&pe).unwrap(), "same input, same bytes");
    assert_eq!(&signed[..OPTIONAL + CHECKSUM], &pe[..OPTIONAL + CHECKSUM]);
    let (at, size) = certificate_entry(&signed);
    assert_eq!((at, at + size), (pe.len(), signed.len()));
    assert_eq!(size % 8, 0);
    let length = u32_at(&signed, at).unwrap();
    assert!(length <= size && size - length < 8, "{length} in {size}");
    assert_eq!(u16_at(&signed, at + 4).unwrap(), 0x0200);
    assert_eq!(u16_at(&signed, at + 6).unwrap(), 0x0002);
    // The signature leaves the image hash as it was: it is outside what is hashed.
    assert_eq!(image_hash(&signed).unwrap(), image_hash(&pe).unwrap());
    let checksum = u32_at(&signed, OPTIONAL + CHECKSUM).unwrap() as u32;
    assert_eq!(checksum, pe_checksum(&signed, OPTIONAL + CHECKSUM));
    assert_ne!(checksum, 0);

    // EDK2 finds the digest algorithm at offset 32 of the PKCS#7 blob, which holds
    // for two-byte lengths only.
    let pkcs7 = &signed[at + 8..at + length];
    assert_eq!(&pkcs7[..2], &[SEQUENCE, 0x82]);
    assert_eq!(&pkcs7[32..32 + 9], &oid::SHA256[2..]);
    // No signingTime attribute (1.2.840.113549.1.9.5) anywhere.
    let signing_time = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 5];
    assert!(!pkcs7.windows(9).any(|w| w == signing_time));
    // The image hash is in the SpcIndirectDataContent.
    let hash = image_hash(&pe).unwrap();
    assert!(pkcs7.windows(32).any(|w| w == hash.as_bytes()));
}

#[test]
fn an_unaligned_image_is_padded_before_it_is_hashed() {
    let key = test_key();
    let mut pe = image();
    pe.extend_from_slice(&[7, 7, 7]);
    let signed = key.sign(&pe).unwrap();
    let (at, _) = certificate_entry(&signed);
    assert_eq!(at, pe.len().next_multiple_of(8));
    assert_eq!(&signed[pe.len()..at], &[0; 5]);
}

#[test]
fn a_signed_or_broken_image_is_refused() {
    let key = test_key();
    let signed = key.sign(&image()).unwrap();
    assert_eq!(key.sign(&signed), Err(AuthenticodeError::AlreadySigned));
    assert!(matches!(
        key.sign(b"MZ but nothing else"),
        Err(AuthenticodeError::NotPe(_))
    ));
    let mut few = image();
    put_u32(&mut few, OPTIONAL + NUMBER_OF_RVA_AND_SIZES, 4);
    assert_eq!(
        key.sign(&few),
        Err(AuthenticodeError::NotPe(
            "no certificate table data directory"
        ))
    );
    let mut beyond = image();
    put_u32(&mut beyond, OPTIONAL + 240 + 16, 0x1000);
    assert!(matches!(
        key.sign(&beyond),
        Err(AuthenticodeError::NotPe(_))
    ));
}

#[test]
fn der_lengths_take_the_shortest_form() {
    assert_eq!(der(OCTET_STRING, &[1; 3]), [4, 3, 1, 1, 1]);
    assert_eq!(der(OCTET_STRING, &[0; 0x80])[..3], [4, 0x81, 0x80]);
    assert_eq!(der(OCTET_STRING, &[0; 0x100])[..4], [4, 0x82, 1, 0]);
}
