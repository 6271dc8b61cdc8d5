//! cairn against a real registry (Debian's `docker-registry`, distribution 2.8),
//! started per test on a loopback port and killed by PID: the client library,
//! `cairn push`, `cairn build --push`, `cairn verify REF`, and the failure modes.

mod common;

use cairn::digest::Sha256Digest;
use cairn::registry::{BlobPush, Client, ClientOptions, Credentials, Login, Reference};
use common::registry::{Registry, RegistryAuth, PASSWORD, USER};
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
    let err = anonymous.ping(&image).unwrap_err().to_string();
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
