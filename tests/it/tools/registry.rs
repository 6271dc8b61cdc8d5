//! cairn against a real registry (Debian's `docker-registry`, distribution 2.8),
//! started per test on a loopback port and killed by PID: the client library,
//! `cairn push`, `cairn build --push`, `cairn verify REF`, and the failure modes.

use crate::common;
use crate::common::registry::{Registry, RegistryAuth, PASSWORD, USER};
use cairn::digest::Sha256Digest;
use cairn::registry::{BlobPush, Client, ClientOptions, Credentials, Login, Reference};
use std::path::Path;

fn insecure_client(credentials: Credentials) -> Client {
    Client::new(ClientOptions {
        credentials,
        insecure: true,
        max_attempts: 2,
        initial_backoff: std::time::Duration::from_millis(50),
        ..Default::default()
    })
}

fn reference(registry: &Registry, name: &str) -> Reference {
    format!("{}/{name}", registry.host).parse().unwrap()
}

/// Writes `bytes` to a file in `dir`; returns its path and digest.
fn blob_file(dir: &Path, name: &str, bytes: &[u8]) -> (std::path::PathBuf, Sha256Digest) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    (path, Sha256Digest::of(bytes))
}

/// An image manifest with one layer over `config`, canonical JSON.
fn manifest_json(config: (&Sha256Digest, usize), layer: (&Sha256Digest, usize)) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0.to_string(), "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0.to_string(), "size": layer.1}],
    }))
    .unwrap()
}

#[test]
fn client_pushes_and_pulls_blobs_and_manifests_monolithic_and_chunked() {
    let registry = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(ClientOptions {
        insecure: true,
        chunk_size: 1000,
        ..Default::default()
    });
    let image = reference(&registry, "lib/chunks:v1");
    let layer: Vec<u8> = (0..4500u32).map(|i| (i * 7 % 251) as u8).collect();
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (layer_path, layer_digest) = blob_file(dir.path(), "layer", &layer);
    let (config_path, config_digest) = blob_file(dir.path(), "config", config);
    let sent = std::sync::atomic::AtomicU64::new(0);
    let count = |n: u64| {
        sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    };
    // 4500 bytes in chunks of 1000: PATCH five times, then PUT.
    let outcome = client
        .push_blob(
            &image,
            &layer_path,
            &layer_digest,
            layer.len() as u64,
            None,
            &count,
        )
        .unwrap();
    assert_eq!(outcome, BlobPush::Uploaded);
    assert_eq!(sent.load(std::sync::atomic::Ordering::Relaxed), 4500);
    let outcome = client
        .push_blob(
            &image,
            &config_path,
            &config_digest,
            config.len() as u64,
            None,
            &count,
        )
        .unwrap();
    assert_eq!(outcome, BlobPush::Uploaded);
    // Already there: HEAD says so, nothing is sent.
    assert_eq!(
        client
            .push_blob(
                &image,
                &layer_path,
                &layer_digest,
                layer.len() as u64,
                None,
                &count
            )
            .unwrap(),
        BlobPush::Present
    );
    // Mounted into another repository of the same registry.
    let other = reference(&registry, "lib/other:v1");
    assert_eq!(
        client
            .push_blob(
                &other,
                &layer_path,
                &layer_digest,
                layer.len() as u64,
                Some("lib/chunks"),
                &count
            )
            .unwrap(),
        BlobPush::Mounted
    );
    assert!(client.blob_exists(&other, &layer_digest).unwrap());

    let manifest = manifest_json((&config_digest, config.len()), (&layer_digest, layer.len()));
    let put = client
        .put_manifest(
            &image,
            &manifest,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .unwrap();
    assert_eq!(put.digest, Sha256Digest::of(&manifest));
    let got = client.get_manifest(&image).unwrap();
    assert_eq!(got.bytes, manifest);
    assert_eq!(got.digest, put.digest);
    assert_eq!(got.media_type, "application/vnd.oci.image.manifest.v1+json");
    let by_digest = client.get_manifest(&image.with_digest(put.digest)).unwrap();
    assert_eq!(by_digest.bytes, manifest);

    let mut pulled = Vec::new();
    client
        .get_blob_to(&image, &layer_digest, Some(layer.len() as u64), &mut pulled)
        .unwrap();
    assert_eq!(pulled, layer);
    // A reference pinning another digest than the registry serves is refused.
    let wrong = image.with_digest(Sha256Digest::of(b"something else"));
    let err = client.get_manifest(&wrong).unwrap_err().to_string();
    assert!(
        err.contains("not found") || err.contains("does not match"),
        "{err}"
    );
}

#[test]
fn client_basic_auth_with_login_and_clear_error_without() {
    let registry = Registry::start(RegistryAuth::Basic);
    let dir = tempfile::tempdir().unwrap();
    let image = reference(&registry, "team/app:v1");
    let (path, digest) = blob_file(dir.path(), "blob", b"hello");

    let anonymous = insecure_client(Credentials::default());
    let err = anonymous.ping(&image).unwrap_err();
    let err = cairn::diag::Report::of(&err).to_string();
    assert!(err.contains("401") && err.contains("UNAUTHORIZED"), "{err}");
    assert!(err.contains("CAIRN_REGISTRY_USERNAME"), "{err}");
    let err = anonymous
        .push_blob(&image, &path, &digest, 5, None, &|_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("HTTP 401: Unauthorized"), "{err}");

    let wrong = insecure_client(Credentials {
        any_registry: Some(Login {
            username: USER.into(),
            password: "wrong".into(),
        }),
        ..Default::default()
    });
    let err = wrong.ping(&image).unwrap_err().to_string();
    assert!(
        err.contains("401") && err.contains("authentication required"),
        "{err}"
    );
    assert!(
        !err.contains("wrong"),
        "the password leaked into the error: {err}"
    );

    let right = insecure_client(Credentials {
        any_registry: Some(Login {
            username: USER.into(),
            password: PASSWORD.into(),
        }),
        ..Default::default()
    });
    assert_eq!(
        right
            .push_blob(&image, &path, &digest, 5, None, &|_| {})
            .unwrap(),
        BlobPush::Uploaded
    );
    assert!(right.blob_exists(&image, &digest).unwrap());
}

/// A scratch directory with a Docker config directory of its own, so no test reads
/// the real `~/.docker/config.json` or the caller's registry variables.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Scratch { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// `cairn` with DOCKER_CONFIG and HOME inside the scratch directory.
    fn cairn(&self) -> std::process::Command {
        let mut cmd = common::cairn();
        cmd.env("DOCKER_CONFIG", self.path("docker"))
            .env("HOME", self.path("home"))
            .env_remove("CAIRN_REGISTRY_USERNAME")
            .env_remove("CAIRN_REGISTRY_PASSWORD")
            .env_remove("CAIRN_LEDGER")
            .env_remove("CAIRN_LEDGER_KEY")
            .env_remove("CAIRN_SIGN_KEY");
        cmd
    }

    /// `cairn push LAYOUT TARGET --insecure` (the test registries are on loopback).
    fn push(&self, layout: &Path, target: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        let mut cmd = self.cairn();
        cmd.arg("push").arg(layout).arg(target).arg("--insecure");
        cmd
    }

    /// Writes a Docker config file with `auths` for `host`.
    fn docker_login(&self, host: &str, user: &str, password: &str) {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        std::fs::write(
            self.path("docker/config.json"),
            format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
    }

    /// Builds recipes/hello.yaml into `out`, signed with a fresh key when `signed`;
    /// returns the layout and the public key.
    fn build_hello(&self, out: &str, signed: bool) -> (std::path::PathBuf, std::path::PathBuf) {
        let (key, public, _) = common::keygen(self.dir.path(), &format!("{out}-signer"));
        let mut cmd = self.cairn();
        cmd.arg("build")
            .arg(common::repo_root().join("recipes/hello.yaml"))
            .arg("-o")
            .arg(self.path(out))
            .arg("--locked")
            .arg("-q");
        if signed {
            cmd.arg("--sign-key").arg(&key);
        }
        common::run_ok(&mut cmd);
        (self.path(out).join("hello"), public)
    }
}

fn push_json(scratch: &Scratch, layout: &Path, target: &str) -> serde_json::Value {
    let out = common::run_ok(scratch.push(layout, target).arg("--json"));
    serde_json::from_slice(&out.stdout).expect("push --json prints JSON")
}

fn skopeo(args: &[&str]) -> std::process::Output {
    common::run_ok(std::process::Command::new("skopeo").args(args))
}

#[test]
fn push_then_skopeo_copy_gives_the_same_digest_and_a_second_push_uploads_nothing() {
    let registry = Registry::start(RegistryAuth::None);
    let scratch = Scratch::new();
    let (layout, _) = scratch.build_hello("out", true);
    let manifest_digest = {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let target = format!("{}/team/hello:v1", registry.host);

    let out = common::run_ok(&mut scratch.push(&layout, &target));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(printed.trim(), format!("{target}@{manifest_digest}"));
    let summary = String::from_utf8(out.stderr).unwrap();
    assert!(
        summary.contains("referrers: 4 via the referrers tag"),
        "{summary}"
    );

    // skopeo pulls it back into an OCI layout with the same manifest digest.
    let copy = scratch.path("copy");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:v1", copy.display()),
    ]);
    let copied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("index.json")).unwrap()).unwrap();
    assert_eq!(copied["manifests"][0]["digest"], manifest_digest.as_str());

    // Pushed again: every blob is there already, nothing is uploaded.
    let again = push_json(&scratch, &layout, &target);
    assert_eq!(again["blobs_uploaded"], 0, "{again}");
    assert_eq!(again["bytes_uploaded"], 0);
    assert_eq!(again["blobs_present"], 10);
    assert_eq!(again["digest"], manifest_digest.as_str());
    assert_eq!(
        again["reference"],
        format!("{target}@{manifest_digest}").as_str()
    );

    // distribution 2.8 has no Referrers API: the tag schema and cosign's .att tag.
    assert_eq!(again["referrers_via"], "tag-schema");
    let hex = manifest_digest.strip_prefix("sha256:").unwrap();
    let tags = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/team/hello", registry.host),
    ]);
    let tags: serde_json::Value = serde_json::from_slice(&tags.stdout).unwrap();
    let mut tags: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    let (referrers_tag, att_tag) = (format!("sha256-{hex}"), format!("sha256-{hex}.att"));
    assert_eq!(tags, [referrers_tag.as_str(), att_tag.as_str(), "v1"]);
    let raw = |tag: &str| -> serde_json::Value {
        let out = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/team/hello:{tag}", registry.host),
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let referrers = raw(&referrers_tag);
    assert_eq!(
        referrers["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let mut types: Vec<&str> = referrers["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "application/spdx+json",
            "application/vnd.cyclonedx+json",
            "application/vnd.dsse.envelope.v1+json",
            "application/vnd.dsse.envelope.v1+json"
        ]
    );
    let att = raw(&att_tag);
    let layers = att["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{att}");
    let mut predicates = Vec::new();
    for layer in layers {
        assert_eq!(layer["mediaType"], "application/vnd.dsse.envelope.v1+json");
        assert_eq!(
            layer["annotations"]["dev.cosignproject.cosign/signature"],
            ""
        );
        predicates.push(layer["annotations"]["predicateType"].as_str().unwrap());
    }
    predicates.sort();
    assert_eq!(
        predicates,
        [
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ]
    );
    // The .att image's own config is a blob the registry serves.
    let copy_att = scratch.path("copy-att");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/team/hello:{att_tag}", registry.host),
        &format!("oci:{}:att", copy_att.display()),
    ]);
}

#[test]
fn build_push_records_a_ledger_entry_and_an_interrupted_push_resumes() {
    let registry = Registry::start(RegistryAuth::None);
    let scratch = Scratch::new();
    let (key, builder_pub, _) = common::keygen(scratch.dir.path(), "builder");
    let target = format!("{}/ci/hello:main", registry.host);
    // A push that stopped after one blob: that blob is in the registry, no tag.
    let (layout, _) = scratch.build_hello("first", true);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_hex = index["manifests"][0]["digest"].as_str().unwrap()[7..].to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(&manifest_hex)).unwrap(),
    )
    .unwrap();
    let layer = &manifest["layers"][0];
    let layer_digest: Sha256Digest = layer["digest"].as_str().unwrap().parse().unwrap();
    let client = insecure_client(Credentials::default());
    let image: Reference = target.parse().unwrap();
    client
        .push_blob(
            &image,
            &layout.join("blobs/sha256").join(layer_digest.hex()),
            &layer_digest,
            layer["size"].as_u64().unwrap(),
            None,
            &|_| {},
        )
        .unwrap();
    assert!(!registry.has_tag("ci/hello", "main"));

    let ledger = scratch.path("ledger.jsonl");
    let out = common::run_ok(
        scratch
            .cairn()
            .arg("build")
            .arg(common::repo_root().join("recipes/hello.yaml"))
            .arg("-o")
            .arg(scratch.path("out"))
            .args(["--locked", "--json", "--insecure", "--push", &target])
            .arg("--sign-key")
            .arg(&key)
            .arg("--ledger")
            .arg(&ledger),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = report["manifest_digest"].as_str().unwrap();
    assert_eq!(report["push"]["digest"], digest);
    assert_eq!(report["push"]["blobs_present"], 1, "{report}");
    assert_eq!(report["push"]["blobs_uploaded"], 9, "{report}");
    assert!(registry.has_tag("ci/hello", "main"));

    let entries: Vec<serde_json::Value> = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["build", "push"]);
    let push = &entries[1];
    let text = push.to_string();
    assert!(text.contains(&format!("{target}@{digest}")), "{text}");
    common::run_ok(
        scratch
            .cairn()
            .args(["ledger", "verify", "--ledger"])
            .arg(&ledger)
            .arg("--key")
            .arg(&builder_pub),
    );
}

#[test]
fn verify_a_registry_reference_passes_signed_and_fails_unsigned_or_tampered() {
    let registry = Registry::start(RegistryAuth::None);
    let scratch = Scratch::new();
    let (signed, public) = scratch.build_hello("signed", true);
    let (unsigned, _) = scratch.build_hello("unsigned", false);
    let good = format!("{}/team/signed:v1", registry.host);
    let bad = format!("{}/team/unsigned:v1", registry.host);
    let pushed = push_json(&scratch, &signed, &good);
    push_json(&scratch, &unsigned, &bad);
    let verify = |reference: &str| {
        let mut cmd = scratch.cairn();
        cmd.arg("verify")
            .arg(reference)
            .arg("--insecure")
            .arg("--key")
            .arg(&public);
        cmd
    };

    let out = common::run_ok(&mut verify(&good));
    let text = String::from_utf8(out.stdout).unwrap();
    let digest = pushed["digest"].as_str().unwrap();
    assert!(text.contains(&format!("image: {good}@{digest}")), "{text}");
    assert!(
        text.contains("4 referrers fetched") && text.trim_end().ends_with("\nverified"),
        "{text}"
    );
    // `trace REF` reads the pushed image as `trace LAYOUT` reads the layout.
    let traced = |target: &Path| {
        let out = common::run_ok(scratch.cairn().args(["trace"]).arg(target).args([
            "/usr/bin/hello",
            "--insecure",
            "--json",
        ]));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let remote = traced(Path::new(&good));
    assert_eq!(remote["matches"][0]["path"], "/usr/bin/hello", "{remote:#}");
    assert_eq!(remote, traced(&signed), "the same trace from the registry");
    let (_, err) =
        common::run_err(
            scratch
                .cairn()
                .args(["trace", &good, "/no/such", "--insecure"]),
        );
    assert!(
        err.contains(&format!(
            "/no/such: no regular file in {good}@{digest} matches"
        )),
        "{err}"
    );

    // By digest as well; the JSON verdict names the reference.
    let by_digest = format!("{}/team/signed@{digest}", registry.host);
    let out = common::run_ok(verify(&by_digest).arg("--json"));
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["verified"], true);
    assert_eq!(verdict["reference"], by_digest.as_str());
    assert_eq!(verdict["manifest_digest"], digest);

    // No attestations: the signatures check fails.
    let out = verify(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("FAIL signatures") && text.contains("NOT verified"),
        "{text}"
    );

    // A digest the registry does not have.
    let missing = format!(
        "{}/team/signed@{}",
        registry.host,
        Sha256Digest::of(b"not pushed")
    );
    let (code, err) = common::run_err(&mut verify(&missing));
    assert_eq!(code, 1);
    assert!(err.contains("was not found in the registry"), "{err}");

    // The registry serves a layer whose bytes do not match its digest.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(signed.join("blobs/sha256").join(&digest[7..])).unwrap(),
    )
    .unwrap();
    let layer_hex = &manifest["layers"][0]["digest"].as_str().unwrap()[7..];
    let stored = registry.blob_file(layer_hex);
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let (code, err) = common::run_err(&mut verify(&good));
    assert_eq!(code, 1);
    assert!(
        err.contains("does not match its digest") && err.contains(layer_hex),
        "{err}"
    );

    // The registry serves a manifest whose bytes do not match the digest asked for.
    let stored = registry.blob_file(&digest[7..]);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes.push(b' ');
    std::fs::write(&stored, &bytes).unwrap();
    let (_, err) = common::run_err(&mut verify(&by_digest));
    assert!(
        err.contains("manifest for") && err.contains("does not match its digest"),
        "{err}"
    );
}

#[test]
fn basic_auth_from_the_docker_config_and_the_environment() {
    let registry = Registry::start(RegistryAuth::Basic);
    let scratch = Scratch::new();
    let (layout, public) = scratch.build_hello("out", true);
    let target = format!("{}/team/app:v1", registry.host);

    // No credentials: the registry's own message, a hint, no tag.
    let (code, err) = common::run_err(&mut scratch.push(&layout, &target));
    assert_eq!(code, 1);
    assert!(
        err.contains("HTTP 401") && err.contains("UNAUTHORIZED: authentication required"),
        "{err}"
    );
    assert!(err.contains("CAIRN_REGISTRY_USERNAME"), "{err}");

    // A wrong password in the Docker config file: the same, and the password is
    // never printed.
    scratch.docker_login(&registry.host, USER, "wrong-password-123");
    let (_, err) = common::run_err(&mut scratch.push(&layout, &target));
    assert!(
        err.contains("UNAUTHORIZED: authentication required"),
        "{err}"
    );
    assert!(!err.contains("wrong-password-123"), "{err}");
    assert!(!registry.has_tag("team/app", "v1"));

    // The right password in the Docker config file.
    scratch.docker_login(&registry.host, USER, PASSWORD);
    push_json(&scratch, &layout, &target);
    assert!(registry.has_tag("team/app", "v1"));
    common::run_ok(
        scratch
            .cairn()
            .arg("verify")
            .arg(&target)
            .arg("--insecure")
            .arg("--key")
            .arg(&public),
    );

    // A credential helper named by `credsStore`, run as docker runs it.
    let bin = scratch.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-cairntest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n[ \"$server\" = \"{host}\" ] || {{ echo credentials not found in native keychain; exit 1; }}\necho '{{\"ServerURL\":\"{host}\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n",
            host = registry.host
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        scratch.path("docker/config.json"),
        r#"{"auths":{},"credsStore":"cairntest"}"#,
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    common::run_ok(
        scratch
            .push(&layout, format!("{}/team/helper:v1", registry.host))
            .env("PATH", &path),
    );
    assert!(registry.has_tag("team/helper", "v1"));

    // The environment wins over the config file.
    std::fs::remove_file(scratch.path("docker/config.json")).unwrap();
    let out = common::run_ok(
        scratch
            .push(&layout, format!("{}/team/env:v1", registry.host))
            .env("CAIRN_REGISTRY_USERNAME", USER)
            .env("CAIRN_REGISTRY_PASSWORD", PASSWORD),
    );
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("/team/env:v1@sha256:"));
}

/// A loopback server that answers each connection with the next of `answers` (the
/// last one repeated); counts connections.
fn canned_server(
    answers: Vec<&'static str>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let answer = answers[n.min(answers.len() - 1)];
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (host, count)
}

const UNAVAILABLE: &str = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 73\r\nConnection: close\r\n\r\n{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"registry is shutting down\"}]}";
const OK_V2: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

#[test]
fn server_errors_and_dropped_connections_are_retried_a_bounded_number_of_times() {
    let (host, count) = canned_server(vec![UNAVAILABLE, UNAVAILABLE, OK_V2]);
    let image: Reference = format!("{host}/a/b:v1").parse().unwrap();
    let client = Client::new(ClientOptions {
        insecure: true,
        max_attempts: 3,
        initial_backoff: std::time::Duration::from_millis(10),
        ..Default::default()
    });
    client.ping(&image).unwrap();
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);

    // A connection closed without an answer (a registry restarting) is retried too.
    let (host, count) = canned_server(vec!["", OK_V2]);
    let image: Reference = format!("{host}/a/b:v1").parse().unwrap();
    client.ping(&image).unwrap();
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);

    let (host, count) = canned_server(vec![UNAVAILABLE]);
    let image: Reference = format!("{host}/a/b:v1").parse().unwrap();
    let err = client.ping(&image).unwrap_err().to_string();
    assert!(
        err.contains("HTTP 503") && err.contains("UNAVAILABLE: registry is shutting down"),
        "{err}"
    );
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);
}

#[test]
fn unreachable_garbage_and_non_loopback_insecure_registries_are_clear_errors() {
    let scratch = Scratch::new();
    let (layout, public) = scratch.build_hello("out", true);

    let port = common::registry::free_port();
    let (code, err) =
        common::run_err(&mut scratch.push(&layout, format!("127.0.0.1:{port}/team/app:v1")));
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "cannot reach the registry at http://127.0.0.1:{port}/v2/"
        )),
        "{err}"
    );

    let (host, _) = canned_server(vec!["SSH-2.0-OpenSSH_9.2 garbage\r\n\r\n"]);
    let (_, err) = common::run_err(
        scratch
            .cairn()
            .arg("verify")
            .arg(format!("{host}/team/app:v1"))
            .arg("--insecure")
            .arg("--key")
            .arg(&public),
    );
    assert!(
        err.contains("not an HTTP answer") && err.contains("is this a registry?"),
        "{err}"
    );

    // 200 with something that is not a manifest.
    let (host, _) = canned_server(vec![
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html></html>",
    ]);
    let (_, err) = common::run_err(
        scratch
            .cairn()
            .arg("verify")
            .arg(format!("{host}/team/app:v1"))
            .arg("--insecure")
            .arg("--key")
            .arg(&public),
    );
    assert!(err.contains("is not OCI or Docker v2 JSON"), "{err}");

    let (_, err) = common::run_err(&mut scratch.push(&layout, "registry.example:5000/team/app:v1"));
    assert!(
        err.contains("--insecure is allowed only for loopback"),
        "{err}"
    );
}

/// A bearer-token issuer for the registry's `auth: token` mode: a loopback HTTP server
/// run by a thread of the test. It checks the Basic credentials of each token request
/// and answers with a JWT granting the scopes asked for, signed RS256 by the real
/// `openssl` with a self-signed certificate (sent in `x5c`) that the registry trusts
/// as its `rootcertbundle`.
struct TokenIssuer {
    realm: String,
    cert: std::path::PathBuf,
    /// The query strings of the token requests, and whether they authenticated.
    requests: std::sync::Arc<std::sync::Mutex<Vec<(String, bool)>>>,
    _dir: tempfile::TempDir,
}

const ISSUER: &str = "cairn-test-issuer";
const SERVICE: &str = "cairn-test-registry";

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

impl TokenIssuer {
    fn start() -> TokenIssuer {
        use std::io::{BufRead, BufReader, Write};
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("issuer.key");
        let cert = dir.path().join("issuer.crt");
        common::run_ok(std::process::Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=cairn-test-issuer",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ]));
        let der = common::run_ok(std::process::Command::new("openssl").args([
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-outform",
            "DER",
        ]))
        .stdout;
        let x5c = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(der)
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = requests.clone();
        let expected_auth = {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
            )
        };
        let key_path = key.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                let mut authorized = false;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("authorization")
                            && value.trim() == expected_auth
                        {
                            authorized = true;
                        }
                    }
                }
                let target = request_line.split(' ').nth(1).unwrap_or("");
                let query = target.split_once('?').map_or("", |(_, q)| q).to_string();
                seen.lock().unwrap().push((query.clone(), authorized));
                let mut stream = stream;
                if !authorized {
                    let body = r#"{"details":"wrong user name or password"}"#;
                    let _ = write!(stream, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    continue;
                }
                let access: Vec<serde_json::Value> = query
                    .split('&')
                    .filter_map(|kv| kv.strip_prefix("scope="))
                    .map(percent_decode)
                    .filter_map(|scope| {
                        let mut parts = scope.splitn(3, ':');
                        let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                        Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
                    })
                    .collect();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
                let claims = serde_json::json!({
                    "iss": ISSUER, "sub": USER, "aud": SERVICE, "jti": format!("{now}-{}", seen.lock().unwrap().len()),
                    "iat": now - 60, "nbf": now - 60, "exp": now + 3600, "access": access,
                });
                let signing_input = format!(
                    "{}.{}",
                    b64url(header.to_string().as_bytes()),
                    b64url(claims.to_string().as_bytes())
                );
                let mut openssl = std::process::Command::new("openssl")
                    .args(["dgst", "-sha256", "-sign", key_path.to_str().unwrap()])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                openssl
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(signing_input.as_bytes())
                    .unwrap();
                let signature = openssl.wait_with_output().unwrap().stdout;
                let body =
                    serde_json::json!({"token": format!("{signing_input}.{}", b64url(&signature))})
                        .to_string();
                let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            }
        });
        TokenIssuer {
            realm,
            cert,
            requests,
            _dir: dir,
        }
    }
}

#[test]
fn bearer_token_flow_against_a_registry_in_token_mode() {
    let issuer = TokenIssuer::start();
    let registry = Registry::start(RegistryAuth::Token {
        realm: issuer.realm.clone(),
        service: SERVICE.to_string(),
        issuer: ISSUER.to_string(),
        root_cert: issuer.cert.clone(),
    });
    let scratch = Scratch::new();
    let (layout, public) = scratch.build_hello("out", true);
    let target = format!("{}/team/app:v1", registry.host);

    // Without credentials the token service refuses; its message is shown.
    let (_, err) = common::run_err(&mut scratch.push(&layout, &target));
    assert!(
        err.contains("authentication to") && err.contains("token service") && err.contains("401"),
        "{err}"
    );
    assert!(!registry.has_tag("team/app", "v1"));

    scratch.docker_login(&registry.host, USER, PASSWORD);
    let pushed = push_json(&scratch, &layout, &target);
    assert_eq!(pushed["blobs_uploaded"], 10, "{pushed}");
    assert!(registry.has_tag("team/app", "v1"));
    common::run_ok(
        scratch
            .cairn()
            .arg("verify")
            .arg(&target)
            .arg("--insecure")
            .arg("--key")
            .arg(&public),
    );
    let requests = issuer.requests.lock().unwrap().clone();
    // One token for the whole push and one for the verify's pull: cached, not
    // fetched per request.
    let granted: Vec<&str> = requests
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(q, _)| q.as_str())
        .collect();
    assert_eq!(
        granted,
        [
            format!("service={SERVICE}&scope=repository%3Ateam%2Fapp%3Apull%2Cpush"),
            format!("service={SERVICE}&scope=repository%3Ateam%2Fapp%3Apull"),
        ]
    );
}

#[test]
fn pushing_the_same_image_signed_by_another_key_merges_referrers_and_attestations() {
    let registry = Registry::start(RegistryAuth::None);
    let scratch = Scratch::new();
    let (first, first_pub) = scratch.build_hello("first", true);
    let (second, second_pub) = scratch.build_hello("second", true);
    let target = format!("{}/team/hello:v1", registry.host);
    let a = push_json(&scratch, &first, &target);
    let b = push_json(&scratch, &second, &target);
    // Same image (signatures are not in it), new attestations.
    assert_eq!(a["digest"], b["digest"]);
    let hex = &a["digest"].as_str().unwrap()[7..];
    let raw = |tag: &str| -> serde_json::Value {
        let out = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/team/hello:{tag}", registry.host),
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // 2 SBOM artifacts (identical in both layouts) + 2 x 2 attestations.
    let referrers = raw(&format!("sha256-{hex}"));
    assert_eq!(
        referrers["manifests"].as_array().unwrap().len(),
        6,
        "{referrers}"
    );
    let att = raw(&format!("sha256-{hex}.att"));
    assert_eq!(att["layers"].as_array().unwrap().len(), 4, "{att}");
    // Both sets of attestations come back from the registry: every envelope must
    // verify, so both keys are needed.
    common::run_ok(
        scratch
            .cairn()
            .arg("verify")
            .arg(&target)
            .arg("--insecure")
            .arg("--key")
            .arg(&first_pub)
            .arg("--key")
            .arg(&second_pub),
    );
    let out = scratch
        .cairn()
        .arg("verify")
        .arg(&target)
        .arg("--insecure")
        .arg("--key")
        .arg(&first_pub)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL signatures"));
}

#[test]
fn an_image_index_is_pushed_after_its_manifests_and_pulled_back_whole() {
    let registry = Registry::start(RegistryAuth::None);
    let scratch = Scratch::new();
    let (layout, _) = scratch.build_hello("out", false);
    // Wrap the image in an index (as a multi-platform build lays it out).
    let index_path = layout.join("index.json");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let image = index["manifests"][0].clone();
    let image_index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [image],
    }))
    .unwrap();
    let index_digest = Sha256Digest::of(&image_index);
    std::fs::write(
        layout.join("blobs/sha256").join(index_digest.hex()),
        &image_index,
    )
    .unwrap();
    let mut top = index.clone();
    top["manifests"][0] = serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": index_digest.to_string(),
        "size": image_index.len(),
    });
    std::fs::write(&index_path, serde_json::to_vec(&top).unwrap()).unwrap();

    let target = format!("{}/team/multi:v1", registry.host);
    let pushed = push_json(&scratch, &layout, &target);
    assert_eq!(pushed["digest"], index_digest.to_string().as_str());
    let copy = scratch.path("copy");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://{target}"),
        &format!("oci:{}:v1", copy.display()),
    ]);
    let copied: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        copied["manifests"][0]["digest"],
        index_digest.to_string().as_str()
    );

    // The library pulls the index, its image and the image's referrers (the SBOMs).
    let client = insecure_client(Credentials::default());
    let pulled = cairn::registry::pull::pull_to_layout(
        &client,
        &target.parse().unwrap(),
        &scratch.path("pulled/multi"),
    )
    .unwrap();
    assert_eq!(pulled.digest, index_digest);
    assert_eq!(pulled.media_type, "application/vnd.oci.image.index.v1+json");
    assert_eq!(pulled.referrers, 2);
    assert!(!pulled.referrers_api);
    let blob = |d: &str| scratch.path("pulled/multi/blobs/sha256").join(&d[7..]);
    assert_eq!(
        std::fs::read(blob(&index_digest.to_string())).unwrap(),
        image_index
    );
    assert!(blob(image["digest"].as_str().unwrap()).is_file());
}

/// A loopback TCP proxy in front of `upstream` that cuts the first response to a
/// request containing `victim` after a few hundred bytes (a connection dropped
/// mid-download). Returns its host and how many responses it cut.
fn cutting_proxy(
    upstream: String,
    victim: String,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let cuts = Arc::new(AtomicUsize::new(0));
    let cuts_seen = cuts.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut server = std::net::TcpStream::connect(&upstream).unwrap();
            let cut_this = Arc::new(AtomicBool::new(false));
            let (mut client_in, mut server_out) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (flag, victim, cuts) = (cut_this.clone(), victim.clone(), cuts_seen.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while let Ok(n) = client_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if text.starts_with("GET ")
                        && text.contains(&victim)
                        && cuts
                            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                    {
                        flag.store(true, Ordering::SeqCst);
                    }
                    if server_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            std::thread::spawn(move || {
                let mut buf = [0u8; 300];
                while let Ok(n) = server.read(&mut buf) {
                    if n == 0 || client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    if cut_this.load(Ordering::SeqCst) {
                        let _ = client.shutdown(std::net::Shutdown::Both);
                        let _ = server.shutdown(std::net::Shutdown::Both);
                        break;
                    }
                }
            });
        }
    });
    (host, cuts)
}

#[test]
fn a_download_that_breaks_off_is_fetched_again() {
    let registry = Registry::start(RegistryAuth::None);
    let scratch = Scratch::new();
    let (layout, _) = scratch.build_hello("out", true);
    let target = format!("{}/team/hello:v1", registry.host);
    push_json(&scratch, &layout, &target);
    // The largest blob of the image: its first download is cut short.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(&index["manifests"][0]["digest"].as_str().unwrap()[7..]),
        )
        .unwrap(),
    )
    .unwrap();
    let largest = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap();
    assert!(largest["size"].as_u64().unwrap() > 2000, "{largest}");
    let victim = format!("/blobs/{}", largest["digest"].as_str().unwrap());
    let (proxy, cuts) = cutting_proxy(registry.host.clone(), victim);

    let client = Client::new(ClientOptions {
        insecure: true,
        initial_backoff: std::time::Duration::from_millis(10),
        ..Default::default()
    });
    let dest = scratch.path("pulled/hello");
    let pulled = cairn::registry::pull::pull_to_layout(
        &client,
        &format!("{proxy}/team/hello:v1").parse().unwrap(),
        &dest,
    )
    .unwrap();
    assert_eq!(cuts.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        pulled.digest.to_string(),
        index["manifests"][0]["digest"].as_str().unwrap()
    );
    // Complete and clean: every blob present, no partial file left in the layout.
    let names: Vec<String> = std::fs::read_dir(dest.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| n.len() == 64), "{names:?}");
    assert_eq!(names.len(), pulled.blobs);
    assert!(dest
        .join("blobs/sha256")
        .join(&largest["digest"].as_str().unwrap()[7..])
        .is_file());
}

/// Stops the push once `after` blobs are done (as Ctrl-C does).
struct StopAfter {
    after: usize,
    done: std::sync::atomic::AtomicUsize,
}

impl cairn::registry::push::PushObserver for StopAfter {
    fn blob_finished(&self, _: &Sha256Digest, _: BlobPush) {
        self.done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn cancelled(&self) -> bool {
        self.done.load(std::sync::atomic::Ordering::SeqCst) >= self.after
    }
}

#[test]
fn a_cancelled_push_writes_no_tag_and_the_next_push_resumes() {
    let registry = Registry::start(RegistryAuth::None);
    let scratch = Scratch::new();
    let (layout, _) = scratch.build_hello("out", true);
    let target: Reference = format!("{}/team/hello:v1", registry.host).parse().unwrap();
    let client = insecure_client(Credentials::default());
    let stop = StopAfter {
        after: 3,
        done: std::sync::atomic::AtomicUsize::new(0),
    };
    let err =
        cairn::registry::push::push_layout(&client, &layout, &target, None, &stop).unwrap_err();
    assert!(
        matches!(err, cairn::registry::RegistryError::Interrupted(_)),
        "{err}"
    );
    assert!(!registry.has_tag("team/hello", "v1"));
    let done = stop.done.load(std::sync::atomic::Ordering::SeqCst);
    assert!((3..10).contains(&done), "{done} blobs done before stopping");

    let report = cairn::registry::push::push_layout(
        &client,
        &layout,
        &target,
        None,
        &cairn::registry::push::Silent,
    )
    .unwrap();
    assert_eq!(report.blobs_present, done);
    assert_eq!(report.blobs_uploaded, 10 - done);
    assert!(registry.has_tag("team/hello", "v1"));
}

#[test]
fn a_layout_with_a_blob_changed_in_place_is_refused_before_anything_is_uploaded() {
    let registry = Registry::start(RegistryAuth::None);
    let scratch = Scratch::new();
    let (layout, _) = scratch.build_hello("out", false);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest: Sha256Digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let blobs = layout.join("blobs/sha256");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(manifest_digest.hex())).unwrap()).unwrap();
    let digests: Vec<Sha256Digest> = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .map(|d| d["digest"].as_str().unwrap().parse().unwrap())
        .collect();
    // The last layer overwritten in place with as many other bytes.
    let tampered = blobs.join(digests.last().unwrap().hex());
    let size = std::fs::metadata(&tampered).unwrap().len() as usize;
    std::fs::write(&tampered, vec![0x55; size]).unwrap();

    let target = format!("{}/team/tampered:v1", registry.host);
    let out = scratch.push(&layout, &target).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&tampered.display().to_string()) && stderr.contains("changed"),
        "{stderr}"
    );
    // Not one blob of the image reached the registry (so neither could its manifest).
    let client = insecure_client(Credentials::default());
    let image = reference(&registry, "team/tampered");
    for digest in &digests {
        assert!(!client.blob_exists(&image, digest).unwrap(), "{digest}");
    }
}
