//! Ed25519 keys for signing attestations and ledger entries and verifying signed
//! sources; below every stage, so `resolve`, `attest` and `ledger` share them.
//!
//! Private keys are PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey
//! -algorithm ed25519` writes); public keys are SPKI PEM (`-----BEGIN PUBLIC KEY-----`)
//! or an OpenSSH `ssh-ed25519 AAAA...` line. A key's id is the lower-case hex SHA-256
//! of its DER-encoded SubjectPublicKeyInfo, whatever format it was read from, so the
//! same key has the same id everywhere.

use crate::digest::Sha256Digest;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use std::path::{Path, PathBuf};

pub use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an Ed25519 private key in PKCS#8 PEM form (`-----BEGIN PRIVATE KEY-----`); create one with `cairn keygen`")]
    NotPrivateKey { path: PathBuf },
    #[error("{path} is not an Ed25519 public key (SPKI PEM `-----BEGIN PUBLIC KEY-----` or an OpenSSH `ssh-ed25519 ...` line)")]
    NotPublicKey { path: PathBuf },
    #[error("cannot write key {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The key id: hex SHA-256 of the DER SubjectPublicKeyInfo.
pub fn key_id(key: &VerifyingKey) -> String {
    let der = key
        .to_public_key_der()
        .expect("an Ed25519 public key encodes as SPKI DER");
    Sha256Digest::of(der.as_bytes()).hex()
}

pub fn generate() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// Whether every signature in `signatures` is valid for its message and key (the same
/// index in each slice), checked together: one multiscalar multiplication with a
/// random 128-bit weight per signature, and one term per distinct key rather than per
/// signature, which halves the work when, as in a ledger, a few keys sign everything.
/// This is the cofactored batch equation `ed25519_dalek::verify_batch` checks:
/// `[8](-(sum z_i s_i) B + sum z_i R_i + sum (z_i k_i) A_i) = 0` with
/// `k_i = SHA-512(R_i || A_i || M_i)`. `false` means at least one is not valid (or
/// not decodable): check them one by one to find which. Each message is given as the
/// pieces it is made of, in order, so that a caller never copies one together.
pub fn verify_batch(
    messages: &[&[&[u8]]],
    signatures: &[Signature],
    keys: &[VerifyingKey],
) -> bool {
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
    use rand_core::RngCore as _;
    use sha2::Digest as _;

    assert!(messages.len() == signatures.len() && keys.len() == signatures.len());
    let mut weights = vec![0u8; 16 * signatures.len()];
    rand_core::OsRng.fill_bytes(&mut weights);
    let mut base = Scalar::ZERO;
    let mut r_weights = Vec::with_capacity(signatures.len());
    let mut r_points = Vec::with_capacity(signatures.len());
    // (key bytes, key point, the sum of z_i k_i over its signatures)
    let mut key_terms: Vec<([u8; 32], EdwardsPoint, Scalar)> = Vec::new();
    for (i, ((message, signature), key)) in messages.iter().zip(signatures).zip(keys).enumerate() {
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(*signature.s_bytes()))
        else {
            return false;
        };
        let Some(r) = CompressedEdwardsY(*signature.r_bytes()).decompress() else {
            return false;
        };
        let mut z = [0u8; 32];
        z[..16].copy_from_slice(&weights[16 * i..16 * (i + 1)]);
        let z = Scalar::from_bytes_mod_order(z);
        let mut hash = sha2::Sha512::new()
            .chain_update(signature.r_bytes())
            .chain_update(key.as_bytes());
        for piece in message.iter() {
            hash.update(piece);
        }
        let k = Scalar::from_hash(hash);
        base -= z * s;
        r_weights.push(z);
        r_points.push(r);
        match key_terms
            .iter_mut()
            .find(|(bytes, _, _)| bytes == key.as_bytes())
        {
            Some((_, _, weight)) => *weight += z * k,
            None => key_terms.push((*key.as_bytes(), key.to_edwards(), z * k)),
        }
    }
    let scalars = std::iter::once(base)
        .chain(r_weights)
        .chain(key_terms.iter().map(|(_, _, weight)| *weight));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(r_points)
        .chain(key_terms.iter().map(|(_, point, _)| *point));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

/// PKCS#8 v1 (RFC 8410, without the embedded public key): the form `openssl genpkey`
/// writes and the one OpenSSL 3.0 and pyca/cryptography read; dalek's default v2 is not.
pub fn private_pem(key: &SigningKey) -> String {
    ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(Default::default())
    .expect("an Ed25519 key encodes as PKCS#8 PEM")
    .to_string()
}

pub fn public_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(Default::default())
        .expect("an Ed25519 key encodes as SPKI PEM")
}

pub fn parse_private(text: &str, path: &Path) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(text.trim())
        .map_err(|_| KeyError::NotPrivateKey { path: path.into() })
}

/// Parses SPKI PEM or an OpenSSH `ssh-ed25519` public key line.
pub fn parse_public(text: &str, path: &Path) -> Result<VerifyingKey, KeyError> {
    let bad = || KeyError::NotPublicKey { path: path.into() };
    let text = text.trim();
    if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        return VerifyingKey::from_public_key_pem(text).map_err(|_| bad());
    }
    let mut fields = text.split_whitespace();
    if fields.next() != Some("ssh-ed25519") {
        return Err(bad());
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(fields.next().ok_or_else(bad)?)
        .map_err(|_| bad())?;
    openssh_ed25519_blob(&blob).ok_or_else(bad)
}

/// Decodes the SSH wire form `string "ssh-ed25519" || string key(32)`.
pub fn openssh_ed25519_blob(blob: &[u8]) -> Option<VerifyingKey> {
    let mut r = SshReader(blob);
    if r.string()? != b"ssh-ed25519" {
        return None;
    }
    let key: [u8; 32] = r.string()?.try_into().ok()?;
    if !r.0.is_empty() {
        return None;
    }
    VerifyingKey::from_bytes(&key).ok()
}

/// Reads SSH wire-format fields (`uint32 length || bytes`).
pub struct SshReader<'a>(pub &'a [u8]);

impl<'a> SshReader<'a> {
    pub fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        Some(u32::from_be_bytes(*head))
    }

    pub fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        if self.0.len() < len {
            return None;
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(s)
    }
}

pub fn read_private(path: &Path) -> Result<SigningKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.into(),
        source,
    })?;
    parse_private(&text, path)
}

pub fn read_public(path: &Path) -> Result<VerifyingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.into(),
        source,
    })?;
    parse_public(&text, path)
}

/// Writes `<prefix>.key` (private, mode 0600) and `<prefix>.pub`, refusing to overwrite.
pub fn write_pair(key: &SigningKey, prefix: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let private = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    for (path, text, mode) in [
        (&private, private_pem(key), 0o600),
        (&public, public_pem(&key.verifying_key()), 0o644),
    ] {
        let err = |source| KeyError::Write {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
    }
    Ok((private, public))
}

/// DER: `tag`, the definite length in its shortest form, then `content` (X.690
/// 8.1.3). Certificates' subject names and PKCS#7 structures are built with it.
pub fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_passes_only_when_every_signature_is_valid_whatever_the_keys() {
        let signers = [generate(), generate(), generate()];
        let messages: Vec<Vec<u8>> = (0..40).map(|i| format!("entry {i}").into_bytes()).collect();
        let keys: Vec<VerifyingKey> = (0..40).map(|i| signers[i % 3].verifying_key()).collect();
        let mut signatures: Vec<Signature> =
            (0..40).map(|i| signers[i % 3].sign(&messages[i])).collect();
        // Each message in two pieces, split anywhere: the batch hashes them in order.
        let pieces: Vec<[&[u8]; 2]> = messages.iter().map(|m| [&m[..3], &m[3..]]).collect();
        let refs: Vec<&[&[u8]]> = pieces.iter().map(|p| p.as_slice()).collect();
        assert!(verify_batch(&refs, &signatures, &keys));
        assert!(verify_batch(&[], &[], &[]));

        // One message changed, one signature by the wrong key, one signature damaged.
        let mut changed = refs.clone();
        changed[17] = &[b"entry 17 (edited)"];
        assert!(!verify_batch(&changed, &signatures, &keys));
        let mut wrong_key = keys.clone();
        wrong_key[5] = signers[0].verifying_key();
        assert!(!verify_batch(&refs, &signatures, &wrong_key));
        let mut bytes = signatures[30].to_bytes();
        bytes[3] ^= 1;
        signatures[30] = Signature::from_bytes(&bytes);
        assert!(!verify_batch(&refs, &signatures, &keys));
        // An s that is not below the group order is refused, as single verification does.
        let mut bytes = signatures[0].to_bytes();
        bytes[63] |= 0xf0;
        signatures[30] = Signature::from_bytes(&bytes);
        assert!(!verify_batch(&refs, &signatures, &keys));
    }

    #[test]
    fn pem_round_trip_keeps_the_key_and_its_id() {
        let key = generate();
        let back = parse_private(&private_pem(&key), Path::new("k")).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        let public = parse_public(&public_pem(&key.verifying_key()), Path::new("p")).unwrap();
        assert_eq!(key_id(&public), key_id(&key.verifying_key()));
        assert_eq!(key_id(&public).len(), 64);
    }

    #[test]
    fn openssh_public_keys_have_the_same_id_as_pem() {
        let key = generate();
        let mut blob = Vec::new();
        for field in [&b"ssh-ed25519"[..], key.verifying_key().as_bytes()] {
            blob.extend_from_slice(&(field.len() as u32).to_be_bytes());
            blob.extend_from_slice(field);
        }
        let line = format!(
            "ssh-ed25519 {} someone@host",
            base64::engine::general_purpose::STANDARD.encode(&blob)
        );
        let parsed = parse_public(&line, Path::new("p")).unwrap();
        assert_eq!(key_id(&parsed), key_id(&key.verifying_key()));
    }

    #[test]
    fn openssl_reads_our_private_key_and_derives_the_same_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate();
        let (private, public) = write_pair(&key, &dir.path().join("k")).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .output()
            .expect("openssl is installed (Debian package openssl)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            std::fs::read_to_string(public).unwrap()
        );
    }

    #[test]
    fn keys_written_by_openssl_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let ok = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&path)
            .status()
            .expect("openssl is installed (Debian package openssl)");
        assert!(ok.success());
        read_private(&path).unwrap();
    }
}
