//! Signed builds through the real `cairn` binary: `cairn verify` accepts what `cairn
//! build --sign-key` writes and rejects every way of tampering with it (a corrupt blob,
//! the wrong key, a forged SBOM, an attestation taken from another image, no
//! attestation, a policy that does not hold, a recipe that builds something else).
//! That independent validators accept the real output is checked in `tools::attest`.
//!
//! The tampering tests rewrite the layout so that it stays internally consistent
//! (every digest and size right), so only the check under test can catch them.
//!
//! Needs ssh-keygen: a missing tool fails the test, it is never skipped.

use crate::common::*;
use cairn::attest::dsse::Envelope;
use cairn::digest::Sha256Digest;
use serde_json::{json, Value};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
pub(crate) const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v1";
pub(crate) const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
const BUILD_TYPE: &str = "https://cairn.dev/buildtypes/recipe/v1";

fn hello_recipe() -> PathBuf {
    repo_root().join("recipes/hello.yaml")
}

/// A key pair and an output directory in one temporary directory.
pub(crate) struct Workspace {
    pub(crate) dir: tempfile::TempDir,
    key: PathBuf,
    pub(crate) public: PathBuf,
    pub(crate) key_id: String,
}

impl Workspace {
    pub(crate) fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let (key, public, key_id) = keygen(dir.path(), "signer");
        Workspace {
            dir,
            key,
            public,
            key_id,
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Builds `recipe` signed with this workspace's key into `out` (relative to the
    /// workspace); returns the `--json` report.
    fn build_signed(&self, recipe: &Path, out: &str, extra: &[&str]) -> Value {
        let mut args = vec![
            "--locked",
            "--quiet",
            "--sign-key",
            self.key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        build_json(recipe, &self.path(out), &args)
    }

    /// Builds recipes/hello.yaml, signed, into `out/`; returns the report and the layout.
    pub(crate) fn signed_hello(&self, out: &str) -> (Value, PathBuf) {
        let report = self.build_signed(&hello_recipe(), out, &[]);
        (report, self.path(out).join("hello"))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        write_recipe(self.dir.path(), name, text)
    }
}

/// `cairn verify LAYOUT --key PUB --json EXTRA...`: the exit code and the verdict.
fn verify(layout: &Path, public: &Path, extra: &[&OsStr]) -> (i32, Value) {
    let mut cmd = cairn();
    cmd.arg("verify")
        .arg(layout)
        .arg("--key")
        .arg(public)
        .arg("--json")
        .args(extra);
    let out = cmd.output().expect("spawn cairn");
    let verdict = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} did not print a JSON verdict ({e}; exit {}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), verdict)
}

/// The check called `name` in a verdict; panics listing the checks if it is absent.
fn check<'a>(verdict: &'a Value, name: &str) -> &'a Value {
    verdict["checks"]
        .as_array()
        .expect("the verdict has a `checks` array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("the verdict has no `{name}` check: {verdict:#}"))
}

fn assert_verified(code: i32, verdict: &Value, what: &str) {
    let failed: Vec<&Value> = verdict["checks"]
        .as_array()
        .expect("the verdict has a `checks` array")
        .iter()
        .filter(|c| c["ok"] != true)
        .collect();
    assert!(
        code == 0 && verdict["verified"] == true && failed.is_empty(),
        "{what}: `cairn verify` should accept it (exit 0, every check ok), got exit {code}; \
         failed checks: {failed:#?}"
    );
}

/// `cairn verify` exited 1, said not verified, and check `name` failed with a detail
/// containing every fragment.
fn assert_rejected_by(code: i32, verdict: &Value, name: &str, fragments: &[&str]) {
    assert_eq!(
        (code, &verdict["verified"]),
        (1, &Value::Bool(false)),
        "`cairn verify` should reject this (exit 1, verified false) through the `{name}` check: \
         {verdict:#}"
    );
    let c = check(verdict, name);
    assert_eq!(
        c["ok"], false,
        "the `{name}` check should fail but passed: {verdict:#}"
    );
    let detail = c["detail"].as_str().unwrap_or_default();
    for fragment in fragments {
        assert!(
            detail.contains(fragment),
            "the `{name}` check's detail should say {fragment:?}; it says: {detail}"
        );
    }
}

fn assert_check_ok(verdict: &Value, name: &str, why: &str) {
    assert_eq!(
        check(verdict, name)["ok"],
        true,
        "the `{name}` check should pass ({why}): {verdict:#}"
    );
}

// ---------------------------------------------------------------------------------
// The layout, read and rewritten by hand

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("digest {digest:?} is not sha256:<hex>"));
    layout.join("blobs/sha256").join(hex)
}

fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(blob_path(layout, digest))
        .unwrap_or_else(|e| panic!("blob {digest} is missing from {}: {e}", layout.display()))
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Stores `bytes` as a blob; returns its descriptor's digest and size.
fn put_blob(layout: &Path, bytes: &[u8]) -> (String, u64) {
    let digest = Sha256Digest::of(bytes).to_string();
    std::fs::write(blob_path(layout, &digest), bytes).unwrap();
    (digest, bytes.len() as u64)
}

fn is_spdx(manifest: &Value) -> bool {
    manifest["artifactType"] == SPDX_MEDIA_TYPE
}

fn is_cyclonedx(manifest: &Value) -> bool {
    manifest["artifactType"] == "application/vnd.cyclonedx+json"
}

fn is_provenance(manifest: &Value) -> bool {
    manifest["artifactType"] == DSSE_MEDIA_TYPE
        && manifest["annotations"]["in-toto.io/predicate-type"] == SLSA_PROVENANCE
}

/// The referrer manifests (those with a `subject`) in the layout's index.json, each
/// with its position in `manifests`.
fn referrers(layout: &Path) -> Vec<(usize, Value)> {
    let index = read_json(&layout.join("index.json"));
    index["manifests"]
        .as_array()
        .expect("index.json has manifests")
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let digest = entry["digest"].as_str().expect("index entry has a digest");
            (
                i,
                serde_json::from_slice(&read_blob(layout, digest)).unwrap(),
            )
        })
        .filter(|(_, manifest): &(usize, Value)| manifest.get("subject").is_some())
        .collect()
}

/// The one referrer `pick` selects; panics unless exactly one matches.
fn referrer(layout: &Path, what: &str, pick: fn(&Value) -> bool) -> (usize, Value) {
    let mut found: Vec<_> = referrers(layout)
        .into_iter()
        .filter(|(_, m)| pick(m))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "want exactly one {what} referrer in {}",
        layout.display()
    );
    found.remove(0)
}

/// The artifact blob of the one referrer `pick` selects.
fn referrer_blob(layout: &Path, what: &str, pick: fn(&Value) -> bool) -> Vec<u8> {
    let (_, manifest) = referrer(layout, what, pick);
    let digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("the {what} referrer has no blob: {manifest}"));
    read_blob(layout, digest)
}

/// Replaces the artifact blob of the one referrer `pick` selects with `bytes`, then
/// rewrites that referrer's manifest and index.json so that every digest and size in
/// the layout is right again: a forgery only the content checks can catch.
fn replace_referrer_blob(layout: &Path, what: &str, pick: fn(&Value) -> bool, bytes: &[u8]) {
    let (position, mut manifest) = referrer(layout, what, pick);
    let (digest, size) = put_blob(layout, bytes);
    manifest["layers"][0]["digest"] = digest.into();
    manifest["layers"][0]["size"] = size.into();
    let (manifest_digest, manifest_size) =
        put_blob(layout, &cairn::oci::json::canonical_json(&manifest));
    let index_path = layout.join("index.json");
    let mut index = read_json(&index_path);
    let entry = &mut index["manifests"][position];
    entry["digest"] = manifest_digest.into();
    entry["size"] = manifest_size.into();
    std::fs::write(&index_path, cairn::oci::json::canonical_json(&index)).unwrap();
}

/// The in-toto statement inside a DSSE envelope (JSON bytes).
fn statement_of(envelope: &[u8]) -> Value {
    let envelope =
        Envelope::from_json(envelope).unwrap_or_else(|e| panic!("not a DSSE envelope: {e}"));
    serde_json::from_slice(&envelope.payload).expect("the DSSE payload is JSON")
}

/// The statements of OUT/<name>.intoto.jsonl, by predicate type.
fn side_statements(out: &Path, name: &str) -> Vec<Value> {
    let path = out.join(format!("{name}.intoto.jsonl"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("a signed build must write {}: {e}", path.display()));
    text.lines().map(|l| statement_of(l.as_bytes())).collect()
}

fn provenance_in(statements: &[Value]) -> &Value {
    statements
        .iter()
        .find(|s| s["predicateType"] == SLSA_PROVENANCE)
        .unwrap_or_else(|| panic!("no SLSA provenance statement among {statements:#?}"))
}

/// The pinned digests of recipes/hello.lock, `name -> hex`.
fn hello_lock_digests() -> Vec<(String, String)> {
    let lock = read_json(&repo_root().join("recipes/hello.lock"));
    lock["sources"]
        .as_object()
        .expect("hello.lock has sources")
        .iter()
        .map(|(name, s)| {
            let pin = s["sha256"].as_str().unwrap();
            (name.clone(), pin.trim_start_matches("sha256:").to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// A signed build verifies, and is as deterministic as an unsigned one

#[test]
fn a_signed_hello_build_verifies_and_repeats_byte_for_byte() {
    let ws = Workspace::new();
    let (report, layout) = ws.signed_hello("a");
    ws.signed_hello("b");

    assert_eq!(
        report["signed_by"], ws.key_id,
        "build --json should report the key id `cairn keygen` printed"
    );
    let (code, verdict) = verify(&layout, &ws.public, &[]);
    assert_verified(code, &verdict, "a signed build of recipes/hello.yaml");
    let names: Vec<&Value> = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["name"])
        .collect();
    assert_eq!(
        names,
        ["layout", "signatures", "subject", "provenance", "sbom"],
        "verify without policy or --rebuild runs exactly these checks"
    );
    assert_eq!(
        verdict["manifest_digest"], report["manifest_digest"],
        "verify names a different manifest than the build reported"
    );
    let signatures = check(&verdict, "signatures")["detail"].as_str().unwrap();
    assert!(
        signatures.contains("2 envelopes") && signatures.contains(&ws.key_id),
        "the signatures check should report both envelopes and the signer's key id: {signatures}"
    );

    // Ed25519 signatures are deterministic: the whole output repeats, bit for bit.
    let (a, b) = (tree_bytes(&ws.path("a")), tree_bytes(&ws.path("b")));
    let differing: Vec<&String> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .collect();
    assert!(
        differing.is_empty(),
        "two signed builds with the same key differ in {differing:?}"
    );
    for side in ["hello.spdx.json", "hello.cdx.json", "hello.intoto.jsonl"] {
        assert!(
            a.contains_key(side),
            "a signed build must write the side file {side}; wrote {:?}",
            a.keys().filter(|k| !k.contains('/')).collect::<Vec<_>>()
        );
    }

    // What is published beside the layout is what is attached to the image.
    let out = ws.path("a");
    let attached: Vec<(String, Vec<u8>)> = referrers(&layout)
        .into_iter()
        .map(|(_, m)| {
            let digest = m["layers"][0]["digest"].as_str().unwrap().to_string();
            (
                m["artifactType"].as_str().unwrap().to_string(),
                read_blob(&layout, &digest),
            )
        })
        .collect();
    let attached_as = |media_type: &str| -> Vec<&Vec<u8>> {
        attached
            .iter()
            .filter(|(t, _)| t == media_type)
            .map(|(_, b)| b)
            .collect()
    };
    assert_eq!(
        attached_as(SPDX_MEDIA_TYPE),
        [&std::fs::read(out.join("hello.spdx.json")).unwrap()],
        "the attached SPDX SBOM differs from OUT/hello.spdx.json"
    );
    assert_eq!(
        attached_as(CYCLONEDX_MEDIA_TYPE),
        [&std::fs::read(out.join("hello.cdx.json")).unwrap()],
        "the attached CycloneDX SBOM differs from OUT/hello.cdx.json"
    );
    let mut lines: Vec<Vec<u8>> = std::fs::read_to_string(out.join("hello.intoto.jsonl"))
        .unwrap()
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    let mut envelopes: Vec<Vec<u8>> = attached_as(DSSE_MEDIA_TYPE).into_iter().cloned().collect();
    lines.sort();
    envelopes.sort();
    assert_eq!(
        lines, envelopes,
        "the lines of OUT/hello.intoto.jsonl are not the DSSE envelopes attached to the image"
    );
}

#[test]
fn record_times_adds_start_and_finish_to_the_provenance_and_nothing_else() {
    let ws = Workspace::new();
    let timed = ws.build_signed(&hello_recipe(), "timed", &["--record-times"]);
    let plain = ws.build_signed(&hello_recipe(), "plain", &[]);

    let timed_provenance = provenance_in(&side_statements(&ws.path("timed"), "hello")).clone();
    let metadata = &timed_provenance["predicate"]["runDetails"]["metadata"];
    let started = metadata["startedOn"].as_str();
    let finished = metadata["finishedOn"].as_str();
    let rfc3339 = |t: &str| t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T';
    assert!(
        started.is_some_and(rfc3339) && finished.is_some_and(rfc3339),
        "--record-times should put RFC 3339 UTC startedOn and finishedOn in \
         runDetails.metadata: {metadata}"
    );
    assert!(
        started <= finished,
        "the build finished ({finished:?}) before it started ({started:?})"
    );

    let plain_provenance = provenance_in(&side_statements(&ws.path("plain"), "hello")).clone();
    let text = plain_provenance.to_string();
    assert!(
        !text.contains("startedOn") && !text.contains("finishedOn"),
        "without --record-times the provenance must hold no time: {plain_provenance:#}"
    );
    assert_eq!(
        timed["manifest_digest"], plain["manifest_digest"],
        "--record-times changed the image itself; only the provenance may differ"
    );
    let (code, verdict) = verify(&ws.path("timed/hello"), &ws.public, &[]);
    assert_verified(code, &verdict, "a build with --record-times");
}

/// Every string in `value` with its JSON pointer.
fn strings<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) => out.push((at, s)),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                strings(v, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                strings(v, format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_provenance_names_the_image_the_recipe_and_its_sources_and_no_host_path() {
    let ws = Workspace::new();
    let (report, _) = ws.signed_hello("out");
    let manifest_hex = report["manifest_digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let statements = side_statements(&ws.path("out"), "hello");
    let provenance = provenance_in(&statements);

    assert_eq!(
        provenance["subject"],
        json!([{"name": "hello", "digest": {"sha256": manifest_hex}}]),
        "the provenance must be about exactly the manifest `build --json` reported"
    );
    let definition = &provenance["predicate"]["buildDefinition"];
    assert_eq!(definition["buildType"], BUILD_TYPE, "buildType");
    let recipe_hex = Sha256Digest::of(&std::fs::read(hello_recipe()).unwrap()).hex();
    assert_eq!(
        definition["externalParameters"]["recipe"],
        json!({"path": "hello.yaml", "digest": {"sha256": recipe_hex}}),
        "externalParameters.recipe should name the recipe file (no directory) and its digest"
    );
    let deps: Vec<(String, String, String)> = definition["resolvedDependencies"]
        .as_array()
        .expect("resolvedDependencies is an array")
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or("?").to_string(),
                d["digest"]["sha256"].as_str().unwrap_or("?").to_string(),
                d["annotations"]["kind"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    let kinds = [("app", "file"), ("site", "dir"), ("tools", "archive")];
    let want: Vec<(String, String, String)> = hello_lock_digests()
        .into_iter()
        .map(|(name, hex)| {
            let kind = kinds.iter().find(|(n, _)| *n == name).unwrap().1;
            (name, hex, kind.to_string())
        })
        .collect();
    assert_eq!(
        deps, want,
        "resolvedDependencies should list the three sources with the digests pinned in \
         recipes/hello.lock"
    );

    let sbom_statement = statements
        .iter()
        .find(|s| s["predicateType"] == SPDX_PREDICATE)
        .expect("a signed build attests its SPDX SBOM");
    assert_eq!(
        sbom_statement["subject"], provenance["subject"],
        "the SBOM statement must be about the same image"
    );
    assert_eq!(
        sbom_statement["predicate"],
        read_json(&ws.path("out/hello.spdx.json")),
        "the signed SBOM statement must carry OUT/hello.spdx.json"
    );

    // Nothing of the build host: no absolute path, no checkout or output directory.
    let host = [
        repo_root().display().to_string(),
        ws.dir.path().display().to_string(),
    ];
    for statement in &statements {
        let mut all = Vec::new();
        strings(statement, String::new(), &mut all);
        for (at, s) in all {
            assert!(
                !s.starts_with('/')
                    && !s.starts_with("file:/")
                    && !s.contains(" path=/")
                    && !host.iter().any(|h| s.contains(h.as_str())),
                "a {} statement holds a host path at {at}: {s:?}",
                statement["predicateType"]
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// cairn verify rejects tampering

/// Flips one bit in the middle of the blob.
fn flip_a_bit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_tampered_config_blob_fails_the_layout_check() {
    let ws = Workspace::new();
    let (report, layout) = ws.signed_hello("out");
    let config = report["config_digest"].as_str().unwrap();
    flip_a_bit(&blob_path(&layout, config));
    let (code, verdict) = verify(&layout, &ws.public, &[]);
    assert_rejected_by(
        code,
        &verdict,
        "layout",
        &[&format!("blob {config} is corrupt")],
    );
}

#[test]
fn a_tampered_layer_blob_fails_the_layout_check() {
    let ws = Workspace::new();
    let (report, layout) = ws.signed_hello("out");
    let layer = report["layers"][1]["digest"].as_str().unwrap();
    flip_a_bit(&blob_path(&layout, layer));
    let (code, verdict) = verify(&layout, &ws.public, &[]);
    // Whatever the flipped bit does to gzip or tar, the user must learn that the blob
    // no longer matches its digest, and which blob it is.
    assert_rejected_by(
        code,
        &verdict,
        "layout",
        &[&format!("blob {layer} is corrupt")],
    );
}

#[test]
fn a_key_that_did_not_sign_fails_the_signatures_check() {
    let ws = Workspace::new();
    let (_, layout) = ws.signed_hello("out");
    let (_, wrong_public, wrong_id) = keygen(ws.dir.path(), "wrong");
    let (code, verdict) = verify(&layout, &wrong_public, &[]);
    assert_rejected_by(
        code,
        &verdict,
        "signatures",
        &["not trusted", &ws.key_id, &wrong_id],
    );
}

#[test]
fn an_unsigned_build_fails_the_signatures_check() {
    let ws = Workspace::new();
    build_json(&hello_recipe(), &ws.path("out"), &["--locked", "--quiet"]);
    assert!(
        !ws.path("out/hello.intoto.jsonl").exists(),
        "an unsigned build wrote attestations"
    );
    let (code, verdict) = verify(&ws.path("out/hello"), &ws.public, &[]);
    assert_rejected_by(
        code,
        &verdict,
        "signatures",
        &["no signed attestations are attached", "--sign-key"],
    );
    assert_rejected_by(
        code,
        &verdict,
        "provenance",
        &["no signed SLSA v1 provenance"],
    );
}

/// The image's SPDX SBOM with the SHA-256 of /usr/bin/hello replaced by `forged`.
fn forged_spdx(layout: &Path, forged: &str) -> (Vec<u8>, String) {
    let mut spdx: Value = serde_json::from_slice(&referrer_blob(layout, "SPDX", is_spdx)).unwrap();
    let file = spdx["files"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["fileName"] == "./usr/bin/hello")
        .expect("the SBOM lists ./usr/bin/hello");
    let checksum = file["checksums"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["algorithm"] == "SHA256")
        .expect("the file has a SHA256 checksum");
    let real = checksum["checksumValue"].as_str().unwrap().to_string();
    checksum["checksumValue"] = forged.into();
    (serde_json::to_vec_pretty(&spdx).unwrap(), real)
}

#[test]
fn a_forged_sbom_fails_the_sbom_check() {
    let forged = Sha256Digest::of(b"not what the layer holds").hex();

    // Signed: the attached SBOM is no longer the one the signed statement carries.
    let ws = Workspace::new();
    let (_, layout) = ws.signed_hello("signed");
    let (bytes, _) = forged_spdx(&layout, &forged);
    replace_referrer_blob(&layout, "SPDX", is_spdx, &bytes);
    let (code, verdict) = verify(&layout, &ws.public, &[]);
    assert_check_ok(&verdict, "layout", "the forgery kept every digest right");
    assert_check_ok(&verdict, "signatures", "the envelopes are untouched");
    assert_rejected_by(
        code,
        &verdict,
        "sbom",
        &["the signed SBOM statement does not carry the attached SBOM"],
    );

    // Unsigned, with a policy that does not require a signed SBOM: the SBOM is still
    // checked against the files in the layers.
    build_json(
        &hello_recipe(),
        &ws.path("unsigned"),
        &["--locked", "--quiet"],
    );
    let layout = ws.path("unsigned/hello");
    let (bytes, real) = forged_spdx(&layout, &forged);
    replace_referrer_blob(&layout, "SPDX", is_spdx, &bytes);
    let policy = ws.write("policy.yaml", "cairn_policy: 1\nrequire_sbom: false\n");
    let (code, verdict) = verify(
        &layout,
        &ws.public,
        &["--policy".as_ref(), policy.as_os_str()],
    );
    assert_check_ok(&verdict, "layout", "the forgery kept every digest right");
    assert_rejected_by(
        code,
        &verdict,
        "sbom",
        &[&format!(
            "/usr/bin/hello: the SPDX SBOM says sha256:{forged}, the layer holds sha256:{real}"
        )],
    );
}

#[test]
fn a_cyclonedx_sbom_that_disagrees_with_the_layers_fails_the_sbom_check() {
    let ws = Workspace::new();
    let (_, layout) = ws.signed_hello("signed");
    let (_, manifest) = referrer(&layout, "CycloneDX", is_cyclonedx);
    let blob = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(blob.trim_start_matches("sha256:")),
    )
    .unwrap();
    let mut bom: Value = serde_json::from_slice(&bytes).unwrap();
    // Drop every file component: the BOM no longer lists what the image holds.
    bom["components"].as_array_mut().unwrap().retain(|c| {
        !c["bom-ref"]
            .as_str()
            .unwrap_or_default()
            .starts_with("file:")
    });
    replace_referrer_blob(
        &layout,
        "CycloneDX",
        is_cyclonedx,
        &serde_json::to_vec(&bom).unwrap(),
    );
    let (code, verdict) = verify(&layout, &ws.public, &[]);
    assert_check_ok(&verdict, "layout", "the forgery kept every digest right");
    assert_rejected_by(
        code,
        &verdict,
        "sbom",
        &["/etc/group is in the image but not in the CycloneDX SBOM"],
    );
}

const OTHER_RECIPE: &str = "cairn: 1
name: other
epoch: 1700000000
layers:
  - name: base
    contents:
      - file: /etc/other
        content: \"another image\\n\"
";

#[test]
fn a_provenance_taken_from_another_image_fails_the_subject_check() {
    let ws = Workspace::new();
    let (_, layout) = ws.signed_hello("hello");
    let other = ws.build_signed(&ws.write("other.yaml", OTHER_RECIPE), "other", &[]);
    let other_manifest = other["manifest_digest"].as_str().unwrap();

    let stolen = referrer_blob(&ws.path("other/other"), "provenance", is_provenance);
    replace_referrer_blob(&layout, "provenance", is_provenance, &stolen);
    let (code, verdict) = verify(&layout, &ws.public, &[]);
    assert_check_ok(&verdict, "layout", "the swap kept every digest right");
    assert_check_ok(
        &verdict,
        "signatures",
        "the stolen envelope is genuinely signed by the trusted key",
    );
    assert_rejected_by(
        code,
        &verdict,
        "subject",
        &[
            other_manifest.trim_start_matches("sha256:"),
            "not this image",
            "another image",
        ],
    );
}

#[test]
fn policies_on_source_digests_and_signers_are_enforced() {
    let ws = Workspace::new();
    let (_, layout) = ws.signed_hello("out");
    let verify_with = |name: &str, policy: &str| {
        let path = ws.write(name, policy);
        verify(
            &layout,
            &ws.public,
            &["--policy".as_ref(), path.as_os_str()],
        )
    };
    let pins = hello_lock_digests();
    let app = &pins.iter().find(|(n, _)| n == "app").unwrap().1;

    let wrong = Sha256Digest::of(b"some other app").hex();
    let (code, verdict) = verify_with(
        "wrong-digest.yaml",
        &format!("cairn_policy: 1\nsource_digests:\n  app: sha256:{wrong}\n"),
    );
    assert_rejected_by(
        code,
        &verdict,
        "policy",
        &[&format!(
            "source `app` has sha256:{app}, the policy allows sha256:{wrong}"
        )],
    );

    let (code, verdict) = verify_with(
        "signers.yaml",
        &format!("cairn_policy: 1\nsource_signers: [\"{}\"]\n", ws.key_id),
    );
    assert_rejected_by(
        code,
        &verdict,
        "policy",
        &["source `app` is unsigned", "source `tools` is unsigned"],
    );

    let holds: String = pins
        .iter()
        .map(|(name, hex)| format!("  {name}: sha256:{hex}\n"))
        .collect();
    let (code, verdict) = verify_with(
        "holds.yaml",
        &format!("cairn_policy: 1\nrequire_sbom: true\nsource_digests:\n{holds}"),
    );
    assert_verified(
        code,
        &verdict,
        "a policy pinning the digests hello.lock pins",
    );
    assert_check_ok(&verdict, "policy", "every pinned digest matches");
}

#[test]
fn a_source_signers_policy_holds_for_a_source_signed_by_that_key() {
    let ws = Workspace::new();
    let project = signed_file_recipe(ws.dir.path());
    ws.build_signed(&project.recipe, "out", &[]);
    let layout = ws.path("out/signed");

    let policy = ws.write(
        "policy.yaml",
        &format!(
            "cairn_policy: 1\nsource_signers: [\"{}\"]\nsource_digests:\n  tool: sha256:{}\n",
            project.signer, project.tool_sha256
        ),
    );
    let (code, verdict) = verify(
        &layout,
        &ws.public,
        &["--policy".as_ref(), policy.as_os_str()],
    );
    assert_verified(
        code,
        &verdict,
        "a source signed by the policy's source signer",
    );

    // The same source, but the policy trusts another key for sources.
    let policy = ws.write(
        "other-signer.yaml",
        &format!("cairn_policy: 1\nsource_signers: [\"{}\"]\n", ws.key_id),
    );
    let (code, verdict) = verify(
        &layout,
        &ws.public,
        &["--policy".as_ref(), policy.as_os_str()],
    );
    assert_rejected_by(
        code,
        &verdict,
        "policy",
        &[&format!("source `tool` is signed by {}", project.signer)],
    );
}

#[test]
fn rebuild_passes_for_the_recipe_and_fails_for_another() {
    let ws = Workspace::new();
    let (report, layout) = ws.signed_hello("out");
    let manifest = report["manifest_digest"].as_str().unwrap();

    let (code, verdict) = verify(
        &layout,
        &ws.public,
        &["--rebuild".as_ref(), hello_recipe().as_os_str()],
    );
    assert_verified(code, &verdict, "--rebuild recipes/hello.yaml");
    let detail = check(&verdict, "rebuild")["detail"].as_str().unwrap();
    assert!(
        detail.contains(manifest),
        "the rebuild check should name the manifest it rebuilt: {detail}"
    );

    let other = ws.write("other.yaml", OTHER_RECIPE);
    let other_manifest = build_json(&other, &ws.path("other"), &["--locked", "--quiet"])
        ["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, verdict) = verify(
        &layout,
        &ws.public,
        &["--rebuild".as_ref(), other.as_os_str()],
    );
    assert_rejected_by(
        code,
        &verdict,
        "rebuild",
        &[&format!(
            "a fresh build gives manifest {other_manifest}, the image has {manifest}"
        )],
    );
}
