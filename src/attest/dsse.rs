//! DSSE v1 envelopes (secure-systems-lab/dsse `protocol.md`, `envelope.md`): a payload
//! and its type, signed with Ed25519 over the pre-authentication encoding (PAE).
//!
//! Takes a payload and a signing key, or envelope JSON and trusted public keys.
//! Guarantees: the signature covers `PAE(payloadType, payload)` exactly as the spec
//! defines it, so neither the payload nor its type can be swapped; output JSON is
//! compact with sorted keys and standard padded base64 (some verifiers reject
//! anything else), so the same key and payload always give the same bytes (Ed25519
//! signatures are deterministic); input accepts standard or URL-safe base64, padded
//! or not, as the spec requires of verifiers.

use crate::keys::{key_id, Signature, SigningKey, VerifyingKey};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The payload type of an in-toto Statement (in-toto attestation `spec/v1/envelope.md`).
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths as
/// ASCII decimal byte counts without leading zeros.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let header = pae_header(payload_type, payload.len());
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Everything of the PAE before the payload.
fn pae_header(payload_type: &str, payload_len: usize) -> String {
    format!(
        "DSSEv1 {} {payload_type} {payload_len} ",
        payload_type.len()
    )
}

/// Ed25519 over the PAE, fed to the signer in two pieces so that a large payload (an
/// SBOM) is not copied into a PAE buffer first. Same signature as signing [`pae`].
fn sign_pae(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Signature {
    use ed25519_dalek::hazmat::{raw_sign_byupdate, ExpandedSecretKey};
    use sha2::Digest as _;
    let header = pae_header(payload_type, payload.len());
    let expanded = ExpandedSecretKey::from(&key.to_bytes());
    raw_sign_byupdate::<sha2::Sha512, _>(
        &expanded,
        |digest| {
            digest.update(header.as_bytes());
            digest.update(payload);
            Ok(())
        },
        &key.verifying_key(),
    )
    .expect("feeding bytes to a digest cannot fail")
}

/// Feeds a payload to `sink` in order, in pieces; may be called more than once and must
/// give the same bytes each time (Ed25519 reads the message twice).
pub type PayloadFeed<'a> =
    dyn Fn(&mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> + 'a;

/// Signs a payload of `payload_len` bytes that `feed` replays (an SBOM statement too
/// large to hold in memory) and writes the envelope JSON to `out`: the same bytes as
/// [`Envelope::sign`] then [`Envelope::to_json`], with the payload base64-encoded as it
/// streams past.
pub fn write_signed_envelope(
    payload_type: &str,
    payload_len: u64,
    feed: &PayloadFeed,
    key: &SigningKey,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    use ed25519_dalek::hazmat::{raw_sign_byupdate, ExpandedSecretKey};
    use sha2::Digest as _;
    use std::io::Write as _;
    let header = pae_header(payload_type, payload_len as usize);
    let expanded = ExpandedSecretKey::from(&key.to_bytes());
    let feed_error = std::cell::RefCell::new(None);
    let signed = raw_sign_byupdate::<sha2::Sha512, _>(
        &expanded,
        |digest| {
            digest.update(header.as_bytes());
            feed(&mut |piece| {
                digest.update(piece);
                Ok(())
            })
            .map_err(|e| {
                *feed_error.borrow_mut() = Some(e);
                ed25519_dalek::SignatureError::new()
            })
        },
        &key.verifying_key(),
    );
    let signature = match (signed, feed_error.into_inner()) {
        (Ok(signature), _) => signature,
        (Err(_), Some(e)) => return Err(e),
        (Err(e), None) => return Err(std::io::Error::other(e)),
    };
    out.write_all(b"{\"payload\":\"")?;
    let mut encoder = base64::write::EncoderWriter::new(&mut *out, &STANDARD);
    feed(&mut |piece| encoder.write_all(piece))?;
    encoder.finish()?;
    drop(encoder);
    let signatures = [SignatureJson {
        keyid: key_id(&key.verifying_key()),
        sig: encode_base64(&signature.to_bytes()),
    }];
    write_json_tail(payload_type, &signatures, out)
}

/// Everything of the envelope JSON after the payload's closing quote.
fn write_json_tail(
    payload_type: &str,
    signatures: &[SignatureJson],
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    out.write_all(b"\",\"payloadType\":")?;
    serde_json::to_writer(&mut *out, payload_type)?;
    out.write_all(b",\"signatures\":")?;
    serde_json::to_writer(&mut *out, signatures)?;
    out.write_all(b"}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub payload_type: String,
    pub payload: Vec<u8>,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// Hex SHA-256 of the signer's SPKI DER ([`key_id`]); empty when the envelope
    /// named no key. Unauthenticated: only a hint for choosing the key to try.
    pub keyid: String,
    pub sig: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum DsseError {
    #[error("not a DSSE JSON envelope: {0}; expected {{\"payload\": <base64>, \"payloadType\": <string>, \"signatures\": [{{\"keyid\": <string>, \"sig\": <base64>}}]}}")]
    Json(#[source] serde_json::Error),
    #[error("DSSE envelope field `{field}` is not base64 (standard or URL-safe): {source}")]
    Base64 {
        field: String,
        source: base64::DecodeError,
    },
    #[error("the DSSE envelope has no signatures")]
    NoSignatures,
    #[error("the DSSE envelope was modified after signing or is corrupt: the signature by trusted key {} does not match its payload and payloadType", .keyids.join(", "))]
    BadSignature { keyids: Vec<String> },
    #[error("no signature of the DSSE envelope verifies with a trusted key (signatures name key ids [{}]; trusted key ids are [{}]): it was signed by a key that is not trusted (trust that key's public key if it should be), or it was modified after signing", .present.join(", "), .trusted.join(", "))]
    Untrusted {
        /// Key ids named by the envelope's signatures (`(none)` where a signature had none).
        present: Vec<String>,
        trusted: Vec<String>,
    },
}

/// The JSON envelope; fields in sorted order so the derived output is canonical.
#[derive(Serialize, Deserialize)]
struct EnvelopeJson {
    #[serde(default)]
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<SignatureJson>,
}

#[derive(Serialize, Deserialize)]
struct SignatureJson {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    keyid: String,
    sig: String,
}

/// Standard and URL-safe alphabets, padding optional: what DSSE verifiers must accept.
const ANY_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, ANY_PADDING);
const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, ANY_PADDING);

/// Decodes standard or URL-safe base64, padded or not.
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD_ANY_PADDING
        .decode(text)
        .or_else(|err| URL_SAFE_ANY_PADDING.decode(text).map_err(|_| err))
}

/// Standard alphabet with padding, the form every verifier accepts.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

impl Envelope {
    /// Signs `PAE(payload_type, payload)` with `key`; the signature's keyid is the
    /// key's [`key_id`].
    pub fn sign(payload_type: &str, payload: Vec<u8>, key: &SigningKey) -> Envelope {
        let sig = sign_pae(key, payload_type, &payload).to_bytes().to_vec();
        Envelope {
            payload_type: payload_type.to_string(),
            payload,
            signatures: vec![EnvelopeSignature {
                keyid: key_id(&key.verifying_key()),
                sig,
            }],
        }
    }

    /// Compact JSON, keys sorted (`payload`, `payloadType`, `signatures`; `keyid`,
    /// `sig`), standard padded base64. The payload is base64-encoded straight into the
    /// output: it may be an SBOM of many megabytes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(&mut out);
        out
    }

    /// [`Envelope::to_json`], appended to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let signatures: Vec<SignatureJson> = self
            .signatures
            .iter()
            .map(|s| SignatureJson {
                keyid: s.keyid.clone(),
                sig: encode_base64(&s.sig),
            })
            .collect();
        out.reserve(self.payload.len() * 4 / 3 + 256);
        out.extend_from_slice(b"{\"payload\":\"");
        let start = out.len();
        let encoded_len = base64::encoded_len(self.payload.len(), true).expect("payload fits");
        out.resize(start + encoded_len, 0);
        STANDARD
            .encode_slice(&self.payload, &mut out[start..])
            .expect("the buffer has the encoded length");
        write_json_tail(&self.payload_type, &signatures, out)
            .expect("writing to a Vec cannot fail");
    }

    /// Parses a JSON envelope. Unknown fields are ignored; a missing `payload` or
    /// `keyid` is empty (the spec lets empty fields be omitted).
    pub fn from_json(bytes: &[u8]) -> Result<Envelope, DsseError> {
        let json: EnvelopeJson = serde_json::from_slice(bytes).map_err(DsseError::Json)?;
        let payload = decode_base64(&json.payload).map_err(|source| DsseError::Base64 {
            field: "payload".into(),
            source,
        })?;
        let signatures = json
            .signatures
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let sig = decode_base64(&s.sig).map_err(|source| DsseError::Base64 {
                    field: format!("signatures[{i}].sig"),
                    source,
                })?;
                Ok(EnvelopeSignature {
                    keyid: s.keyid,
                    sig,
                })
            })
            .collect::<Result<_, DsseError>>()?;
        Ok(Envelope {
            payload_type: json.payload_type,
            payload,
            signatures,
        })
    }

    /// Returns the key ids of the `trusted` keys with a valid signature, each once, in
    /// the order their signatures appear. A signature whose keyid names a trusted key
    /// is checked against that key only; one without a keyid, or with an id from
    /// another scheme, against every trusted key (the keyid is only a hint, never a
    /// reason to accept). The payload type is not judged here: callers must check
    /// [`Envelope::payload_type`] before parsing the payload.
    pub fn verify(&self, trusted: &[VerifyingKey]) -> Result<Vec<String>, DsseError> {
        if self.signatures.is_empty() {
            return Err(DsseError::NoSignatures);
        }
        let trusted: Vec<(String, &VerifyingKey)> =
            trusted.iter().map(|k| (key_id(k), k)).collect();
        let message = pae(&self.payload_type, &self.payload);
        let mut accepted: Vec<String> = Vec::new();
        let mut named_but_failed: Vec<String> = Vec::new();
        for signature in &self.signatures {
            let named: Vec<&(String, &VerifyingKey)> = trusted
                .iter()
                .filter(|(id, _)| *id == signature.keyid)
                .collect();
            let candidates = if named.is_empty() {
                trusted.iter().collect()
            } else {
                named.clone()
            };
            let verified = Signature::from_slice(&signature.sig).ok().and_then(|sig| {
                candidates
                    .into_iter()
                    .find(|(_, key)| key.verify_strict(&message, &sig).is_ok())
            });
            match verified {
                Some((id, _)) if !accepted.contains(id) => accepted.push(id.clone()),
                // A trusted key counts once, however many signatures it made.
                Some(_) => {}
                None if !named.is_empty() => named_but_failed.push(signature.keyid.clone()),
                None => {}
            }
        }
        if !accepted.is_empty() {
            Ok(accepted)
        } else if !named_but_failed.is_empty() {
            Err(DsseError::BadSignature {
                keyids: named_but_failed,
            })
        } else {
            Err(DsseError::Untrusted {
                present: self
                    .signatures
                    .iter()
                    .map(|s| {
                        if s.keyid.is_empty() {
                            "(none)".to_string()
                        } else {
                            s.keyid.clone()
                        }
                    })
                    .collect(),
                trusted: trusted.into_iter().map(|(id, _)| id).collect(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_the_pae_to_the_signer_gives_the_plain_signature() {
        use crate::keys::Signer as _;
        let key = crate::keys::generate();
        let payload = vec![7u8; 100_000];
        assert_eq!(
            sign_pae(&key, INTOTO_PAYLOAD_TYPE, &payload),
            key.sign(&pae(INTOTO_PAYLOAD_TYPE, &payload))
        );
    }

    /// RFC 8032 section 7.1, TEST 1: a fixed, public Ed25519 key.
    fn test_key() -> SigningKey {
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        SigningKey::from_bytes(&seed.try_into().unwrap())
    }

    fn other_key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn json(envelope: &Envelope) -> serde_json::Value {
        serde_json::from_slice(&envelope.to_json()).unwrap()
    }

    #[test]
    fn a_streamed_envelope_is_the_same_bytes_as_a_signed_one() {
        let key = test_key();
        // Pieces of uneven sizes, so base64 groups straddle them.
        let pieces: [&[u8]; 4] = [b"{\"a\":", b"[1,2,3,4,5,6,7]", b"", b",\"b\":\"xy\"}"];
        let payload = pieces.concat();
        let feed = |sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>| {
            pieces.iter().try_for_each(|piece| sink(piece))
        };
        let mut streamed = Vec::new();
        write_signed_envelope(
            INTOTO_PAYLOAD_TYPE,
            payload.len() as u64,
            &feed,
            &key,
            &mut streamed,
        )
        .unwrap();
        let signed = Envelope::sign(INTOTO_PAYLOAD_TYPE, payload, &key).to_json();
        assert_eq!(
            String::from_utf8(streamed).unwrap(),
            String::from_utf8(signed).unwrap()
        );
    }

    #[test]
    fn pae_matches_the_dsse_protocol_example() {
        // protocol.md "Test Vectors": type http://example.com/HelloWorld, body "hello world".
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn pae_counts_bytes_not_characters_and_keeps_the_empty_body() {
        assert_eq!(
            pae("application/vnd.exämple+json", b"{}"),
            "DSSEv1 29 application/vnd.exämple+json 2 {}".as_bytes()
        );
        assert_eq!(pae("t", b""), b"DSSEv1 1 t 0 ");
        let body = vec![b'x'; 1000];
        assert!(pae("t", &body).starts_with(b"DSSEv1 1 t 1000 xxx"));
    }

    #[test]
    fn signed_envelope_verifies_with_its_key_and_names_it() {
        let key = test_key();
        let env = Envelope::sign(INTOTO_PAYLOAD_TYPE, b"{\"a\":1}".to_vec(), &key);
        let id = key_id(&key.verifying_key());
        assert_eq!(env.signatures[0].keyid, id);
        assert_eq!(
            env.verify(&[key.verifying_key()]).unwrap(),
            vec![id.clone()]
        );
        // Through JSON and back.
        let back = Envelope::from_json(&env.to_json()).unwrap();
        assert_eq!(back, env);
        assert_eq!(
            back.verify(&[other_key().verifying_key(), key.verifying_key()])
                .unwrap(),
            vec![id]
        );
    }

    #[test]
    fn signature_is_ed25519_over_the_pae() {
        let key = test_key();
        let env = Envelope::sign("t", b"body".to_vec(), &key);
        let sig = Signature::from_slice(&env.signatures[0].sig).unwrap();
        key.verifying_key()
            .verify_strict(b"DSSEv1 1 t 4 body", &sig)
            .unwrap();
    }

    #[test]
    fn tampered_payload_payload_type_or_signature_is_rejected() {
        let key = test_key();
        let env = Envelope::sign(INTOTO_PAYLOAD_TYPE, b"{\"a\":1}".to_vec(), &key);
        let trusted = [key.verifying_key()];

        let mut payload = env.clone();
        payload.payload = b"{\"a\":2}".to_vec();
        let mut payload_type = env.clone();
        payload_type.payload_type = "application/vnd.other+json".into();
        let mut sig = env.clone();
        sig.signatures[0].sig[10] ^= 1;
        let mut short = env.clone();
        short.signatures[0].sig.truncate(63);
        for bad in [payload, payload_type, sig, short] {
            let err = bad.verify(&trusted).unwrap_err();
            assert!(
                matches!(&err, DsseError::BadSignature { keyids } if keyids == &[key_id(&trusted[0])]),
                "{err:?}"
            );
            assert!(err.to_string().contains("modified after signing"), "{err}");
        }
    }

    #[test]
    fn wrong_key_is_rejected_and_the_error_names_both_ids() {
        let env = Envelope::sign(INTOTO_PAYLOAD_TYPE, b"x".to_vec(), &test_key());
        let other = other_key().verifying_key();
        let err = env.verify(&[other]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&key_id(&test_key().verifying_key())),
            "{text}"
        );
        assert!(text.contains(&key_id(&other)), "{text}");
        assert!(matches!(err, DsseError::Untrusted { .. }));
        assert!(matches!(env.verify(&[]), Err(DsseError::Untrusted { .. })));
    }

    #[test]
    fn keyid_is_a_hint_only() {
        let key = test_key();
        let trusted = [other_key().verifying_key(), key.verifying_key()];
        let id = key_id(&key.verifying_key());

        // No keyid, or an id from another scheme: every trusted key is tried.
        for keyid in ["", "A", "some-other-scheme"] {
            let mut env = Envelope::sign("t", b"x".to_vec(), &key);
            env.signatures[0].keyid = keyid.into();
            assert_eq!(env.verify(&trusted).unwrap(), vec![id.clone()], "{keyid:?}");
        }

        // A keyid naming a trusted key that did not sign: rejected, even though the
        // true signer is trusted too (no silent fallback onto another key).
        let mut misnamed = Envelope::sign("t", b"x".to_vec(), &key);
        misnamed.signatures[0].keyid = key_id(&trusted[0]);
        assert!(matches!(
            misnamed.verify(&trusted),
            Err(DsseError::BadSignature { .. })
        ));

        // A signature without a keyid is listed as "(none)" when nothing verifies.
        let mut anonymous = Envelope::sign("t", b"x".to_vec(), &key);
        anonymous.signatures[0].keyid.clear();
        let text = anonymous.verify(&trusted[..1]).unwrap_err().to_string();
        assert!(text.contains("signatures name key ids [(none)]"), "{text}");
    }

    #[test]
    fn each_trusted_key_counts_once_and_failures_do_not_hide_successes() {
        let a = test_key();
        let b = other_key();
        let mut env = Envelope::sign("t", b"x".to_vec(), &a);
        let by_b = Envelope::sign("t", b"x".to_vec(), &b).signatures;
        let mut broken = by_b[0].clone();
        broken.sig[0] ^= 1;
        env.signatures.push(env.signatures[0].clone());
        env.signatures.push(broken);
        env.signatures.extend(by_b);
        assert_eq!(
            env.verify(&[a.verifying_key(), b.verifying_key()]).unwrap(),
            vec![key_id(&a.verifying_key()), key_id(&b.verifying_key())]
        );
    }

    #[test]
    fn envelope_without_signatures_is_rejected() {
        let mut env = Envelope::sign("t", b"x".to_vec(), &test_key());
        env.signatures.clear();
        assert!(matches!(
            env.verify(&[test_key().verifying_key()]),
            Err(DsseError::NoSignatures)
        ));
    }

    #[test]
    fn output_is_compact_sorted_and_padded_standard_base64() {
        // 4 payload bytes need padding; 0xfb 0xff use the `+` and `/` of the standard alphabet.
        let env = Envelope::sign(
            INTOTO_PAYLOAD_TYPE,
            vec![0xfb, 0xff, 0xbf, b'>'],
            &test_key(),
        );
        let text = String::from_utf8(env.to_json()).unwrap();
        let sig = STANDARD.encode(&env.signatures[0].sig);
        assert!(
            sig.ends_with("=="),
            "a 64-byte signature pads to 88 chars: {sig}"
        );
        assert_eq!(
            text,
            format!(
                "{{\"payload\":\"+/+/Pg==\",\"payloadType\":\"application/vnd.in-toto+json\",\"signatures\":[{{\"keyid\":\"{}\",\"sig\":\"{sig}\"}}]}}",
                key_id(&test_key().verifying_key())
            )
        );
    }

    #[test]
    fn same_key_and_payload_give_the_same_bytes() {
        let a = Envelope::sign(INTOTO_PAYLOAD_TYPE, b"{\"x\":1}".to_vec(), &test_key());
        let b = Envelope::sign(INTOTO_PAYLOAD_TYPE, b"{\"x\":1}".to_vec(), &test_key());
        assert_eq!(a.to_json(), b.to_json());
        let c = Envelope::sign(INTOTO_PAYLOAD_TYPE, b"{\"x\":2}".to_vec(), &test_key());
        assert_ne!(a.to_json(), c.to_json());
    }

    #[test]
    fn input_accepts_url_safe_and_unpadded_base64() {
        let key = test_key();
        let env = Envelope::sign("t", vec![0xfb, 0xff, 0xbf, b'>'], &key);
        let mut value = json(&env);
        let sig = env.signatures[0].sig.clone();
        let url = base64::engine::general_purpose::URL_SAFE;
        let url_unpadded = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let std_unpadded = base64::engine::general_purpose::STANDARD_NO_PAD;
        for (payload, sig) in [
            (url.encode(&env.payload), url.encode(&sig)),
            (url_unpadded.encode(&env.payload), url_unpadded.encode(&sig)),
            (std_unpadded.encode(&env.payload), std_unpadded.encode(&sig)),
        ] {
            value["payload"] = payload.clone().into();
            value["signatures"][0]["sig"] = sig.into();
            let back = Envelope::from_json(value.to_string().as_bytes()).unwrap();
            assert_eq!(back, env, "{payload}");
            back.verify(&[key.verifying_key()]).unwrap();
        }
    }

    #[test]
    fn malformed_envelopes_say_what_is_wrong() {
        let err = Envelope::from_json(br#"{"payload":"e30=","signatures":[]}"#).unwrap_err();
        assert!(err.to_string().contains("payloadType"), "{err}");
        let err = Envelope::from_json(
            br#"{"payload":"e30=","payloadType":"t","signatures":[{"sig":"not base64!"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("`signatures[0].sig`"), "{err}");
        let err = Envelope::from_json(br#"{"payload":"%%","payloadType":"t","signatures":[]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("`payload`"), "{err}");
        // An envelope with two `payload` fields is ambiguous: rejected, not first- or last-wins.
        let err = Envelope::from_json(
            br#"{"payload":"e30=","payload":"e31=","payloadType":"t","signatures":[]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("duplicate field"), "{err}");
    }

    #[test]
    fn missing_keyid_and_unknown_fields_are_accepted() {
        let key = test_key();
        let env = Envelope::sign("t", b"x".to_vec(), &key);
        let text = format!(
            r#"{{"payload":"eA==","payloadType":"t","signatures":[{{"sig":"{}","extension":{{}}}}],"other":1}}"#,
            STANDARD.encode(&env.signatures[0].sig)
        );
        let back = Envelope::from_json(text.as_bytes()).unwrap();
        assert_eq!(back.signatures[0].keyid, "");
        assert_eq!(
            back.verify(&[key.verifying_key()]).unwrap(),
            vec![key_id(&key.verifying_key())]
        );
        // Without a keyid the output omits it, as envelope.md allows for empty fields.
        assert!(!String::from_utf8(back.to_json()).unwrap().contains("keyid"));
    }
}
