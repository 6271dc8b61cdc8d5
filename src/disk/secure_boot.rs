//! The Secure Boot signing key of a `boot: uefi` disk (`vm.secure_boot: { key, cert }`
//! or `cairn build --secure-boot-key KEY --secure-boot-cert CERT`): an RSA private key
//! and the X.509 certificate firmware trusts it by (enrolled in `db`), read and checked
//! to belong together before anything is built. The unified kernel image is signed
//! with it ([`super::authenticode`]). The key never goes into the disk or an
//! attestation; the certificate's SHA-256 and subject go into the provenance.

use super::authenticode::{self, AuthenticodeError};
use crate::diag::Diagnose;
use crate::digest::Sha256Digest;
use der::{Decode, Encode};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

/// RSA keys shorter than this are refused: firmware and current guidance want 2048.
const MIN_RSA_BITS: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum SecureBootError {
    #[error("cannot read the Secure Boot {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the Secure Boot key {path} is not an unencrypted RSA private key in PEM form")]
    NotRsaKey { path: PathBuf },
    #[error("the Secure Boot key {path} has {bits} bits; at least {MIN_RSA_BITS} are needed")]
    KeyTooShort { path: PathBuf, bits: usize },
    #[error("the Secure Boot certificate {path} is not an X.509 certificate (PEM or DER)")]
    NotCertificate { path: PathBuf },
    #[error("the Secure Boot certificate {path} does not hold an RSA public key")]
    NotRsaCertificate { path: PathBuf },
    #[error("the Secure Boot key {key} does not belong to the certificate {cert}: their public keys differ")]
    Mismatch { key: PathBuf, cert: PathBuf },
}

impl Diagnose for SecureBootError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        const MAKE: &str = "make a pair with `openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj /CN=NAME/ -keyout db.key -out db.crt`, and enroll db.crt in the firmware's db (docs/vm.md, Secure Boot)";
        Some(Cow::Borrowed(match self {
            SecureBootError::Read { .. } => {
                "paths in the recipe are relative to the recipe file; flags are relative to the working directory"
            }
            SecureBootError::NotRsaKey { .. } => {
                "give a PKCS#8 (`-----BEGIN PRIVATE KEY-----`) or PKCS#1 (`-----BEGIN RSA PRIVATE KEY-----`) RSA key without a passphrase (`openssl pkey -in KEY -out KEY.pem` removes one)"
            }
            SecureBootError::KeyTooShort { .. } | SecureBootError::NotRsaCertificate { .. } => {
                MAKE
            }
            SecureBootError::NotCertificate { .. } => {
                "give the certificate (`-----BEGIN CERTIFICATE-----`, or DER) that is enrolled in the firmware's db"
            }
            SecureBootError::Mismatch { .. } => {
                "give the certificate made for this key (`openssl x509 -noout -pubkey -in CERT` and `openssl pkey -pubout -in KEY` print the same key when they match)"
            }
        }))
    }
}

/// A Secure Boot signing key and its certificate, checked to belong together.
#[derive(Clone)]
pub struct SecureBootKey {
    key: RsaPrivateKey,
    certificate: Vec<u8>,
    issuer: Vec<u8>,
    serial: Vec<u8>,
    /// SHA-256 of the certificate's DER bytes: how the provenance names it.
    pub cert_sha256: Sha256Digest,
    /// The certificate's subject (RFC 4514), for people reading the provenance.
    pub subject: String,
}

/// Never prints the key.
impl fmt::Debug for SecureBootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureBootKey")
            .field("cert_sha256", &self.cert_sha256)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl SecureBootKey {
    /// Reads the key (PEM) at `key` and the certificate (PEM or DER) at `cert`, both
    /// relative to `dir` (named in errors as given).
    pub fn read(dir: &Path, key: &Path, cert: &Path) -> Result<SecureBootKey, SecureBootError> {
        let read = |what, path: &Path| {
            std::fs::read(dir.join(path)).map_err(|source| SecureBootError::Read {
                what,
                path: path.into(),
                source,
            })
        };
        let key_bytes = read("key", key)?;
        let cert_bytes = read("certificate", cert)?;
        SecureBootKey::parse(&key_bytes, &cert_bytes, key, cert)
    }

    /// Parses the key and certificate bytes; the paths name them in errors.
    pub fn parse(
        key_pem: &[u8],
        cert_bytes: &[u8],
        key_path: &Path,
        cert_path: &Path,
    ) -> Result<SecureBootKey, SecureBootError> {
        let not_key = || SecureBootError::NotRsaKey {
            path: key_path.into(),
        };
        let text = std::str::from_utf8(key_pem).map_err(|_| not_key())?.trim();
        let key = RsaPrivateKey::from_pkcs8_pem(text)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(text))
            .map_err(|_| not_key())?;
        let bits = key.size() * 8;
        if bits < MIN_RSA_BITS {
            return Err(SecureBootError::KeyTooShort {
                path: key_path.into(),
                bits,
            });
        }
        let not_cert = || SecureBootError::NotCertificate {
            path: cert_path.into(),
        };
        let certificate = match der::pem::decode_vec(cert_bytes) {
            Ok(("CERTIFICATE", der)) => der,
            Ok(_) => return Err(not_cert()),
            Err(_) => cert_bytes.to_vec(),
        };
        let parsed = x509_cert::Certificate::from_der(&certificate).map_err(|_| not_cert())?;
        let tbs = &parsed.tbs_certificate;
        let public = authenticode::rsa_public_key(&parsed).ok_or_else(|| {
            SecureBootError::NotRsaCertificate {
                path: cert_path.into(),
            }
        })?;
        if public != key.to_public_key() {
            return Err(SecureBootError::Mismatch {
                key: key_path.into(),
                cert: cert_path.into(),
            });
        }
        const DECODED: &str = "a certificate that was just decoded encodes again";
        Ok(SecureBootKey {
            issuer: tbs.issuer.to_der().expect(DECODED),
            serial: tbs.serial_number.to_der().expect(DECODED),
            subject: tbs.subject.to_string(),
            cert_sha256: Sha256Digest::of(&certificate),
            certificate,
            key,
        })
    }

    /// `pe` with this key's Authenticode signature appended.
    pub fn sign(&self, pe: &[u8]) -> Result<Vec<u8>, AuthenticodeError> {
        authenticode::sign(
            pe,
            &authenticode::Signer {
                key: &self.key,
                certificate: &self.certificate,
                issuer: &self.issuer,
                serial: &self.serial,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};

    fn test_pair() -> (Vec<u8>, Vec<u8>) {
        let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/keys");
        (
            std::fs::read(keys.join("secure-boot-test.key")).unwrap(),
            std::fs::read(keys.join("secure-boot-test.crt")).unwrap(),
        )
    }

    fn parse(key: &[u8], cert: &[u8]) -> Result<SecureBootKey, SecureBootError> {
        SecureBootKey::parse(key, cert, Path::new("db.key"), Path::new("db.crt"))
    }

    #[test]
    fn a_pem_or_der_certificate_names_the_same_signer() {
        let (key, cert) = test_pair();
        let from_pem = parse(&key, &cert).unwrap();
        let (_, der) = der::pem::decode_vec(&cert).unwrap();
        let from_der = parse(&key, &der).unwrap();
        assert_eq!(from_pem.cert_sha256, Sha256Digest::of(&der));
        assert_eq!(from_der.cert_sha256, from_pem.cert_sha256);
        assert!(
            from_pem
                .subject
                .starts_with("CN=cairn test Secure Boot db key"),
            "{}",
            from_pem.subject
        );
        let shown = format!("{from_pem:?}");
        assert!(shown.contains(&from_pem.cert_sha256.hex()) && !shown.contains("key:"));
    }

    #[test]
    fn keys_that_cannot_sign_for_the_certificate_are_refused() {
        let (key, cert) = test_pair();
        let other = RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let other = other.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(matches!(
            parse(other.as_bytes(), &cert),
            Err(SecureBootError::Mismatch { .. })
        ));
        let short = RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap();
        let short = short.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert!(matches!(
            parse(short.as_bytes(), &cert),
            Err(SecureBootError::KeyTooShort { bits: 1024, .. })
        ));
        assert!(matches!(
            parse(&cert, &cert),
            Err(SecureBootError::NotRsaKey { .. })
        ));
        assert!(matches!(
            parse(&key, &key),
            Err(SecureBootError::NotCertificate { .. })
        ));
        let error = parse(&key, b"garbage").unwrap_err();
        assert!(error.hint().unwrap().contains("enrolled"), "{error}");
    }
}
