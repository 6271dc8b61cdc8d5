//! Detached signatures on sources: proves that a file's bytes were signed by the key
//! the recipe trusts, before the source is used.
//!
//! Takes the signed file, its signature file and an Ed25519 public key file (SPKI PEM
//! or an OpenSSH `ssh-ed25519` line, see [`crate::keys`]). Two signature
//! formats are accepted, told apart by content:
//! - sshsig, the armored `-----BEGIN SSH SIGNATURE-----` text that
//!   `ssh-keygen -Y sign -f <key> -n file <file>` writes (OpenSSH `PROTOCOL.sshsig`,
//!   version 1, hash sha512 or sha256), made by an `ssh-ed25519` key, in namespace
//!   `file`, and carrying the trusted key itself;
//! - raw Ed25519 (RFC 8032, not the prehashed variant): the 64 signature bytes over the
//!   file's bytes, binary or standard base64 (`openssl pkeyutl -sign -rawin`).
//!
//! The file is read once, streamed with bounded memory; [`Verified::sha256`] is the
//! digest of exactly the bytes the signature was checked against, so the caller can
//! make sure it pins those bytes. Every problem is an error: nothing is used unverified.

use crate::diag::Diagnose;
use crate::digest::Sha256Digest;
use crate::keys::{self, KeyError, Signature, SshReader, VerifyingKey};
use base64::Engine as _;
use ed25519_dalek::StreamVerifier;
use sha2::{Digest as _, Sha256, Sha512};
use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What a good signature establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Id of the trusted key that made the signature ([`keys::key_id`]).
    pub key_id: String,
    /// SHA-256 of the bytes the signature was verified over.
    pub sha256: Sha256Digest,
}

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{path} is a {kind}, but a signature ({signature}) covers the bytes of one file")]
    NotAFile {
        path: PathBuf,
        kind: &'static str,
        signature: PathBuf,
    },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("signature {signature} is rejected for trusted key {key_id}: {problem}")]
    Rejected {
        signature: PathBuf,
        key_id: String,
        problem: Problem,
    },
}

/// Why a readable signature does not vouch for the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the trusted key is a small-order point, for which anyone can forge signatures; it is not a usable Ed25519 key")]
    WeakKey,
    #[error("it is neither an SSH signature (`-----BEGIN SSH SIGNATURE-----`) nor a raw Ed25519 signature (64 bytes, binary or base64)")]
    UnknownFormat,
    #[error("it is malformed: {0}")]
    Malformed(&'static str),
    #[error("it is an SSH signature of version {0}; only version 1 is supported")]
    Version(u32),
    #[error("it was made with a `{0}` key; only `ssh-ed25519` keys are supported")]
    KeyType(String),
    #[error("it was made by key {0}, not by the trusted key")]
    WrongKey(String),
    #[error("its namespace is `{0}`, but cairn accepts only namespace `file`")]
    Namespace(String),
    #[error("its hash algorithm is `{0}`; sshsig allows only `sha256` and `sha512`")]
    Hash(String),
    #[error("it does not match the file's bytes: the file was changed after it was signed, or it was signed with another key")]
    Mismatch,
}

/// Every signature error has a hint: how to put the problem right.
impl Diagnose for SignatureError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        const SIGN: &str = "sign the file with `ssh-keygen -Y sign -f <private key> -n file <file>` (writes <file>.sig), or give a raw Ed25519 signature of its bytes (`openssl pkeyutl -sign -rawin -inkey <key.pem> -in <file>`), binary or base64";
        Some(Cow::Borrowed(match self {
            SignatureError::NotAFile { kind: "directory", .. } => "a directory has no canonical bytes to sign: pack it into an archive (e.g. `tar --sort=name -czf site.tar.gz site`), sign that, and use it as an `archive:` source",
            SignatureError::NotAFile { .. } => "point the source at a regular file",
            SignatureError::Read { .. } => "signature and key paths are relative to the recipe file; check the path and permissions",
            SignatureError::Key(_) => "`key:` must name an Ed25519 public key: an OpenSSH `ssh-ed25519 ...` line (the `.pub` file of `ssh-keygen -t ed25519`) or SPKI PEM (`openssl pkey -in <key.pem> -pubout`)",
            SignatureError::Rejected { problem, .. } => match problem {
                Problem::WeakKey | Problem::KeyType(_) => "cairn verifies Ed25519 signatures only: create a key with `ssh-keygen -t ed25519`, sign with `ssh-keygen -Y sign -f <key> -n file <file>`, and trust its `.pub` file",
                Problem::WrongKey(_) => "`key:` must be the public key of whoever signed the file: check which key the recipe trusts, or have the file signed with that key",
                Problem::Namespace(_) => "sign with `ssh-keygen -Y sign -f <key> -n file <file>`: `-n file` is the namespace cairn requires",
                Problem::Mismatch => "do not use this file unless you know why it changed; if its new content is intended, have it signed again (`ssh-keygen -Y sign -f <key> -n file <file>`) and update its pin",
                Problem::UnknownFormat | Problem::Malformed(_) | Problem::Version(_) | Problem::Hash(_) => SIGN,
            },
        }))
    }
}

/// Verifies that `signature` is a signature of the bytes of `data` by the key in `key`.
pub fn verify(data: &Path, signature: &Path, key: &Path) -> Result<Verified, SignatureError> {
    let file = open_regular_file(data, signature)?;
    let trusted = keys::read_public(key)?;
    let key_id = keys::key_id(&trusted);
    let rejected = |problem| SignatureError::Rejected {
        signature: signature.to_path_buf(),
        key_id: key_id.clone(),
        problem,
    };
    if trusted.is_weak() {
        return Err(rejected(Problem::WeakKey));
    }
    let text = read_signature_file(signature)?;
    let check = parse_signature(&text, &trusted).map_err(&rejected)?;
    let (sha256, check) = hash_file(file, data, check)?;
    check.finish(&trusted, &sha256).map_err(rejected)?;
    Ok(Verified { key_id, sha256 })
}

/// Opens `path` without blocking (a FIFO would otherwise wait for a writer) and makes
/// sure the handle is a regular file; the bytes are then read from this very handle.
fn open_regular_file(path: &Path, signature: &Path) -> Result<File, SignatureError> {
    use std::os::unix::fs::OpenOptionsExt;
    let read_error = |source| SignatureError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if meta.is_file() {
        Ok(file)
    } else {
        Err(SignatureError::NotAFile {
            path: path.to_path_buf(),
            signature: signature.to_path_buf(),
            kind: if meta.is_dir() {
                "directory"
            } else {
                "special file"
            },
        })
    }
}

/// Signatures are small; anything larger than this is not one we accept.
const MAX_SIGNATURE_FILE: u64 = 64 * 1024;

fn read_signature_file(path: &Path) -> Result<Vec<u8>, SignatureError> {
    let read_error = |source| SignatureError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .map_err(read_error)?
        .take(MAX_SIGNATURE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    Ok(bytes)
}

/// A parsed signature, waiting for the file's bytes.
enum Check {
    /// sshsig: the signed data is `prefix || string(H(file))`.
    SshSig {
        /// `"SSHSIG" || string(namespace) || string(reserved) || string(hash_algorithm)`.
        prefix: Vec<u8>,
        hash: SshHash,
        signature: Signature,
    },
    /// Raw Ed25519 over the file's bytes, verified as they stream past.
    Raw(Box<StreamVerifier>),
}

enum SshHash {
    /// The file's SHA-256, which is computed for the pin anyway.
    Sha256,
    Sha512(Box<Sha512>),
}

impl Check {
    fn update(&mut self, chunk: &[u8]) {
        match self {
            Check::SshSig {
                hash: SshHash::Sha512(hasher),
                ..
            } => hasher.update(chunk),
            Check::SshSig {
                hash: SshHash::Sha256,
                ..
            } => {}
            Check::Raw(verifier) => verifier.update(chunk),
        }
    }

    fn finish(self, trusted: &VerifyingKey, sha256: &Sha256Digest) -> Result<(), Problem> {
        match self {
            Check::SshSig {
                mut prefix,
                hash,
                signature,
            } => {
                match hash {
                    SshHash::Sha256 => put_string(&mut prefix, sha256.as_bytes()),
                    SshHash::Sha512(hasher) => put_string(&mut prefix, &hasher.finalize()),
                }
                trusted
                    .verify_strict(&prefix, &signature)
                    .map_err(|_| Problem::Mismatch)
            }
            Check::Raw(verifier) => verifier
                .finalize_and_verify()
                .map_err(|_| Problem::Mismatch),
        }
    }
}

fn hash_file(
    mut file: File,
    path: &Path,
    mut check: Check,
) -> Result<(Sha256Digest, Check), SignatureError> {
    let mut pin = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(SignatureError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        pin.update(&buf[..n]);
        check.update(&buf[..n]);
    }
    Ok((Sha256Digest::from_hasher(pin), check))
}

const ARMOR_BEGIN: &[u8] = b"-----BEGIN SSH SIGNATURE-----";
const ARMOR_END: &[u8] = b"-----END SSH SIGNATURE-----";
const SSHSIG_MAGIC: &[u8] = b"SSHSIG";
const NAMESPACE: &[u8] = b"file";

fn parse_signature(bytes: &[u8], trusted: &VerifyingKey) -> Result<Check, Problem> {
    if bytes.len() as u64 > MAX_SIGNATURE_FILE {
        return Err(Problem::UnknownFormat);
    }
    if let Some(armored) = bytes.trim_ascii_start().strip_prefix(ARMOR_BEGIN) {
        return parse_sshsig(&dearmor(armored)?, trusted);
    }
    let raw: [u8; 64] = match bytes.try_into() {
        Ok(binary) => binary,
        Err(_) => decode_base64(bytes)
            .and_then(|decoded| <[u8; 64]>::try_from(decoded).ok())
            .ok_or(Problem::UnknownFormat)?,
    };
    let verifier = trusted
        .verify_stream(&Signature::from_bytes(&raw))
        .map_err(|_| {
            Problem::Malformed(
                "the 64 bytes are not an Ed25519 signature (its S value is out of range)",
            )
        })?;
    Ok(Check::Raw(Box::new(verifier)))
}

/// Standard base64, ignoring line breaks and other white space.
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

/// The blob between the armor lines (`armored` starts right after the BEGIN line).
fn dearmor(armored: &[u8]) -> Result<Vec<u8>, Problem> {
    let end = armored
        .windows(ARMOR_END.len())
        .position(|w| w == ARMOR_END)
        .ok_or(Problem::Malformed(
            "there is no `-----END SSH SIGNATURE-----` line",
        ))?;
    if !armored[end + ARMOR_END.len()..].trim_ascii().is_empty() {
        return Err(Problem::Malformed(
            "there is text after the `-----END SSH SIGNATURE-----` line",
        ));
    }
    decode_base64(&armored[..end]).ok_or(Problem::Malformed(
        "the text between the armor lines is not base64",
    ))
}

/// The sshsig blob (PROTOCOL.sshsig, section 2), checked against everything cairn
/// requires before any file byte is read.
fn parse_sshsig(blob: &[u8], trusted: &VerifyingKey) -> Result<Check, Problem> {
    let truncated = Problem::Malformed("the SSH signature is truncated");
    let mut r = SshReader(blob.strip_prefix(SSHSIG_MAGIC).ok_or(Problem::Malformed(
        "the SSH signature does not start with `SSHSIG`",
    ))?);
    let version = r.u32().ok_or(truncated.clone())?;
    if version != 1 {
        return Err(Problem::Version(version));
    }
    let public_key = r.string().ok_or(truncated.clone())?;
    let namespace = r.string().ok_or(truncated.clone())?;
    let reserved = r.string().ok_or(truncated.clone())?;
    let hash_algorithm = r.string().ok_or(truncated.clone())?;
    let signature = r.string().ok_or(truncated)?;
    if !r.0.is_empty() {
        return Err(Problem::Malformed(
            "there are bytes after the signature field",
        ));
    }

    let key_type = SshReader(public_key)
        .string()
        .ok_or(Problem::Malformed("the public key field is empty"))?;
    if key_type != b"ssh-ed25519" {
        return Err(Problem::KeyType(lossy(key_type)));
    }
    let signer = keys::openssh_ed25519_blob(public_key).ok_or(Problem::Malformed(
        "the ssh-ed25519 public key field is not a valid key",
    ))?;
    if signer != *trusted {
        return Err(Problem::WrongKey(keys::key_id(&signer)));
    }
    if namespace != NAMESPACE {
        return Err(Problem::Namespace(lossy(namespace)));
    }
    let hash = match hash_algorithm {
        b"sha256" => SshHash::Sha256,
        b"sha512" => SshHash::Sha512(Box::default()),
        other => return Err(Problem::Hash(lossy(other))),
    };
    let signature = ed25519_signature(signature).ok_or(Problem::Malformed(
        "the signature field is not an ssh-ed25519 signature",
    ))?;

    let mut prefix = SSHSIG_MAGIC.to_vec();
    for field in [namespace, reserved, hash_algorithm] {
        put_string(&mut prefix, field);
    }
    Ok(Check::SshSig {
        prefix,
        hash,
        signature,
    })
}

/// `string "ssh-ed25519" || string signature(64)`.
fn ed25519_signature(field: &[u8]) -> Option<Signature> {
    let mut r = SshReader(field);
    if r.string()? != b"ssh-ed25519" {
        return None;
    }
    let bytes: [u8; 64] = r.string()?.try_into().ok()?;
    r.0.is_empty().then(|| Signature::from_bytes(&bytes))
}

/// Appends an SSH wire-format `string` (`uint32 length || bytes`).
fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("sshsig fields are far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A file to sign, larger than one read buffer so that streaming is exercised.
    fn data_file(dir: &Path) -> PathBuf {
        let path = dir.join("tools.tar.gz");
        let bytes: Vec<u8> = (0..600_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn run(cmd: &mut Command) {
        let out = cmd.output().expect("the tool is installed");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ssh-keygen -t <kind>`: returns (private key, public key line file).
    fn ssh_key(dir: &Path, name: &str, kind: &str) -> (PathBuf, PathBuf) {
        let private = dir.join(name);
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", "", "-f"])
            .arg(&private));
        (private.clone(), private.with_extension("pub"))
    }

    /// `ssh-keygen -Y sign`, with the signature moved to `<file>.<tag>.sig`.
    fn ssh_sign(key: &Path, namespace: &str, options: &[&str], file: &Path, tag: &str) -> PathBuf {
        run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-f"])
            .arg(key)
            .args(["-n", namespace])
            .args(options)
            .arg(file));
        let sig = file.with_extension(format!("{tag}.sig"));
        std::fs::rename(file.with_extension("gz.sig"), &sig).unwrap();
        sig
    }

    /// `openssl genpkey -algorithm ed25519`: returns (private PEM, public SPKI PEM).
    fn openssl_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let private = dir.join(format!("{name}.pem"));
        let public = dir.join(format!("{name}.pub.pem"));
        run(Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&private));
        run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public));
        (private, public)
    }

    fn openssl_sign(key: &Path, file: &Path, out: &Path) {
        run(Command::new("openssl")
            .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
            .arg(key)
            .arg("-in")
            .arg(file)
            .arg("-out")
            .arg(out));
    }

    fn expect_verified(data: &Path, sig: &Path, key: &Path) {
        let verified = verify(data, sig, key).unwrap();
        let trusted = keys::read_public(key).unwrap();
        assert_eq!(verified.key_id, keys::key_id(&trusted));
        assert_eq!(
            verified.sha256,
            Sha256Digest::of(&std::fs::read(data).unwrap())
        );
    }

    fn problem(result: Result<Verified, SignatureError>) -> Problem {
        match result {
            Err(SignatureError::Rejected { problem, .. }) => problem,
            other => panic!("expected a rejected signature, got {other:?}"),
        }
    }

    /// Decodes an armored sshsig file into its fields, for tests that alter one.
    fn sshsig_fields(sig: &Path) -> (u32, Vec<Vec<u8>>) {
        let text = std::fs::read(sig).unwrap();
        let blob = dearmor(text.strip_prefix(ARMOR_BEGIN).unwrap()).unwrap();
        let mut r = SshReader(&blob[SSHSIG_MAGIC.len()..]);
        let version = r.u32().unwrap();
        let fields = (0..5).map(|_| r.string().unwrap().to_vec()).collect();
        (version, fields)
    }

    fn write_sshsig(path: &Path, version: u32, fields: &[Vec<u8>]) {
        let mut blob = SSHSIG_MAGIC.to_vec();
        blob.extend_from_slice(&version.to_be_bytes());
        for field in fields {
            put_string(&mut blob, field);
        }
        let body = base64::engine::general_purpose::STANDARD.encode(blob);
        std::fs::write(
            path,
            format!("-----BEGIN SSH SIGNATURE-----\n{body}\n-----END SSH SIGNATURE-----\n"),
        )
        .unwrap();
    }

    #[test]
    fn raw_binary_signature_by_openssl_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (private, public) = openssl_key(dir.path(), "upstream");
        let sig = dir.path().join("tools.sig");
        openssl_sign(&private, &data, &sig);
        assert_eq!(std::fs::metadata(&sig).unwrap().len(), 64);
        expect_verified(&data, &sig, &public);
    }

    #[test]
    fn raw_base64_signature_verifies_even_with_line_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (private, public) = openssl_key(dir.path(), "upstream");
        let binary = dir.path().join("tools.bin");
        openssl_sign(&private, &data, &binary);
        // `openssl base64` breaks lines after 64 characters: 88 become two lines.
        let sig = dir.path().join("tools.b64");
        run(Command::new("openssl")
            .args(["base64", "-in"])
            .arg(&binary)
            .arg("-out")
            .arg(&sig));
        assert_eq!(std::fs::read_to_string(&sig).unwrap().lines().count(), 2);
        expect_verified(&data, &sig, &public);
    }

    #[test]
    fn sshsig_with_default_sha512_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (private, public) = ssh_key(dir.path(), "upstream", "ed25519");
        let sig = ssh_sign(&private, "file", &[], &data, "default");
        assert_eq!(sshsig_fields(&sig).1[3], b"sha512");
        expect_verified(&data, &sig, &public);
    }

    #[test]
    fn sshsig_with_sha256_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (private, public) = ssh_key(dir.path(), "upstream", "ed25519");
        let sig = ssh_sign(&private, "file", &["-O", "hashalg=sha256"], &data, "sha256");
        assert_eq!(sshsig_fields(&sig).1[3], b"sha256");
        expect_verified(&data, &sig, &public);
    }

    #[test]
    fn a_pem_key_verifies_an_sshsig_made_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (private, public) = ssh_key(dir.path(), "upstream", "ed25519");
        let sig = ssh_sign(&private, "file", &[], &data, "s");
        let key = keys::read_public(&public).unwrap();
        let pem = dir.path().join("upstream.pem");
        std::fs::write(&pem, keys::public_pem(&key)).unwrap();
        expect_verified(&data, &sig, &pem);
    }

    #[test]
    fn a_tampered_file_is_rejected_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (ssh_private, ssh_public) = ssh_key(dir.path(), "upstream", "ed25519");
        let sshsig = ssh_sign(&ssh_private, "file", &[], &data, "s");
        let (pem_private, pem_public) = openssl_key(dir.path(), "pem");
        let raw = dir.path().join("tools.raw");
        openssl_sign(&pem_private, &data, &raw);

        let mut bytes = std::fs::read(&data).unwrap();
        bytes[300_000] ^= 1;
        std::fs::write(&data, bytes).unwrap();
        assert_eq!(
            problem(verify(&data, &sshsig, &ssh_public)),
            Problem::Mismatch
        );
        assert_eq!(problem(verify(&data, &raw, &pem_public)), Problem::Mismatch);
    }

    #[test]
    fn a_signature_by_another_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (_, trusted) = ssh_key(dir.path(), "trusted", "ed25519");
        let (other_private, other_public) = ssh_key(dir.path(), "other", "ed25519");
        let sig = ssh_sign(&other_private, "file", &[], &data, "other");
        let other_id = keys::key_id(&keys::read_public(&other_public).unwrap());
        assert_eq!(
            problem(verify(&data, &sig, &trusted)),
            Problem::WrongKey(other_id)
        );

        // A raw signature names no key: it simply fails to verify.
        let (pem_private, _) = openssl_key(dir.path(), "pem");
        let raw = dir.path().join("tools.raw");
        openssl_sign(&pem_private, &data, &raw);
        assert_eq!(problem(verify(&data, &raw, &trusted)), Problem::Mismatch);
    }

    #[test]
    fn a_signature_in_another_namespace_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (private, public) = ssh_key(dir.path(), "upstream", "ed25519");
        let sig = ssh_sign(&private, "other", &[], &data, "other");
        let err = verify(&data, &sig, &public).unwrap_err();
        assert!(err.to_string().contains("namespace is `other`"), "{err}");
        assert!(err.hint().unwrap().contains("-n file"));
        assert_eq!(problem(Err(err)), Problem::Namespace("other".into()));
    }

    #[test]
    fn a_signature_by_an_ecdsa_key_is_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (_, trusted) = ssh_key(dir.path(), "trusted", "ed25519");
        let (ecdsa, _) = ssh_key(dir.path(), "ecdsa", "ecdsa");
        let sig = ssh_sign(&ecdsa, "file", &[], &data, "ecdsa");
        assert_eq!(
            problem(verify(&data, &sig, &trusted)),
            Problem::KeyType("ecdsa-sha2-nistp256".into())
        );
    }

    #[test]
    fn truncated_and_garbage_signatures_are_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (private, public) = ssh_key(dir.path(), "upstream", "ed25519");
        let good = ssh_sign(&private, "file", &[], &data, "good");
        let text = std::fs::read_to_string(&good).unwrap();
        let case = |name: &str, contents: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            problem(verify(&data, &path, &public))
        };

        let blob = dearmor(text.as_bytes().strip_prefix(ARMOR_BEGIN).unwrap()).unwrap();
        let short = base64::engine::general_purpose::STANDARD.encode(&blob[..blob.len() - 10]);
        let truncated =
            format!("-----BEGIN SSH SIGNATURE-----\n{short}\n-----END SSH SIGNATURE-----\n");
        assert_eq!(
            case("truncated.sig", truncated.as_bytes()),
            Problem::Malformed("the SSH signature is truncated")
        );
        let cut = &text[..text.len() / 2];
        assert_eq!(
            case("cut.sig", cut.as_bytes()),
            Problem::Malformed("there is no `-----END SSH SIGNATURE-----` line")
        );
        let not_base64 = text.replacen("U1NI", "U1N!", 1);
        assert_eq!(
            case("not-base64.sig", not_base64.as_bytes()),
            Problem::Malformed("the text between the armor lines is not base64")
        );
        assert_eq!(
            case("garbage.sig", b"this is not a signature\n"),
            Problem::UnknownFormat
        );
        assert_eq!(case("short.sig", &[7u8; 63]), Problem::UnknownFormat);
        assert_eq!(case("empty.sig", b""), Problem::UnknownFormat);
        assert_eq!(
            case("huge.sig", &vec![b'A'; MAX_SIGNATURE_FILE as usize + 1]),
            Problem::UnknownFormat
        );
        assert!(matches!(
            case("high-s.sig", &[0xff; 64]),
            Problem::Malformed(_)
        ));
    }

    #[test]
    fn sshsig_versions_and_hashes_outside_the_spec_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (private, public) = ssh_key(dir.path(), "upstream", "ed25519");
        let good = ssh_sign(&private, "file", &[], &data, "good");
        let (version, fields) = sshsig_fields(&good);
        assert_eq!(version, 1);

        let v2 = dir.path().join("v2.sig");
        write_sshsig(&v2, 2, &fields);
        assert_eq!(problem(verify(&data, &v2, &public)), Problem::Version(2));

        let mut sha1 = fields.clone();
        sha1[3] = b"sha1".to_vec();
        let sha1_sig = dir.path().join("sha1.sig");
        write_sshsig(&sha1_sig, 1, &sha1);
        assert_eq!(
            problem(verify(&data, &sha1_sig, &public)),
            Problem::Hash("sha1".into())
        );

        // The reserved field is signed too: changing it breaks the signature.
        let mut reserved = fields;
        reserved[2] = b"tag".to_vec();
        let reserved_sig = dir.path().join("reserved.sig");
        write_sshsig(&reserved_sig, 1, &reserved);
        assert_eq!(
            problem(verify(&data, &reserved_sig, &public)),
            Problem::Mismatch
        );
    }

    #[test]
    fn a_small_order_trusted_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        // The identity point (y = 1): every signature with S = 0 and R = identity
        // would verify for it, whatever the message.
        let mut blob = Vec::new();
        put_string(&mut blob, b"ssh-ed25519");
        let mut identity = [0u8; 32];
        identity[0] = 1;
        put_string(&mut blob, &identity);
        let key = dir.path().join("weak.pub");
        std::fs::write(
            &key,
            format!(
                "ssh-ed25519 {}\n",
                base64::engine::general_purpose::STANDARD.encode(blob)
            ),
        )
        .unwrap();
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let sig = dir.path().join("forged.sig");
        std::fs::write(&sig, forged).unwrap();
        assert_eq!(problem(verify(&data, &sig, &key)), Problem::WeakKey);
    }

    #[test]
    fn only_regular_files_can_be_signed() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = ssh_key(dir.path(), "upstream", "ed25519");
        let data = data_file(dir.path());
        let sig = ssh_sign(&private, "file", &[], &data, "s");

        let err = verify(dir.path(), &sig, &public).unwrap_err();
        assert!(
            matches!(
                err,
                SignatureError::NotAFile {
                    kind: "directory",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.hint().unwrap().contains("archive"));

        // A FIFO is refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
        let err = verify(&fifo, &sig, &public).unwrap_err();
        assert!(
            matches!(
                err,
                SignatureError::NotAFile {
                    kind: "special file",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn missing_signatures_and_bad_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let data = data_file(dir.path());
        let (private, public) = ssh_key(dir.path(), "upstream", "ed25519");
        let sig = ssh_sign(&private, "file", &[], &data, "s");

        let missing = dir.path().join("missing.sig");
        assert!(matches!(
            verify(&data, &missing, &public),
            Err(SignatureError::Read { path, .. }) if path == missing
        ));
        // The private key is not a public key.
        assert!(matches!(
            verify(&data, &sig, &private),
            Err(SignatureError::Key(KeyError::NotPublicKey { .. }))
        ));
    }
}
