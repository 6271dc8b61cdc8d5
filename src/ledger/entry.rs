//! One ledger entry: an action (build, push, verify, deploy) with its time, actor and
//! the hash of the entry before it, signed with an Ed25519 key.
//!
//! An entry is stored as one line of canonical JSON (compact, keys sorted). Its
//! signature covers the canonical JSON of the entry without the `signature` field;
//! its hash (what the next entry's `prev` names, and the Merkle leaf) is the SHA-256
//! of the stored line without its newline.

use crate::digest::Sha256Digest;
use crate::keys::{self, Signature, Signer, SigningKey, VerifyingKey};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `prev` of the first entry.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
// Fields are declared in sorted order, so serialising the struct directly gives
// canonical JSON (keys sorted) without a detour through `serde_json::Value`: the
// ledger serialises every entry on append and on verify.
pub struct Entry {
    pub action: Action,
    pub actor: Actor,
    /// What the action was about (action-specific, see [`Action`]).
    pub details: BTreeMap<String, serde_json::Value>,
    /// Hex SHA-256 of the previous entry's line ([`GENESIS_PREV`] for the first).
    pub prev: String,
    /// 0 for the first entry, then +1 each.
    pub seq: u64,
    /// Standard padded base64 Ed25519 signature over the entry without this field.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
    /// Wall-clock UTC time of the action, RFC 3339 (`2026-11-27T05:39:03Z`).
    pub time: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// details: recipe, recipe_sha256, lock_sha256, manifest_digest, layers, sources.
    Build,
    /// details: reference, digest, registry.
    Push,
    /// details: image (manifest digest), verified (bool), checks, policy_sha256.
    Verify,
    /// details: image (`REF@sha256:...` or a digest), digest, env.
    Deploy,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Build => "build",
            Action::Push => "push",
            Action::Verify => "verify",
            Action::Deploy => "deploy",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// A declared identity (e.g. the CI job), from `--identity` or `$CAIRN_IDENTITY`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub identity: String,
    /// Key id (hex SHA-256 of the SPKI DER) of the key that signed the entry.
    pub key_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("entry {seq}: the signature is not valid base64")]
    SignatureEncoding { seq: u64 },
    #[error("entry {seq}: signed by key {key_id}, which is not a trusted key")]
    UntrustedKey { seq: u64, key_id: String },
    #[error("entry {seq}: the signature does not match the entry (it was modified after signing)")]
    BadSignature { seq: u64 },
}

impl Entry {
    /// An entry yet to be appended: the ledger fills `seq`, `prev`, the key id and the
    /// signature.
    pub fn new(
        action: Action,
        identity: &str,
        time: String,
        details: BTreeMap<String, serde_json::Value>,
    ) -> Entry {
        Entry {
            action,
            actor: Actor {
                identity: identity.to_string(),
                key_id: String::new(),
            },
            details,
            prev: String::new(),
            seq: 0,
            signature: String::new(),
            time,
        }
    }

    /// The bytes the signature covers: canonical JSON without `signature`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut unsigned = self.clone();
        unsigned.signature.clear();
        unsigned.line()
    }

    /// Sets `actor.key_id` and `signature` from `key`.
    pub fn sign(&mut self, key: &SigningKey) {
        self.actor.key_id = keys::key_id(&key.verifying_key());
        self.signature.clear();
        let signature = key.sign(&self.signed_bytes());
        self.signature = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
    }

    /// The stored line (canonical JSON, no newline).
    pub fn line(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an entry serialises")
    }

    /// The signature as bytes, and the trusted key it names, for (batch) verification.
    pub fn signature_parts<'k>(
        &self,
        trusted: &'k [(String, VerifyingKey)],
    ) -> Result<(Signature, &'k VerifyingKey), EntryError> {
        let key = trusted
            .iter()
            .find(|(id, _)| *id == self.actor.key_id)
            .map(|(_, k)| k)
            .ok_or_else(|| EntryError::UntrustedKey {
                seq: self.seq,
                key_id: self.actor.key_id.clone(),
            })?;
        let bytes: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(EntryError::SignatureEncoding { seq: self.seq })?;
        Ok((Signature::from_bytes(&bytes), key))
    }

    /// Verifies the signature against the trusted keys (by key id).
    pub fn verify(&self, trusted: &[(String, VerifyingKey)]) -> Result<(), EntryError> {
        use keys::Verifier as _;
        let (signature, key) = self.signature_parts(trusted)?;
        key.verify(&self.signed_bytes(), &signature)
            .map_err(|_| EntryError::BadSignature { seq: self.seq })
    }
}

/// Hex SHA-256 of a stored line: the `prev` of the entry after it.
pub fn line_hash(line: &[u8]) -> String {
    Sha256Digest::of(line).hex()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::json::canonical_json;

    fn entry() -> Entry {
        let details = [("env".to_string(), serde_json::json!("prod"))].into();
        let mut e = Entry::new(
            Action::Deploy,
            "ci/job/42",
            "2026-11-27T05:39:03Z".into(),
            details,
        );
        e.prev = GENESIS_PREV.into();
        e
    }

    #[test]
    fn lines_are_canonical_json() {
        let key = keys::generate();
        let mut e = entry();
        e.details
            .insert("layers".into(), serde_json::json!(["b", "a"]));
        e.details.insert(
            "sources".into(),
            serde_json::json!({"z": 1, "a": {"y": 2, "b": 3}}),
        );
        for signed in [false, true] {
            if signed {
                e.sign(&key);
            }
            assert_eq!(e.line(), canonical_json(&e));
            assert_eq!(
                e.signed_bytes(),
                canonical_json(&Entry {
                    signature: String::new(),
                    ..e.clone()
                })
            );
        }
    }

    #[test]
    fn signed_entries_verify_and_any_edit_breaks_them() {
        let key = keys::generate();
        let trusted = vec![(keys::key_id(&key.verifying_key()), key.verifying_key())];
        let mut e = entry();
        e.sign(&key);
        e.verify(&trusted).unwrap();
        let line = e.line();
        let back: Entry = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, e);
        let mut edited = e.clone();
        edited
            .details
            .insert("env".into(), serde_json::json!("staging"));
        assert_eq!(
            edited.verify(&trusted),
            Err(EntryError::BadSignature { seq: 0 })
        );
        let other = keys::generate();
        let trusted_other = vec![(keys::key_id(&other.verifying_key()), other.verifying_key())];
        assert!(matches!(
            e.verify(&trusted_other),
            Err(EntryError::UntrustedKey { .. })
        ));
    }
}
