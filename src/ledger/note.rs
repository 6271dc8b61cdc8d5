//! Signed checkpoints: the C2SP signed-note format (c2sp.org/signed-note, the format
//! of golang.org/x/mod/sumdb/note) with Ed25519 keys, and the C2SP tlog-checkpoint
//! note text (c2sp.org/tlog-checkpoint) that names a tree size and root.
//!
//! Takes note text and Ed25519 keys from [`crate::keys`]. Gives notes that any
//! signed-note implementation (Go's sumdb/note, transparency-dev witnesses) verifies,
//! and verifies theirs: a note is accepted only with a valid signature by the given key
//! (name and key ID both match); signatures by other keys are ignored, as the spec
//! requires, so witnesses can cosign. Checkpoint text is parsed strictly, so one
//! checkpoint has exactly one text.

use crate::keys::{Signature, Signer as _, SigningKey, VerifyingKey};
use crate::ledger::merkle::Hash;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The signed-note signature type byte of Ed25519.
const ED25519: u8 = 0x01;

/// The start of a signature line: em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The most signature lines accepted in one note (the spec asks for at least 16; Go's
/// implementation also stops at 100).
pub const MAX_SIGNATURES: usize = 100;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error(
        "key name {name:?} is not valid: a signed-note key name is non-empty and has no \
         spaces, control characters or '+' (for example `example.com/ledger`)"
    )]
    KeyName { name: String },
    #[error("the text to sign is not valid note text: {reason}")]
    Text { reason: &'static str },
    #[error("malformed signed note: {reason}")]
    Malformed { reason: String },
    #[error(
        "verifier key {vkey:?} is not valid: {reason} (the form is \
         NAME+KEYID+BASE64KEY, e.g. `example.com/ledger+1a2b3c4d+AW...`)"
    )]
    VerifierKey { vkey: String, reason: &'static str },
    #[error("the note has no signature by key {name}+{key_id} (it is signed by: {signers})")]
    NotSigned {
        name: String,
        key_id: String,
        signers: String,
    },
    #[error(
        "the signature by key {name}+{key_id} does not verify: the note was changed after \
         it was signed"
    )]
    BadSignature { name: String, key_id: String },
    #[error("checkpoint line {line}: {reason}")]
    Checkpoint { line: usize, reason: String },
}

/// The signed-note key ID of an Ed25519 key:
/// `SHA-256(name || "\n" || 0x01 || public key)[:4]`.
pub fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let digest = Sha256::new()
        .chain_update(name)
        .chain_update(b"\n")
        .chain_update([ED25519])
        .chain_update(key.as_bytes())
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The verifier key string `name+keyid+base64(0x01 || public key)`, the form signed-note
/// tools exchange public keys in.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> Result<String, NoteError> {
    check_name(name)?;
    let mut typed = vec![ED25519];
    typed.extend_from_slice(key.as_bytes());
    Ok(format!(
        "{name}+{}+{}",
        hex::encode(key_hash(name, key)),
        BASE64.encode(typed)
    ))
}

/// Reads a verifier key string back into its name and Ed25519 key, checking its key ID.
pub fn parse_verifier_key(vkey: &str) -> Result<(String, VerifyingKey), NoteError> {
    let bad = |reason| NoteError::VerifierKey {
        vkey: vkey.to_string(),
        reason,
    };
    // The base64 key may contain '+', the name and key ID may not.
    let mut fields = vkey.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(bad("it does not have three '+'-separated fields"));
    };
    if !valid_name(name) {
        return Err(bad("the name is empty or has spaces or control characters"));
    }
    let id: [u8; 4] = hex::decode(id)
        .ok()
        .and_then(|id| id.try_into().ok())
        .ok_or_else(|| bad("the key ID is not 8 hex digits"))?;
    let typed = BASE64
        .decode(key)
        .map_err(|_| bad("the key is not standard base64"))?;
    let (&kind, key) = typed.split_first().ok_or_else(|| bad("the key is empty"))?;
    if kind != ED25519 {
        return Err(bad(
            "the key is not an Ed25519 key (signature type 0x01), the only type supported",
        ));
    }
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| bad("an Ed25519 key is 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("the key is not an Ed25519 point"))?;
    if key_hash(name, &key) != id {
        return Err(bad("the key ID does not match the name and key"));
    }
    Ok((name.to_string(), key))
}

/// Signs `text` (which must end in a newline) as key `name`: the note is the text, a
/// blank line and the signature line `— name base64(keyid || signature)`.
pub fn sign(text: &str, name: &str, key: &SigningKey) -> Result<String, NoteError> {
    check_name(name)?;
    if !text.ends_with('\n') {
        return Err(NoteError::Text {
            reason: "it must end with a newline",
        });
    }
    if has_control_character(text) {
        return Err(NoteError::Text {
            reason: "it has a control character other than newline",
        });
    }
    let mut signature = key_hash(name, &key.verifying_key()).to_vec();
    signature.extend_from_slice(&key.sign(text.as_bytes()).to_bytes());
    Ok(format!(
        "{text}\n{SIGNATURE_PREFIX}{name} {}\n",
        BASE64.encode(signature)
    ))
}

/// Verifies a signed note against one key and returns its text. The note must carry a
/// signature line whose name and key ID match `name` and `key`, and every such line
/// must verify; lines of other keys are ignored.
pub fn verify(note: &str, name: &str, key: &VerifyingKey) -> Result<String, NoteError> {
    check_name(name)?;
    let (text, signatures) = split_note(note)?;
    let id = key_hash(name, key);
    let key_id = hex::encode(id);
    let mut verified = false;
    for line in signatures.iter().filter(|s| s.name == name && s.id == id) {
        let bad = || NoteError::BadSignature {
            name: name.to_string(),
            key_id: key_id.clone(),
        };
        let signature = Signature::from_slice(&line.signature).map_err(|_| bad())?;
        key.verify_strict(text.as_bytes(), &signature)
            .map_err(|_| bad())?;
        verified = true;
    }
    if !verified {
        let signers: Vec<String> = signatures
            .iter()
            .map(|s| format!("{}+{}", s.name, hex::encode(s.id)))
            .collect();
        return Err(NoteError::NotSigned {
            name: name.to_string(),
            key_id,
            signers: signers.join(", "),
        });
    }
    Ok(text.to_string())
}

/// One signature line, decoded.
struct SignatureLine<'a> {
    name: &'a str,
    id: [u8; 4],
    signature: Vec<u8>,
}

/// Splits a note at its last blank line into text and decoded signature lines.
fn split_note(note: &str) -> Result<(&str, Vec<SignatureLine<'_>>), NoteError> {
    let malformed = |reason: String| NoteError::Malformed { reason };
    if has_control_character(note) {
        return Err(malformed(
            "it has a control character other than newline".into(),
        ));
    }
    let blank = note.rfind("\n\n").ok_or_else(|| {
        malformed("there is no blank line between the text and the signatures".into())
    })?;
    let (text, lines) = (&note[..=blank], &note[blank + 2..]);
    let lines = lines
        .strip_suffix('\n')
        .filter(|lines| !lines.is_empty())
        .ok_or_else(|| {
            malformed("there is no newline-terminated signature line after the blank line".into())
        })?;
    let mut signatures = Vec::new();
    for (number, line) in lines.split('\n').enumerate() {
        if number == MAX_SIGNATURES {
            return Err(malformed(format!(
                "it has more than {MAX_SIGNATURES} signatures"
            )));
        }
        let bad = |what: &str| malformed(format!("signature line {} {what}: {line:?}", number + 1));
        let (name, encoded) = line
            .strip_prefix(SIGNATURE_PREFIX)
            .and_then(|rest| rest.split_once(' '))
            .ok_or_else(|| bad("is not `— NAME SIGNATURE`"))?;
        if !valid_name(name) {
            return Err(bad("has an invalid key name"));
        }
        let decoded = BASE64
            .decode(encoded)
            .map_err(|_| bad("has a signature that is not standard base64"))?;
        if decoded.len() < 5 {
            return Err(bad("has a signature shorter than a key ID and one byte"));
        }
        let (id, signature) = decoded.split_at(4);
        signatures.push(SignatureLine {
            name,
            id: [id[0], id[1], id[2], id[3]],
            signature: signature.to_vec(),
        });
    }
    Ok((text, signatures))
}

/// Key names are non-empty, without Unicode spaces, control characters or '+' (a name
/// ends at a space in a signature line and at a '+' in a verifier key).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(NoteError::KeyName {
            name: name.to_string(),
        })
    }
}

/// Notes must not contain ASCII control characters other than newline.
fn has_control_character(text: &str) -> bool {
    text.bytes().any(|b| b < 0x20 && b != b'\n')
}

/// A transparency-log checkpoint: the note text that commits a log to a tree size and
/// root (c2sp.org/tlog-checkpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `example.com/ledger`; non-empty, one line.
    pub origin: String,
    /// The number of entries in the tree.
    pub size: u64,
    /// The RFC 6962 root of the tree of `size` entries.
    pub root: Hash,
    /// Optional opaque lines after the root, each non-empty.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text: origin, decimal size and base64 root, then any extension lines,
    /// each ending in a newline. [`Checkpoint::parse`] reads it back for any checkpoint
    /// whose origin and extensions are non-empty single lines.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Parses checkpoint note text strictly: at least three lines, each non-empty and
    /// newline-terminated, a size without sign or leading zeros, and the standard
    /// padded base64 of a 32-byte root, so that each checkpoint has exactly one text.
    pub fn parse(body: &str) -> Result<Checkpoint, NoteError> {
        let error = |line: usize, reason: String| NoteError::Checkpoint { line, reason };
        let content = body.strip_suffix('\n').ok_or_else(|| {
            error(
                body.split('\n').count(),
                "the text does not end with a newline".into(),
            )
        })?;
        let lines: Vec<&str> = content.split('\n').collect();
        for (index, line) in lines.iter().enumerate() {
            if line.is_empty() {
                return Err(error(
                    index + 1,
                    "is empty; origin, size, root and extension lines are all non-empty".into(),
                ));
            }
            if has_control_character(line) {
                return Err(error(index + 1, "has a control character".into()));
            }
        }
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(error(
                lines.len() + 1,
                "is missing: a checkpoint has an origin, a tree size and a root hash line".into(),
            ));
        };
        if !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(error(
                2,
                format!("tree size {size:?} is not a decimal number without leading zeros"),
            ));
        }
        let size = size
            .parse::<u64>()
            .map_err(|_| error(2, format!("tree size {size} is too large")))?;
        let root_hash: Hash = BASE64
            .decode(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .filter(|hash: &Hash| BASE64.encode(hash) == *root)
            .ok_or_else(|| {
                error(
                    3,
                    format!("root hash {root:?} is not the standard base64 of 32 bytes"),
                )
            })?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root: root_hash,
            extensions: extensions.iter().map(|line| line.to_string()).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys;
    use crate::ledger::merkle;

    // The example keys and notes of golang.org/x/mod/sumdb/note (its package
    // documentation and note_test.go).
    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
    const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                        then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
    const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

    // A checkpoint of the Go checksum database and the log's published verifier key, from
    // transparency-dev/incubator cmd/tlog-verify/testdata/go.sum-database-tree-43930254
    // .tlog-proof (merkle.rs verifies the inclusion proof in the same file).
    const SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
    const SUMDB_CHECKPOINT: &str = "go.sum database tree\n58253265\n\
        lIyLAEe4zJUQAda6pFFg3yPOf7j1SgfMEDrpgoX39JU=\n\n\
        \u{2014} sum.golang.org Az3grkvBHbFcpEFQ3BhGlktgB7pcswIW+ez91eWY6rNPtWfAey8bJO2rVoG2yO5zXvgiaikWVHqon+e14JhA+WXvpAY=\n";

    fn peter_note() -> String {
        format!("{TEXT}\n{PETER_SIG}")
    }

    fn peter_signing_key() -> SigningKey {
        // PRIVATE+KEY+name+keyid+base64(0x01 || seed); the base64 itself may hold '+'.
        let encoded = PETER_SKEY.splitn(5, '+').nth(4).unwrap();
        let typed = BASE64.decode(encoded).unwrap();
        assert_eq!(typed[0], ED25519);
        SigningKey::from_bytes(&typed[1..].try_into().unwrap())
    }

    #[test]
    fn go_example_key_and_note_verify() {
        let (name, key) = parse_verifier_key(PETER_VKEY).unwrap();
        assert_eq!(name, "PeterNeumann");
        assert_eq!(hex::encode(key_hash(&name, &key)), "c74f20a3");
        assert_eq!(verifier_key(&name, &key).unwrap(), PETER_VKEY);
        assert_eq!(verify(&peter_note(), "PeterNeumann", &key).unwrap(), TEXT);
    }

    #[test]
    fn signing_with_the_go_example_key_reproduces_the_go_note() {
        let signing = peter_signing_key();
        let (_, key) = parse_verifier_key(PETER_VKEY).unwrap();
        assert_eq!(signing.verifying_key(), key);
        assert_eq!(sign(TEXT, "PeterNeumann", &signing).unwrap(), peter_note());
    }

    #[test]
    fn other_signers_are_ignored_and_each_signer_verifies() {
        let cosigned = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
        let (_, peter) = parse_verifier_key(PETER_VKEY).unwrap();
        let (_, enoch) = parse_verifier_key(ENOCH_VKEY).unwrap();
        assert_eq!(verify(&cosigned, "PeterNeumann", &peter).unwrap(), TEXT);
        assert_eq!(verify(&cosigned, "EnochRoot", &enoch).unwrap(), TEXT);
        // Only Enoch's signature: not signed by Peter, and the error says who did sign.
        let enoch_only = format!("{TEXT}\n{ENOCH_SIG}");
        assert_eq!(
            verify(&enoch_only, "PeterNeumann", &peter),
            Err(NoteError::NotSigned {
                name: "PeterNeumann".into(),
                key_id: "c74f20a3".into(),
                signers: "EnochRoot+af0cfe78".into(),
            })
        );
    }

    #[test]
    fn go_malformed_notes_are_rejected() {
        let (_, key) = parse_verifier_key(PETER_VKEY).unwrap();
        let bad = [
            TEXT.to_string(),
            format!("{TEXT}\n"),
            format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
            format!("\u{1}{TEXT}\n{PETER_SIG}"),
            format!("{TEXT}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
            format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
            format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1)),
        ];
        for note in bad {
            assert!(
                matches!(
                    verify(&note, "PeterNeumann", &key),
                    Err(NoteError::Malformed { .. })
                ),
                "{note:?}"
            );
        }
        // Go's invalid signature: four base64 characters inserted into the signature.
        let corrupted = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
        assert!(matches!(
            verify(&corrupted, "PeterNeumann", &key),
            Err(NoteError::BadSignature { .. })
        ));
    }

    #[test]
    fn go_checksum_database_checkpoint_verifies_and_parses() {
        let (name, key) = parse_verifier_key(SUMDB_VKEY).unwrap();
        let body = verify(SUMDB_CHECKPOINT, &name, &key).unwrap();
        let checkpoint = Checkpoint::parse(&body).unwrap();
        assert_eq!(checkpoint.origin, "go.sum database tree");
        assert_eq!(checkpoint.size, 58253265);
        assert_eq!(
            BASE64.encode(checkpoint.root),
            "lIyLAEe4zJUQAda6pFFg3yPOf7j1SgfMEDrpgoX39JU="
        );
        assert!(checkpoint.extensions.is_empty());
        assert_eq!(checkpoint.body(), body);
        let forged = SUMDB_CHECKPOINT.replace("58253265", "58253266");
        assert!(matches!(
            verify(&forged, &name, &key),
            Err(NoteError::BadSignature { .. })
        ));
    }

    fn checkpoint() -> Checkpoint {
        let leaves: Vec<merkle::Hash> = (0..5u8).map(|i| merkle::leaf_hash(&[i])).collect();
        Checkpoint {
            origin: "example.com/ledger".into(),
            size: 5,
            root: merkle::root(&leaves),
            extensions: vec!["witnessed by example.org/w1".into()],
        }
    }

    #[test]
    fn signed_checkpoints_round_trip_and_any_change_is_caught() {
        let key = keys::generate();
        let public = key.verifying_key();
        let name = "example.com/ledger";
        let note = sign(&checkpoint().body(), name, &key).unwrap();
        let body = verify(&note, name, &public).unwrap();
        assert_eq!(Checkpoint::parse(&body).unwrap(), checkpoint());

        // The body changed after signing.
        let edited = note.replacen("\n5\n", "\n6\n", 1);
        assert_ne!(edited, note);
        assert_eq!(
            verify(&edited, name, &public),
            Err(NoteError::BadSignature {
                name: name.into(),
                key_id: hex::encode(key_hash(name, &public)),
            })
        );
        // One bit of the signature itself changed (the key ID left intact).
        let (head, encoded) = note.trim_end().rsplit_once(' ').unwrap();
        let mut signature = BASE64.decode(encoded).unwrap();
        signature[20] ^= 0x01;
        let flipped = format!("{head} {}\n", BASE64.encode(&signature));
        assert!(matches!(
            verify(&flipped, name, &public),
            Err(NoteError::BadSignature { .. })
        ));
        // Another key under the same name, and the same key under another name.
        let other = keys::generate().verifying_key();
        assert!(matches!(
            verify(&note, name, &other),
            Err(NoteError::NotSigned { .. })
        ));
        assert!(matches!(
            verify(&note, "example.com/other", &public),
            Err(NoteError::NotSigned { .. })
        ));
        // Our verifier key string names this key and reads back.
        let vkey = verifier_key(name, &public).unwrap();
        assert_eq!(
            parse_verifier_key(&vkey).unwrap(),
            (name.to_string(), public)
        );
    }

    #[test]
    fn bad_names_texts_and_verifier_keys_are_refused() {
        let key = keys::generate();
        for name in ["", "with space", "a+b", "tab\tname"] {
            assert_eq!(
                sign("text\n", name, &key),
                Err(NoteError::KeyName { name: name.into() })
            );
        }
        assert!(matches!(
            sign("no newline", "n", &key),
            Err(NoteError::Text { .. })
        ));
        assert!(matches!(
            sign("a\rb\n", "n", &key),
            Err(NoteError::Text { .. })
        ));
        for vkey in [
            "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", // wrong ID
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TX", // other key
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", // type
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        ] {
            assert!(
                matches!(parse_verifier_key(vkey), Err(NoteError::VerifierKey { .. })),
                "{vkey}"
            );
        }
    }

    #[test]
    fn checkpoint_bodies_round_trip() {
        // The example of c2sp.org/tlog-checkpoint.
        let spec =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let parsed = Checkpoint::parse(spec).unwrap();
        assert_eq!(parsed.size, 20852163);
        assert_eq!(parsed.body(), spec);
        assert_eq!(
            Checkpoint::parse(&checkpoint().body()).unwrap(),
            checkpoint()
        );
        let empty = Checkpoint {
            origin: "example.com/ledger".into(),
            size: 0,
            root: merkle::root(&[]),
            extensions: vec![],
        };
        assert_eq!(
            empty.body(),
            "example.com/ledger\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        );
        assert_eq!(Checkpoint::parse(&empty.body()).unwrap(), empty);
    }

    #[test]
    fn checkpoint_parse_is_strict() {
        let root = "lIyLAEe4zJUQAda6pFFg3yPOf7j1SgfMEDrpgoX39JU=";
        let cases = [
            ("".to_string(), 1),
            ("o\n".to_string(), 2),
            ("o\n1\n".to_string(), 3),
            (format!("o\n1\n{root}"), 3),
            (format!("\n1\n{root}\n"), 1),
            (format!("o\n01\n{root}\n"), 2),
            (format!("o\n+1\n{root}\n"), 2),
            (format!("o\n-1\n{root}\n"), 2),
            (format!("o\n 1\n{root}\n"), 2),
            (format!("o\n18446744073709551616\n{root}\n"), 2),
            ("o\n1\nshort=\n".to_string(), 3),
            (format!("o\n1\n{}\n", root.trim_end_matches('=')), 3),
            (format!("o\n1\n{}V=\n", &root[..42]), 3),
            (format!("o\n1\n{root}\n\n"), 4),
            (format!("o\n1\n{root}\next\n\n"), 5),
            (format!("o\r\n1\n{root}\n"), 1),
        ];
        for (body, line) in cases {
            match Checkpoint::parse(&body) {
                Err(NoteError::Checkpoint { line: got, .. }) => {
                    assert_eq!(got, line, "{body:?}")
                }
                other => panic!("{body:?}: {other:?}"),
            }
        }
        let max = format!("o\n18446744073709551615\n{root}\n");
        assert_eq!(Checkpoint::parse(&max).unwrap().size, u64::MAX);
    }
}
