//! Authenticode signatures read back and checked, as UEFI firmware checks them (EDK2's
//! `DxeImageVerificationLib`): each `WIN_CERTIFICATE` of a PE32+ image's certificate
//! table holds a PKCS#7 `SignedData` (RFC 2315) whose content is an
//! `SpcIndirectDataContent` with the image hash, and exactly one `SignerInfo` naming
//! its certificate by issuer and serial number. A signature is good for an image when
//! the hash it signs is the image hash recomputed from the file ([`super::image_hash`]'s
//! code, the one signing uses), its `messageDigest` attribute is the SHA-256 of the
//! `SpcIndirectDataContent` (its content octets, as Authenticode specifies), and the
//! RSA PKCS#1 v1.5 signature over the DER of the authenticated attributes (tagged as
//! the `SET OF` they are) verifies with the certificate's public key. Whether the
//! certificate is trusted is the caller's question: each signature names its
//! certificate by SHA-256 and subject. SHA-256 signatures only, what cairn writes and
//! `sbsign` writes.

use super::{
    context, hash_with, layout, oid, rsa_public_key, AuthenticodeError, INTEGER, OBJECT_IDENTIFIER,
    OCTET_STRING, SEQUENCE, SET, WIN_CERT_REVISION_2_0, WIN_CERT_TYPE_PKCS_SIGNED_DATA,
};
use crate::digest::Sha256Digest;
use der::asn1::AnyRef;
use der::{Decode, Encode, Reader, SliceReader, Tagged};
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha2::{Digest, Sha256};

/// A PE32+ image's Authenticode signatures, and the image hash they must sign.
pub struct SignedImage<'a> {
    /// The image hash recomputed from the file.
    pub image_hash: Sha256Digest,
    /// Each `WIN_CERTIFICATE` in the certificate table, in order, read or why it
    /// cannot be; empty when the image is not signed.
    pub signatures: Vec<Result<Signature<'a>, SignatureError>>,
}

/// One Authenticode signature, taken apart.
pub struct Signature<'a> {
    /// SHA-256 of the signer's certificate (DER), and its subject (RFC 4514).
    pub cert_sha256: Sha256Digest,
    pub subject: String,
    /// The image hash the `SpcIndirectDataContent` holds.
    pub signed_hash: Sha256Digest,
    /// The `SpcIndirectDataContent`'s content octets, which `messageDigest` covers.
    content: &'a [u8],
    message_digest: &'a [u8],
    /// The authenticated attributes as the DER `SET OF` the signature covers.
    signed_attributes: Vec<u8>,
    signature: &'a [u8],
    public_key: RsaPublicKey,
}

/// A `WIN_CERTIFICATE` that is not an Authenticode signature cairn can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the signature at byte {at} of the image cannot be read: {what}")]
pub struct SignatureError {
    pub at: usize,
    pub what: String,
}

/// What is wrong with a signature that was read, for the image it is in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureProblem {
    #[error("it signs the image hash {signed}, but the image hashes to {actual}")]
    ImageHash {
        signed: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error(
        "its messageDigest attribute is not the SHA-256 of the SpcIndirectDataContent it carries"
    )]
    MessageDigest,
    #[error("its RSA signature over the authenticated attributes does not verify with the certificate's public key")]
    Rsa,
}

impl Signature<'_> {
    /// What is wrong with this signature over an image that hashes to `image_hash`;
    /// empty when firmware trusting its certificate runs the image.
    pub fn problems(&self, image_hash: Sha256Digest) -> Vec<SignatureProblem> {
        let mut problems = Vec::new();
        if self.signed_hash != image_hash {
            problems.push(SignatureProblem::ImageHash {
                signed: self.signed_hash,
                actual: image_hash,
            });
        }
        if Sha256::digest(self.content).as_slice() != self.message_digest {
            problems.push(SignatureProblem::MessageDigest);
        }
        let signed = Sha256::digest(&self.signed_attributes);
        if self
            .public_key
            .verify(Pkcs1v15Sign::new::<Sha256>(), &signed, self.signature)
            .is_err()
        {
            problems.push(SignatureProblem::Rsa);
        }
        problems
    }
}

/// The signatures of `pe`, and its image hash.
pub fn signatures(pe: &[u8]) -> Result<SignedImage<'_>, AuthenticodeError> {
    let l = layout(pe)?;
    let image_hash = hash_with(pe, &l);
    let (table_at, table_size) = l.certificate_table;
    // An entry of size 0 means no table, wherever it points; one of another size lies
    // within the file ([`layout`] checked it).
    let table = pe.get(table_at..table_at + table_size).unwrap_or_default();
    let mut signatures = Vec::new();
    let mut offset = 0;
    // Entries start 8-byte aligned; what is left after the last is padding.
    while offset + 8 <= table.len() {
        let at = table_at + offset;
        let fail = |what: String| SignatureError { at, what };
        let length = u32::from_le_bytes(table[offset..offset + 4].try_into().expect("4 bytes"));
        let length = length as usize;
        if length < 8 || offset + length > table.len() {
            signatures.push(Err(fail(format!(
                "its WIN_CERTIFICATE length {length} does not fit the certificate table ({} bytes from byte {at})",
                table.len() - offset
            ))));
            break;
        }
        let revision = u16::from_le_bytes([table[offset + 4], table[offset + 5]]);
        let kind = u16::from_le_bytes([table[offset + 6], table[offset + 7]]);
        signatures.push(
            if (revision, kind) != (WIN_CERT_REVISION_2_0, WIN_CERT_TYPE_PKCS_SIGNED_DATA) {
                Err(fail(format!(
                    "its WIN_CERTIFICATE has revision {revision:#06x} and type {kind:#06x}, not 0x0200 and 0x0002 (PKCS#7 SignedData)"
                )))
            } else {
                read_signature(&table[offset + 8..offset + length]).map_err(fail)
            },
        );
        offset += length.next_multiple_of(8);
    }
    Ok(SignedImage {
        image_hash,
        signatures,
    })
}

/// One DER element: its tag, its content octets, and its whole encoding.
#[derive(Clone, Copy)]
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    encoding: &'a [u8],
}

/// The first DER element of `bytes`, and the bytes after it.
fn element(bytes: &[u8]) -> Result<(Element<'_>, &[u8]), String> {
    let bad = |e: der::Error| format!("not DER: {e}");
    let mut reader = SliceReader::new(bytes).map_err(bad)?;
    let encoding = reader.tlv_bytes().map_err(bad)?;
    let any = AnyRef::from_der(encoding).map_err(bad)?;
    let element = Element {
        tag: any.tag().into(),
        content: any.value(),
        encoding,
    };
    Ok((element, &bytes[encoding.len()..]))
}

/// The DER elements `bytes` is made of, in order.
fn elements(mut bytes: &[u8]) -> Result<Vec<Element<'_>>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (next, rest) = element(bytes)?;
        out.push(next);
        bytes = rest;
    }
    Ok(out)
}

/// The elements inside `element`, which must have `tag`; `what` names it in errors.
fn inside<'a>(element: Element<'a>, tag: u8, what: &str) -> Result<Vec<Element<'a>>, String> {
    if element.tag != tag {
        return Err(format!(
            "{what} has tag {:#04x}, not {tag:#04x}",
            element.tag
        ));
    }
    elements(element.content)
}

/// The object identifier of an `AlgorithmIdentifier` (its parameters absent or NULL),
/// with its tag and length as [`oid`] spells them.
fn algorithm<'a>(element: Element<'a>, what: &str) -> Result<&'a [u8], String> {
    match inside(element, SEQUENCE, what)?[..] {
        [id]
        | [id, Element {
            encoding: [0x05, 0x00],
            ..
        }] if id.tag == OBJECT_IDENTIFIER => Ok(id.encoding),
        _ => Err(format!("{what} is not an AlgorithmIdentifier")),
    }
}

fn sha256(element: Element, what: &str) -> Result<(), String> {
    if algorithm(element, what)? == oid::SHA256 {
        Ok(())
    } else {
        Err(format!(
            "{what} is not SHA-256 (cairn checks SHA-256 signatures only)"
        ))
    }
}

/// PKCS#7 (RFC 2315) `SignedData` and `SignerInfo` are version 1.
fn version_1(element: Element, what: &str) -> Result<(), String> {
    if element.tag == INTEGER && element.content == [1] {
        Ok(())
    } else {
        Err(format!("{what}'s version is not 1"))
    }
}

/// Reads the PKCS#7 `ContentInfo` of one `WIN_CERTIFICATE`.
fn read_signature(pkcs7: &[u8]) -> Result<Signature<'_>, String> {
    let (content_info, rest) = element(pkcs7)?;
    // Some signers count the padding to 8 bytes into the WIN_CERTIFICATE.
    if rest.iter().any(|&b| b != 0) {
        return Err("the WIN_CERTIFICATE holds more than the PKCS#7 ContentInfo".into());
    }
    let [content_type, explicit] = inside(content_info, SEQUENCE, "the ContentInfo")?[..] else {
        return Err("the ContentInfo is not a content type and a content".into());
    };
    if content_type.encoding != oid::SIGNED_DATA {
        return Err("the ContentInfo is not PKCS#7 signedData".into());
    }
    let [signed_data] = inside(explicit, context(0), "the ContentInfo's content")?[..] else {
        return Err("the ContentInfo's content is not one SignedData".into());
    };
    let fields = inside(signed_data, SEQUENCE, "the SignedData")?;
    let [version, digest_algorithms, encapsulated, ref rest @ ..] = fields[..] else {
        return Err("the SignedData is too short".into());
    };
    version_1(version, "the SignedData")?;
    // EDK2 takes the image hash's algorithm from here.
    let digest_algorithms = inside(digest_algorithms, SET, "the SignedData's digestAlgorithms")?;
    if digest_algorithms.is_empty() {
        return Err("the SignedData's digestAlgorithms is empty".into());
    }
    for a in digest_algorithms {
        sha256(a, "the SignedData's digestAlgorithm")?;
    }
    let (certificates, rest) = match rest {
        [c, rest @ ..] if c.tag == context(0) => (elements(c.content)?, rest),
        _ => (Vec::new(), rest),
    };
    // Certificate revocation lists, which firmware does not read.
    let rest = match rest {
        [c, rest @ ..] if c.tag == context(1) => rest,
        _ => rest,
    };
    let [signer_infos] = rest else {
        return Err("the SignedData does not end with its signerInfos".into());
    };
    let signer_infos = inside(*signer_infos, SET, "the signerInfos")?;
    let [signer_info] = signer_infos[..] else {
        return Err(format!(
            "the SignedData has {} SignerInfos; Authenticode has exactly one",
            signer_infos.len()
        ));
    };

    let [content_type, explicit] = inside(encapsulated, SEQUENCE, "the signed contentInfo")?[..]
    else {
        return Err("the signed contentInfo is not a content type and a content".into());
    };
    if content_type.encoding != oid::SPC_INDIRECT_DATA {
        return Err("the signed content is not an SpcIndirectDataContent".into());
    }
    let [indirect] = inside(explicit, context(0), "the signed content")?[..] else {
        return Err("the signed content is not one SpcIndirectDataContent".into());
    };
    let [_data, digest_info] = inside(indirect, SEQUENCE, "the SpcIndirectDataContent")?[..] else {
        return Err("the SpcIndirectDataContent is not data and a DigestInfo".into());
    };
    let [digest_algorithm, digest] = inside(digest_info, SEQUENCE, "the DigestInfo")?[..] else {
        return Err("the DigestInfo is not an algorithm and a digest".into());
    };
    sha256(digest_algorithm, "the image hash's algorithm")?;
    let signed_hash = match (digest.tag, <[u8; 32]>::try_from(digest.content)) {
        (OCTET_STRING, Ok(hash)) => Sha256Digest::from_bytes(hash),
        _ => return Err("the signed image hash is not a 32-byte OCTET STRING".into()),
    };

    let fields = inside(signer_info, SEQUENCE, "the SignerInfo")?;
    let [version, issuer_and_serial, digest_algorithm, attributes, signature_algorithm, signature, ..] =
        fields[..]
    else {
        return Err(
            "the SignerInfo is too short (are its authenticated attributes missing?)".into(),
        );
    };
    version_1(version, "the SignerInfo")?;
    sha256(digest_algorithm, "the SignerInfo's digestAlgorithm")?;
    if ![oid::RSA_ENCRYPTION, oid::SHA256_WITH_RSA]
        .contains(&algorithm(signature_algorithm, "the signature algorithm")?)
    {
        return Err("the signature algorithm is not RSA".into());
    }
    if signature.tag != OCTET_STRING {
        return Err("the signature is not an OCTET STRING".into());
    }
    let message_digest = message_digest(attributes)?;
    let [issuer, serial] = inside(issuer_and_serial, SEQUENCE, "the issuerAndSerialNumber")?[..]
    else {
        return Err("the issuerAndSerialNumber is not an issuer and a serial number".into());
    };
    let (certificate, parsed) = certificates
        .iter()
        .find_map(|c| {
            let parsed = x509_cert::Certificate::from_der(c.encoding).ok()?;
            let tbs = &parsed.tbs_certificate;
            let named = tbs.issuer.to_der().ok()? == issuer.encoding
                && tbs.serial_number.to_der().ok()? == serial.encoding;
            named.then_some((c.encoding, parsed))
        })
        .ok_or(
            "the signer's certificate (named by issuer and serial number) is not in the signature",
        )?;
    let public_key =
        rsa_public_key(&parsed).ok_or("the signer's certificate holds no RSA public key")?;
    Ok(Signature {
        cert_sha256: Sha256Digest::of(certificate),
        subject: parsed.tbs_certificate.subject.to_string(),
        signed_hash,
        content: indirect.content,
        message_digest,
        // The signature covers the attributes encoded as the SET OF they are, not as
        // the [0] IMPLICIT field that carries them.
        signed_attributes: crate::keys::der(SET, attributes.content),
        signature: signature.content,
        public_key,
    })
}

/// The `messageDigest` attribute's value; the `contentType` attribute must name the
/// signed content.
fn message_digest(attributes: Element<'_>) -> Result<&[u8], String> {
    let mut message_digest = None;
    let mut content_type = None;
    for attribute in inside(attributes, context(0), "the authenticated attributes")? {
        let [kind, values] = inside(attribute, SEQUENCE, "an authenticated attribute")?[..] else {
            return Err("an authenticated attribute is not a type and values".into());
        };
        let values = inside(values, SET, "an authenticated attribute's values")?;
        match (kind.encoding, &values[..]) {
            (oid::MESSAGE_DIGEST, [value]) if value.tag == OCTET_STRING => {
                message_digest = Some(value.content)
            }
            (oid::CONTENT_TYPE, [value]) => content_type = Some(value.encoding),
            (oid::MESSAGE_DIGEST | oid::CONTENT_TYPE, _) => {
                return Err("the messageDigest or contentType attribute is not one value".into())
            }
            _ => {}
        }
    }
    if content_type != Some(oid::SPC_INDIRECT_DATA) {
        return Err(
            "the contentType attribute is missing or does not name SpcIndirectDataContent".into(),
        );
    }
    Ok(message_digest.ok_or("no messageDigest attribute")?)
}

/// Also the `sbsign` signatures other modules' tests check.
#[cfg(test)]
pub(crate) mod tests;
