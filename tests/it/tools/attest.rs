//! Independent validators accept what a signed `cairn build` writes: pyspdxtools the
//! SPDX SBOM, the official CycloneDX 1.6 schema the CycloneDX SBOM, securesystemslib
//! every envelope.
//!
//! Needs the Python validators virtualenv (`cargo xtask test` installs it; or set
//! `CAIRN_TEST_VENV`): a missing tool fails the test, it is never skipped.

use crate::attest::{Workspace, SLSA_PROVENANCE, SPDX_PREDICATE};
use crate::common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// securesystemslib verifies every line of a .intoto.jsonl file with an SPKI PEM public
/// key (the key id is Python's own SHA-256 of the key's DER); prints, per line, the key
/// ids it accepted, the payload type and the statement's predicate type. Any failure
/// raises, so the script exits non-zero.
const SSLIB_VERIFY: &str = r#"
import hashlib, json, sys
from cryptography.hazmat.primitives.serialization import (
    Encoding, PublicFormat, load_pem_public_key)
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

with open(sys.argv[1], "rb") as f:
    public = load_pem_public_key(f.read())
keyid = hashlib.sha256(
    public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()
key = SSlibKey.from_crypto(public, keyid=keyid)
out = []
with open(sys.argv[2]) as f:
    for line in f:
        env = Envelope.from_dict(json.loads(line))
        out.append({"accepted": sorted(env.verify([key], 1).keys()),
                    "payload_type": env.payload_type,
                    "predicate_type": json.loads(env.payload)["predicateType"]})
print(json.dumps(out))
"#;

fn sslib_verify(public: &Path, jsonl: &Path) -> Result<Value, String> {
    let out = Command::new(python_tool("python3"))
        .arg("-c")
        .arg(SSLIB_VERIFY)
        .arg(public)
        .arg(jsonl)
        .output()
        .expect("run python3");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("the script prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn pyspdxtools_cyclonedx_and_securesystemslib_accept_the_signed_build_output() {
    let ws = Workspace::new();
    ws.signed_hello("out");
    let out = ws.path("out");

    pyspdxtools(&out.join("hello.spdx.json"))
        .unwrap_or_else(|e| panic!("pyspdxtools rejected OUT/hello.spdx.json: {e}"));
    cyclonedx_validate(&out.join("hello.cdx.json"))
        .unwrap_or_else(|e| panic!("the CycloneDX 1.6 schema rejected OUT/hello.cdx.json: {e}"));

    let jsonl = out.join("hello.intoto.jsonl");
    let answer = sslib_verify(&ws.public, &jsonl)
        .unwrap_or_else(|e| panic!("securesystemslib did not verify OUT/hello.intoto.jsonl: {e}"));
    assert_eq!(
        answer,
        json!([
            {"accepted": [ws.key_id], "payload_type": "application/vnd.in-toto+json",
             "predicate_type": SLSA_PROVENANCE},
            {"accepted": [ws.key_id], "payload_type": "application/vnd.in-toto+json",
             "predicate_type": SPDX_PREDICATE},
        ]),
        "securesystemslib should accept both envelopes (provenance, then SBOM statement), \
         signed by the key `cairn keygen` named"
    );
    // The same script refuses another key, so the acceptance above means something.
    let (_, other_public, _) = keygen(ws.dir.path(), "other");
    let refused = sslib_verify(&other_public, &jsonl);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("VerificationError: Accepted signatures do not match")),
        "securesystemslib accepted the envelopes with an unrelated key: {refused:?}"
    );
}
