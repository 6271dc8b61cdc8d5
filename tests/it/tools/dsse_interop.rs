//! An independent DSSE implementation agrees with cairn's: securesystemslib (Python,
//! with pyca/cryptography's Ed25519) verifies the envelopes cairn signs, rejects
//! tampered ones, computes the same PAE bytes and the same signature, and signs
//! envelopes that cairn verifies.
//!
//! Needs the Python validators virtualenv (`cargo xtask test` installs it; or set
//! `CAIRN_TEST_VENV`): a missing venv fails the test, it is never skipped.

use crate::common::python_tool;
use cairn::attest::contents::SourceInfo;
use cairn::attest::dsse::{pae, Envelope, INTOTO_PAYLOAD_TYPE};
use cairn::attest::intoto::{provenance_statement, ProvenanceFacts};
use cairn::digest::Sha256Digest;
use cairn::keys::{self, SigningKey};
use cairn::resolve::LockedKind;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// Reads one JSON request on stdin, answers with one JSON object on stdout. Only a
/// failed verification is an answer (`verified: false`); anything else raises, so a
/// broken script cannot pass for a rejected envelope.
const SSLIB: &str = r#"
import hashlib, json, sys
from cryptography.hazmat.primitives.serialization import (
    Encoding, PublicFormat, load_pem_private_key, load_pem_public_key)
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

req = json.load(sys.stdin)
cmd = req["cmd"]
if cmd == "verify":
    public = load_pem_public_key(req["public_pem"].encode())
    spki_sha256 = hashlib.sha256(
        public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()
    key = SSlibKey.from_crypto(public, keyid=spki_sha256)
    env = Envelope.from_dict(json.loads(req["envelope"]))
    out = {"spki_sha256": spki_sha256, "payload_type": env.payload_type,
           "payload_hex": env.payload.hex(),
           "reserialized": json.dumps(env.to_dict(), sort_keys=True, separators=(",", ":"))}
    try:
        out["accepted"] = sorted(env.verify([key], 1).keys())
        out["verified"] = True
    except VerificationError as e:
        out["verified"] = False
        out["error"] = str(e)
    print(json.dumps(out))
elif cmd == "pae":
    print(json.dumps([
        Envelope(bytes.fromhex(c["payload_hex"]), c["type"], {}).pae().hex()
        for c in req["cases"]]))
elif cmd == "sign":
    signer = CryptoSigner(load_pem_private_key(req["private_pem"].encode(), None))
    env = Envelope(bytes.fromhex(req["payload_hex"]), req["payload_type"], {})
    env.sign(signer)
    print(json.dumps({"envelope": env.to_dict(), "sslib_keyid": signer.public_key.keyid}))
else:
    raise SystemExit(f"unknown command {cmd}")
"#;

fn sslib(request: Value) -> Value {
    let mut child = Command::new(python_tool("python3"))
        .args(["-c", SSLIB])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the venv's python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "securesystemslib script failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

/// RFC 8032 section 7.1, TEST 1: a fixed, public Ed25519 key, so failures reproduce.
fn test_key() -> SigningKey {
    let seed =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
    SigningKey::from_bytes(&seed.try_into().unwrap())
}

/// A real provenance statement, as `cairn build` would sign it.
fn provenance_payload() -> Vec<u8> {
    let sources = [SourceInfo {
        name: "app".into(),
        kind: LockedKind::Archive,
        path: "vendor/app-1.0.tar.gz".into(),
        sha256: Sha256Digest::of(b"app"),
        signer: None,
        license: Some("MIT".into()),
        package: None,
    }];
    provenance_statement(&ProvenanceFacts {
        image_name: "hello",
        manifest_digest: Sha256Digest::of(b"manifest"),
        recipe_file_name: "hello.yaml",
        recipe_sha256: Sha256Digest::of(b"recipe"),
        lock_sha256: None,
        epoch: 1_700_000_000,
        platform: "linux/amd64",
        sources: &sources,
        base: None,
        cairn_version: env!("CARGO_PKG_VERSION"),
        times: None,
    })
    .to_json()
}

fn verify_in_python(envelope: &[u8], key: &SigningKey) -> Value {
    sslib(json!({
        "cmd": "verify",
        "public_pem": keys::public_pem(&key.verifying_key()),
        "envelope": String::from_utf8(envelope.to_vec()).unwrap(),
    }))
}

#[test]
fn securesystemslib_verifies_our_envelope_and_reads_it_identically() {
    let key = test_key();
    let payload = provenance_payload();
    let envelope = Envelope::sign(INTOTO_PAYLOAD_TYPE, payload.clone(), &key).to_json();
    let answer = verify_in_python(&envelope, &key);
    let our_id = keys::key_id(&key.verifying_key());

    assert_eq!(answer["verified"], true, "{answer}");
    // Python's own SHA-256 over the SPKI DER is our key id, and the keyid it matched.
    assert_eq!(answer["spki_sha256"], our_id.as_str());
    assert_eq!(answer["accepted"], json!([our_id]));
    assert_eq!(answer["payload_type"], INTOTO_PAYLOAD_TYPE);
    assert_eq!(answer["payload_hex"], hex::encode(&payload));
    // Python re-encodes it (standard padded base64) to exactly our bytes.
    assert_eq!(
        answer["reserialized"].as_str().unwrap().as_bytes(),
        &envelope[..]
    );
}

#[test]
fn securesystemslib_rejects_tampered_envelopes() {
    let key = test_key();
    let envelope = Envelope::sign(INTOTO_PAYLOAD_TYPE, provenance_payload(), &key);

    let mut payload = envelope.clone();
    let at = payload.payload.len() / 2;
    payload.payload[at] ^= 1;
    let mut payload_type = envelope.clone();
    payload_type.payload_type = "application/vnd.in-toto.provenance+json".into();
    let mut sig = envelope.clone();
    sig.signatures[0].sig[0] ^= 0x80;
    let wrong_key = Envelope::sign(
        INTOTO_PAYLOAD_TYPE,
        provenance_payload(),
        &SigningKey::from_bytes(&[7; 32]),
    );

    for (what, bad) in [
        ("payload", payload),
        ("payloadType", payload_type),
        ("signature", sig),
        ("signer", wrong_key),
    ] {
        let answer = verify_in_python(&bad.to_json(), &key);
        assert_eq!(answer["verified"], false, "tampered {what}: {answer}");
        assert!(
            bad.verify(&[key.verifying_key()]).is_err(),
            "cairn accepts a tampered {what}"
        );
    }
}

#[test]
fn python_computes_the_same_pae() {
    let cases = [
        ("http://example.com/HelloWorld", b"hello world".to_vec()),
        (INTOTO_PAYLOAD_TYPE, provenance_payload()),
        ("application/vnd.exämple+json", b"{}".to_vec()),
        ("t", Vec::new()),
        ("t", (0..=255u8).collect()),
    ];
    let answer = sslib(json!({
        "cmd": "pae",
        "cases": cases
            .iter()
            .map(|(t, p)| json!({"type": t, "payload_hex": hex::encode(p)}))
            .collect::<Vec<_>>(),
    }));
    let ours: Vec<String> = cases.iter().map(|(t, p)| hex::encode(pae(t, p))).collect();
    assert_eq!(answer, json!(ours));
}

#[test]
fn envelopes_signed_by_securesystemslib_verify_in_cairn_with_the_same_signature() {
    let key = test_key();
    let payload = provenance_payload();
    let answer = sslib(json!({
        "cmd": "sign",
        // The PKCS#8 PEM that `cairn keygen` writes: another implementation loads it.
        "private_pem": cairn::keys::private_pem(&key),
        "payload_type": INTOTO_PAYLOAD_TYPE,
        "payload_hex": hex::encode(&payload),
    }));
    let theirs = Envelope::from_json(answer["envelope"].to_string().as_bytes()).unwrap();
    // securesystemslib names the key by its own scheme; cairn treats keyids as hints.
    assert_eq!(
        theirs.signatures[0].keyid,
        answer["sslib_keyid"].as_str().unwrap()
    );
    assert_eq!(
        theirs.verify(&[key.verifying_key()]).unwrap(),
        vec![keys::key_id(&key.verifying_key())]
    );
    // Ed25519 is deterministic: both implementations produce the same signature.
    let ours = Envelope::sign(INTOTO_PAYLOAD_TYPE, payload, &key);
    assert_eq!(theirs.payload, ours.payload);
    assert_eq!(theirs.signatures[0].sig, ours.signatures[0].sig);
}
