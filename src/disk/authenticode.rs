//! Authenticode signatures of PE/COFF images, for UEFI Secure Boot: what `sbsign`
//! writes, made natively and deterministically.
//!
//! [`image_hash`] is the Authenticode PE image hash (Microsoft's "Windows Authenticode
//! Portable Executable Signature Format"): SHA-256 over the headers without the
//! optional header's `CheckSum` and the certificate table's data directory entry, then
//! each section's raw data in file order, then any data after the last section up to
//! the certificate table. [`sign`] wraps that hash in an `SpcIndirectDataContent`
//! inside a PKCS#7 `SignedData` (SHA-256, RSA PKCS#1 v1.5, one signer named by issuer
//! and serial number, the signer's certificate included, the authenticated attributes
//! `contentType`, `messageDigest` and an empty `SpcSpOpusInfo`: **no signing time**),
//! appends it as a `WIN_CERTIFICATE` (revision 2.0, `WIN_CERT_TYPE_PKCS_SIGNED_DATA`,
//! 8-byte aligned), and points the certificate table entry at it and sets the PE
//! checksum. PKCS#1 v1.5 signatures are a function of key and message, so the same
//! image and key always give the same bytes, which `sbverify` and UEFI firmware
//! (EDK2's `DxeImageVerificationLib`) accept. [`check`] reads such signatures back and
//! checks them against the same image hash, for `cairn verify`.

use crate::digest::Sha256Digest;
use crate::keys::der;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};

pub mod check;

const PE32_PLUS: u16 = 0x20b;
const SECTION_HEADER: usize = 40;
/// The optional header's `CheckSum`, `SizeOfHeaders`, `NumberOfRvaAndSizes` and
/// data directories (PE32+ offsets).
const CHECKSUM: usize = 64;
const SIZE_OF_HEADERS: usize = 60;
const NUMBER_OF_RVA_AND_SIZES: usize = 108;
const DATA_DIRECTORIES: usize = 112;
/// `IMAGE_DIRECTORY_ENTRY_SECURITY`: the certificate table, whose address is a file
/// offset, not an RVA.
const CERTIFICATE_TABLE: usize = 4;
const WIN_CERT_REVISION_2_0: u16 = 0x0200;
const WIN_CERT_TYPE_PKCS_SIGNED_DATA: u16 = 0x0002;

/// Object identifiers, DER-encoded with their tag and length.
mod oid {
    /// 1.2.840.113549.1.7.2 (PKCS#7 signedData)
    pub const SIGNED_DATA: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 7, 2];
    /// 2.16.840.1.101.3.4.2.1 (SHA-256)
    pub const SHA256: &[u8] = &[6, 9, 0x60, 0x86, 0x48, 1, 0x65, 3, 4, 2, 1];
    /// 1.2.840.113549.1.1.1 (rsaEncryption: PKCS#1 v1.5)
    pub const RSA_ENCRYPTION: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1];
    /// 1.2.840.113549.1.1.11 (sha256WithRSAEncryption), which other signers may write
    /// for the signature algorithm.
    pub const SHA256_WITH_RSA: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 11];
    /// 1.2.840.113549.1.9.3 (PKCS#9 contentType)
    pub const CONTENT_TYPE: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 3];
    /// 1.2.840.113549.1.9.4 (PKCS#9 messageDigest)
    pub const MESSAGE_DIGEST: &[u8] = &[6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 4];
    /// 1.3.6.1.4.1.311.2.1.4 (SPC_INDIRECT_DATA_OBJID)
    pub const SPC_INDIRECT_DATA: &[u8] = &[6, 10, 0x2b, 6, 1, 4, 1, 0x82, 0x37, 2, 1, 4];
    /// 1.3.6.1.4.1.311.2.1.15 (SPC_PE_IMAGE_DATAOBJ)
    pub const SPC_PE_IMAGE_DATA: &[u8] = &[6, 10, 0x2b, 6, 1, 4, 1, 0x82, 0x37, 2, 1, 15];
    /// 1.3.6.1.4.1.311.2.1.12 (SPC_SP_OPUS_INFO_OBJID)
    pub const SPC_SP_OPUS_INFO: &[u8] = &[6, 10, 0x2b, 6, 1, 4, 1, 0x82, 0x37, 2, 1, 12];
}

/// DER tags used here.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OBJECT_IDENTIFIER: u8 = 0x06;
const NULL: &[u8] = &[0x05, 0x00];
/// `[n]` constructed (EXPLICIT, or IMPLICIT over a constructed type) and `[0]`
/// primitive (IMPLICIT over a string).
const fn context(n: u8) -> u8 {
    0xa0 | n
}
const CONTEXT_0_PRIMITIVE: u8 = 0x80;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthenticodeError {
    #[error("the image is not a usable PE32+ file ({0})")]
    NotPe(&'static str),
    #[error("the image is already signed (its certificate table is not empty)")]
    AlreadySigned,
    #[error("RSA signing failed: {0}")]
    Rsa(String),
}

/// The RSA public key of a certificate, if that is the kind of key it holds.
pub(super) fn rsa_public_key(certificate: &x509_cert::Certificate) -> Option<RsaPublicKey> {
    use der::Encode;
    use rsa::pkcs8::DecodePublicKey;
    let spki = certificate
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .ok()?;
    RsaPublicKey::from_public_key_der(&spki).ok()
}

/// Where a PE32+ image keeps what the image hash skips.
struct Layout {
    checksum: usize,
    certificate_entry: usize,
    size_of_headers: usize,
    /// (file offset, size) of each section's raw data, in file order, empty ones left out.
    sections: Vec<(usize, usize)>,
    /// (file offset, size) of the certificate table, (0, 0) if there is none.
    certificate_table: (usize, usize),
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, AuthenticodeError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(AuthenticodeError::NotPe("truncated header"))
}

fn u32_at(b: &[u8], at: usize) -> Result<usize, AuthenticodeError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .ok_or(AuthenticodeError::NotPe("truncated header"))
}

fn layout(pe: &[u8]) -> Result<Layout, AuthenticodeError> {
    let bad = AuthenticodeError::NotPe;
    if pe.get(0..2) != Some(b"MZ") {
        return Err(bad("no MZ header"));
    }
    let signature = u32_at(pe, 0x3c)?;
    if pe.get(signature..signature + 4) != Some(b"PE\0\0") {
        return Err(bad("no PE signature"));
    }
    let coff = signature + 4;
    let optional = coff + 20;
    if u16_at(pe, optional)? != PE32_PLUS {
        return Err(bad("not PE32+"));
    }
    let optional_size = usize::from(u16_at(pe, coff + 16)?);
    let directories = u32_at(pe, optional + NUMBER_OF_RVA_AND_SIZES)?;
    let certificate_entry = optional + DATA_DIRECTORIES + 8 * CERTIFICATE_TABLE;
    if directories <= CERTIFICATE_TABLE || certificate_entry + 8 > optional + optional_size {
        return Err(bad("no certificate table data directory"));
    }
    let size_of_headers = u32_at(pe, optional + SIZE_OF_HEADERS)?;
    let section_table = optional + optional_size;
    let count = usize::from(u16_at(pe, coff + 2)?);
    if section_table + count * SECTION_HEADER > size_of_headers || size_of_headers > pe.len() {
        return Err(bad("the section table lies outside the headers"));
    }
    let mut sections = Vec::with_capacity(count);
    for i in 0..count {
        let h = section_table + i * SECTION_HEADER;
        let (size, at) = (u32_at(pe, h + 16)?, u32_at(pe, h + 20)?);
        if size == 0 {
            continue;
        }
        if at.checked_add(size).is_none_or(|end| end > pe.len()) {
            return Err(bad("a section lies past the end of the file"));
        }
        sections.push((at, size));
    }
    sections.sort_unstable();
    let certificate_table = (
        u32_at(pe, certificate_entry)?,
        u32_at(pe, certificate_entry + 4)?,
    );
    if certificate_table.1 != 0
        && certificate_table.0.checked_add(certificate_table.1) != Some(pe.len())
    {
        return Err(bad("the certificate table is not at the end of the file"));
    }
    Ok(Layout {
        checksum: optional + CHECKSUM,
        certificate_entry,
        size_of_headers,
        sections,
        certificate_table,
    })
}

/// The Authenticode SHA-256 of a PE32+ image (its certificate table, if any, left out).
pub fn image_hash(pe: &[u8]) -> Result<Sha256Digest, AuthenticodeError> {
    let l = layout(pe)?;
    Ok(hash_with(pe, &l))
}

fn hash_with(pe: &[u8], l: &Layout) -> Sha256Digest {
    let mut h = Sha256::new();
    h.update(&pe[..l.checksum]);
    h.update(&pe[l.checksum + 4..l.certificate_entry]);
    h.update(&pe[l.certificate_entry + 8..l.size_of_headers]);
    let mut hashed = l.size_of_headers;
    for &(at, size) in &l.sections {
        h.update(&pe[at..at + size]);
        hashed += size;
    }
    // The specification's "extra data": from SUM_OF_BYTES_HASHED on, up to the
    // certificate table, exactly as EDK2 and sbsigntool read it.
    let end = pe.len() - l.certificate_table.1;
    if hashed < end {
        h.update(&pe[hashed..end]);
    }
    Sha256Digest::from_hasher(h)
}

/// The signer: an RSA key and its X.509 certificate (DER), whose issuer and serial
/// number name the signer.
pub struct Signer<'a> {
    pub key: &'a RsaPrivateKey,
    pub certificate: &'a [u8],
    /// The certificate's issuer `Name` and `serialNumber` INTEGER, DER-encoded.
    pub issuer: &'a [u8],
    pub serial: &'a [u8],
}

/// `pe` with an Authenticode signature by `signer` appended: same input, same bytes.
pub fn sign(pe: &[u8], signer: &Signer) -> Result<Vec<u8>, AuthenticodeError> {
    let mut out = pe.to_vec();
    // The certificate table starts 8-byte aligned; the padding is hashed as extra data.
    out.resize(pe.len().next_multiple_of(8), 0);
    let l = layout(&out)?;
    if l.certificate_table != (0, 0) {
        return Err(AuthenticodeError::AlreadySigned);
    }
    let pkcs7 = signed_data(hash_with(&out, &l), signer)?;
    let table_at = out.len();
    let length = u32::try_from(8 + pkcs7.len()).expect("a signature is small");
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_REVISION_2_0.to_le_bytes());
    out.extend_from_slice(&WIN_CERT_TYPE_PKCS_SIGNED_DATA.to_le_bytes());
    out.extend_from_slice(&pkcs7);
    out.resize(out.len().next_multiple_of(8), 0);
    let too_big = |_| AuthenticodeError::NotPe("image larger than 4 GiB");
    let table_size = u32::try_from(out.len() - table_at).map_err(too_big)?;
    let table_at = u32::try_from(table_at).map_err(too_big)?;
    out[l.certificate_entry..l.certificate_entry + 4].copy_from_slice(&table_at.to_le_bytes());
    out[l.certificate_entry + 4..l.certificate_entry + 8]
        .copy_from_slice(&table_size.to_le_bytes());
    let checksum = pe_checksum(&out, l.checksum);
    out[l.checksum..l.checksum + 4].copy_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// The PE checksum (as `CheckSumMappedFile` computes it): the 16-bit one's-complement
/// style sum of the file with the checksum field taken as zero, plus the file length.
fn pe_checksum(pe: &[u8], checksum_at: usize) -> u32 {
    let mut sum: u32 = 0;
    for (i, word) in pe.chunks(2).enumerate() {
        let at = 2 * i;
        let w = if (checksum_at..checksum_at + 4).contains(&at) {
            0
        } else {
            u16::from_le_bytes([word[0], *word.get(1).unwrap_or(&0)])
        };
        sum += u32::from(w);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum.wrapping_add(pe.len() as u32)
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn sha256_algorithm() -> Vec<u8> {
    der(SEQUENCE, &concat(&[oid::SHA256, NULL]))
}

/// The `SpcIndirectDataContent` for `hash`, as `SEQUENCE` content (no tag and length):
/// what the signature's `messageDigest` covers. The `SpcPeImageData` is what signtool
/// and sbsign write: no flags, and the obsolete file link `<<<Obsolete>>>`.
fn indirect_data_content(hash: Sha256Digest) -> Vec<u8> {
    let obsolete: Vec<u8> = "<<<Obsolete>>>"
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    let link = der(
        context(0),
        &der(context(2), &der(CONTEXT_0_PRIMITIVE, &obsolete)),
    );
    let pe_image_data = der(SEQUENCE, &concat(&[&der(BIT_STRING, &[0]), &link]));
    let data = der(SEQUENCE, &concat(&[oid::SPC_PE_IMAGE_DATA, &pe_image_data]));
    let digest = der(
        SEQUENCE,
        &concat(&[&sha256_algorithm(), &der(OCTET_STRING, hash.as_bytes())]),
    );
    concat(&[&data, &digest])
}

/// The PKCS#7 `ContentInfo` holding the `SignedData` over the image hash.
fn signed_data(hash: Sha256Digest, signer: &Signer) -> Result<Vec<u8>, AuthenticodeError> {
    let content = indirect_data_content(hash);
    let message_digest = Sha256::digest(&content);
    let mut attributes = [
        der(
            SEQUENCE,
            &concat(&[oid::CONTENT_TYPE, &der(SET, oid::SPC_INDIRECT_DATA)]),
        ),
        der(
            SEQUENCE,
            &concat(&[
                oid::MESSAGE_DIGEST,
                &der(SET, &der(OCTET_STRING, &message_digest)),
            ]),
        ),
        der(
            SEQUENCE,
            &concat(&[oid::SPC_SP_OPUS_INFO, &der(SET, &der(SEQUENCE, &[]))]),
        ),
    ];
    // DER orders the elements of a SET OF by their encodings.
    attributes.sort();
    let attributes = attributes.concat();
    // The signature covers the attributes encoded as the SET OF they are (tag 0x31),
    // not as the [0] IMPLICIT field that carries them.
    let signed = Sha256::digest(der(SET, &attributes));
    // Blinding (the random number) hides the key from timing; PKCS#1 v1.5 padding
    // has none, so the signature is the same whatever it is.
    let signature = signer
        .key
        .sign_with_rng(
            &mut rand_core::OsRng,
            Pkcs1v15Sign::new::<Sha256>(),
            &signed,
        )
        .map_err(|e| AuthenticodeError::Rsa(e.to_string()))?;
    let signer_info = der(
        SEQUENCE,
        &concat(&[
            &der(INTEGER, &[1]),
            &der(SEQUENCE, &concat(&[signer.issuer, signer.serial])),
            &sha256_algorithm(),
            &der(context(0), &attributes),
            &der(SEQUENCE, &concat(&[oid::RSA_ENCRYPTION, NULL])),
            &der(OCTET_STRING, &signature),
        ]),
    );
    let signed_data = der(
        SEQUENCE,
        &concat(&[
            &der(INTEGER, &[1]),
            &der(SET, &sha256_algorithm()),
            &der(
                SEQUENCE,
                &concat(&[
                    oid::SPC_INDIRECT_DATA,
                    &der(context(0), &der(SEQUENCE, &content)),
                ]),
            ),
            &der(context(0), signer.certificate),
            &der(SET, &signer_info),
        ]),
    );
    Ok(der(
        SEQUENCE,
        &concat(&[oid::SIGNED_DATA, &der(context(0), &signed_data)]),
    ))
}

/// Also the minimal image and test key other modules' tests sign.
#[cfg(test)]
pub(crate) mod tests;
