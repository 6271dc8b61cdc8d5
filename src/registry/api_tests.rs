//! Unit tests of the distribution-spec operations against a small fake registry on
//! 127.0.0.1 (one thread, one request per connection, canned spec-shaped answers):
//! every byte received is checked against its digest, uploads follow the spec's
//! POST/PATCH/PUT dance, and referrers come from the API or the tag schema.

use super::*;
use crate::oci::media_type::DOCKER_MANIFEST;
use crate::registry::fake_registry::{answer, FakeRegistry, Received};
use crate::registry::ClientOptions;

fn client() -> Client {
    client_with_chunks(ClientOptions::default().chunk_size)
}

fn client_with_chunks(chunk_size: u64) -> Client {
    Client::new(ClientOptions {
        insecure: true,
        max_attempts: 1,
        chunk_size,
        ..Default::default()
    })
}

const MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

/// A registry serving `body` as every manifest of `app` but `app:missing`, with
/// `digest_header` as its `Docker-Content-Digest`.
fn manifest_registry(body: &'static [u8], digest_header: String) -> FakeRegistry {
    FakeRegistry::start(move |r| match r.target.strip_prefix("/v2/app/manifests/") {
        Some("missing") | None => answer(404),
        Some(_) => answer(200)
            .header("Content-Type", OCI_MANIFEST)
            .header("Docker-Content-Digest", digest_header.clone())
            .body(body),
    })
}

#[test]
fn a_manifest_is_returned_with_its_digest_and_media_type() {
    let digest = Sha256Digest::of(MANIFEST);
    let registry = manifest_registry(MANIFEST, digest.to_string());
    let got = client().get_manifest(&registry.image("app:v1")).unwrap();
    assert_eq!(got.bytes, MANIFEST);
    assert_eq!(got.digest, digest);
    assert_eq!(got.media_type, OCI_MANIFEST);
    let accept = registry.received()[0].header("Accept").unwrap().to_string();
    assert!(accept.contains(OCI_INDEX), "{accept}");
}

#[test]
fn a_manifest_other_than_the_registry_claims_is_refused() {
    let registry = manifest_registry(MANIFEST, Sha256Digest::of(b"other").to_string());
    let err = client()
        .get_manifest(&registry.image("app:v1"))
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::DigestMismatch { actual, .. } if *actual == Sha256Digest::of(MANIFEST).to_string()),
        "{err:?}"
    );
}

#[test]
fn a_manifest_other_than_the_pinned_digest_is_refused() {
    let registry = manifest_registry(MANIFEST, Sha256Digest::of(MANIFEST).to_string());
    let pinned = Sha256Digest::of(b"what the lock pins");
    let image = registry.image(&format!("app:v1@{pinned}"));
    let err = client().get_manifest(&image).unwrap_err();
    assert!(
        matches!(&err, RegistryError::DigestMismatch { expected, .. } if *expected == pinned.to_string()),
        "{err:?}"
    );
    // Asked by digest, not by the tag that may have moved.
    assert_eq!(
        registry.requests(),
        [format!("GET /v2/app/manifests/{pinned}")]
    );
}

#[test]
fn a_missing_manifest_is_none_or_not_found() {
    let registry = manifest_registry(MANIFEST, String::new());
    let image = registry.image("app:missing");
    assert!(client().find_manifest(&image).unwrap().is_none());
    let err = client().get_manifest(&image).unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
}

#[test]
fn a_manifest_of_an_unknown_media_type_is_refused() {
    const CONFIG_BLOB: &[u8] = br#"{"mediaType":"application/vnd.oci.image.config.v1+json"}"#;
    let registry = manifest_registry(CONFIG_BLOB, String::new());
    let err = client()
        .get_manifest(&registry.image("app:v1"))
        .unwrap_err();
    assert!(matches!(err, RegistryError::Protocol { .. }), "{err:?}");
}

#[test]
fn a_server_error_carries_the_registry_message() {
    let registry = FakeRegistry::start(|_| {
        answer(500)
            .header("Content-Type", "application/json")
            .body(br#"{"errors":[{"code":"UNKNOWN","message":"storage is full"}]}"#)
    });
    let err = client()
        .get_manifest(&registry.image("app:v1"))
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::Status { status: 500, message, .. } if message.contains("storage is full")),
        "{err:?}"
    );
    assert!(err.is_transient());
}

/// A registry serving `served` as the blob `digest` of `app`.
fn blob_registry(digest: Sha256Digest, served: &'static [u8]) -> FakeRegistry {
    FakeRegistry::start(move |r| {
        if r.target == format!("/v2/app/blobs/{digest}") {
            answer(200).body(served)
        } else {
            answer(404)
        }
    })
}

#[test]
fn a_blob_is_streamed_and_checked() {
    let digest = Sha256Digest::of(b"layer bytes");
    let registry = blob_registry(digest, b"layer bytes");
    let mut out = Vec::new();
    let len = client()
        .get_blob_to(&registry.image("app:v1"), &digest, Some(11), &mut out)
        .unwrap();
    assert_eq!((len, out.as_slice()), (11, &b"layer bytes"[..]));
}

#[test]
fn a_blob_with_other_bytes_or_size_is_refused() {
    let digest = Sha256Digest::of(b"layer bytes");
    let registry = blob_registry(digest, b"other bytes");
    let image = registry.image("app:v1");
    let err = client()
        .get_blob_to(&image, &digest, None, &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );

    let registry = blob_registry(digest, b"layer bytes");
    let image = registry.image("app:v1");
    let err = client()
        .get_blob_to(&image, &digest, Some(10), &mut Vec::new())
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );

    let missing = Sha256Digest::of(b"not there");
    let err = client()
        .get_blob_to(&image, &missing, None, &mut Vec::new())
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
}

/// A registry that lacks every blob and accepts uploads at `uploads/u1`, mounting
/// when `mounts`.
fn upload_registry(mounts: bool) -> FakeRegistry {
    FakeRegistry::start(move |r| match (r.method.as_str(), r.target.as_str()) {
        ("HEAD", _) => answer(404),
        ("POST", t) if t.contains("mount=") && mounts => answer(201),
        ("POST", _) => answer(202).header("Location", "/v2/app/blobs/uploads/u1?state=0"),
        ("PATCH", _) => answer(202).header("Location", "/v2/app/blobs/uploads/u1?state=1"),
        ("PUT", t) if t.contains("digest=sha256:") => answer(201),
        _ => answer(400),
    })
}

#[test]
fn a_small_blob_is_uploaded_in_one_put() {
    let registry = upload_registry(false);
    let (digest, pushed) = client()
        .push_blob_bytes(&registry.image("app:v1"), b"{\"config\":1}")
        .unwrap();
    assert_eq!(pushed, BlobPush::Uploaded);
    assert_eq!(digest, Sha256Digest::of(b"{\"config\":1}"));
    let received = registry.received();
    assert_eq!(
        registry.requests(),
        [
            format!("HEAD /v2/app/blobs/{digest}"),
            "POST /v2/app/blobs/uploads/".to_string(),
            format!("PUT /v2/app/blobs/uploads/u1?state=0&digest={digest}"),
        ]
    );
    assert_eq!(received[2].body, b"{\"config\":1}");
}

#[test]
fn a_large_blob_is_uploaded_in_patch_chunks_from_the_file() {
    let registry = upload_registry(false);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let bytes = b"0123456789abcdefghij";
    std::fs::write(&path, bytes).unwrap();
    let digest = Sha256Digest::of(bytes);
    let sent = std::sync::atomic::AtomicU64::new(0);
    let pushed = client_with_chunks(8)
        .push_blob(&registry.image("app:v1"), &path, &digest, 20, None, &|n| {
            sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
    assert_eq!(pushed, BlobPush::Uploaded);
    assert_eq!(sent.into_inner(), 20);
    let received = registry.received();
    let patches: Vec<&Received> = received.iter().filter(|r| r.method == "PATCH").collect();
    let ranges: Vec<&str> = patches
        .iter()
        .map(|r| r.header("Content-Range").unwrap())
        .collect();
    assert_eq!(ranges, ["0-7", "8-15", "16-19"]);
    let joined: Vec<u8> = patches.iter().flat_map(|r| r.body.clone()).collect();
    assert_eq!(joined, bytes);
    let put = received.last().unwrap();
    assert_eq!(put.method, "PUT");
    assert_eq!(
        put.target,
        format!("/v2/app/blobs/uploads/u1?state=1&digest={digest}")
    );
    assert!(put.body.is_empty());
}

#[test]
fn a_blob_the_repository_has_is_not_sent_and_a_mount_is_not_uploaded() {
    let digest = Sha256Digest::of(b"shared layer");
    let present = FakeRegistry::start(|r| match r.method.as_str() {
        "HEAD" => answer(200),
        _ => answer(400),
    });
    let pushed = client()
        .push_blob_bytes(&present.image("app:v1"), b"shared layer")
        .unwrap();
    assert_eq!(pushed, (digest, BlobPush::Present));
    assert_eq!(present.requests(), [format!("HEAD /v2/app/blobs/{digest}")]);

    let mounting = upload_registry(true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    std::fs::write(&path, b"shared layer").unwrap();
    let pushed = client()
        .push_blob(
            &mounting.image("app:v1"),
            &path,
            &digest,
            12,
            Some("library/base"),
            &|_| {},
        )
        .unwrap();
    assert_eq!(pushed, BlobPush::Mounted);
    assert_eq!(
        mounting.requests().last().unwrap(),
        &format!("POST /v2/app/blobs/uploads/?mount={digest}&from=library%2Fbase")
    );
}

#[test]
fn a_pushed_manifest_confirmed_under_another_digest_is_an_error() {
    let registry = FakeRegistry::start(|_| {
        answer(201).header(
            "Docker-Content-Digest",
            Sha256Digest::of(b"else").to_string(),
        )
    });
    let err = client()
        .put_manifest(&registry.image("app:v1"), MANIFEST, OCI_MANIFEST)
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );

    let digest = Sha256Digest::of(MANIFEST);
    let registry = FakeRegistry::start(move |_| {
        answer(201)
            .header("Docker-Content-Digest", digest.to_string())
            .header("OCI-Subject", "sha256:abc")
    });
    let put = client()
        .put_manifest(&registry.image("app:v1"), MANIFEST, OCI_MANIFEST)
        .unwrap();
    assert_eq!(put.digest, digest);
    assert_eq!(put.oci_subject.as_deref(), Some("sha256:abc"));
    let received = registry.received();
    assert_eq!(received[0].target, "/v2/app/manifests/v1");
    assert_eq!(received[0].header("Content-Type"), Some(OCI_MANIFEST));
    assert_eq!(received[0].body, MANIFEST);
}

fn referrers_index() -> Vec<u8> {
    let sbom = Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: Sha256Digest::of(b"sbom").to_string(),
        size: 4,
        artifact_type: Some("application/spdx+json".into()),
        annotations: BTreeMap::new(),
        platform: None,
    };
    let provenance = Descriptor {
        artifact_type: Some("application/vnd.in-toto+json".into()),
        digest: Sha256Digest::of(b"provenance").to_string(),
        ..sbom.clone()
    };
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [sbom, provenance],
    }))
    .unwrap()
}

#[test]
fn referrers_come_from_the_api_filtered_by_artifact_type() {
    let subject = Sha256Digest::of(b"image manifest");
    let index = referrers_index();
    let registry = FakeRegistry::start(move |r| {
        if r.target
            .starts_with(&format!("/v2/app/referrers/{subject}"))
        {
            answer(200).header("Content-Type", OCI_INDEX).body(&index)
        } else {
            answer(404)
        }
    });
    let image = registry.image("app:v1");
    let (all, api) = client().referrers(&image, &subject, None).unwrap();
    assert!(api);
    assert_eq!(all.len(), 2);
    let (sboms, _) = client()
        .referrers(&image, &subject, Some("application/spdx+json"))
        .unwrap();
    assert_eq!(sboms.len(), 1);
    assert_eq!(
        sboms[0].digest().to_string(),
        Sha256Digest::of(b"sbom").to_string()
    );
    assert!(registry.requests()[1].ends_with("?artifactType=application%2Fspdx%2Bjson"));
}

#[test]
fn without_the_referrers_api_the_tag_schema_is_read() {
    let subject = Sha256Digest::of(b"image manifest");
    let index = referrers_index();
    let tag = format!("/v2/app/manifests/{}", referrers_tag(&subject));
    let registry = FakeRegistry::start(move |r| {
        if r.target == tag {
            answer(200).header("Content-Type", OCI_INDEX).body(&index)
        } else {
            answer(404)
        }
    });
    let image = registry.image("app:v1");
    let (found, api) = client().referrers(&image, &subject, None).unwrap();
    assert!(!api);
    assert_eq!(found.len(), 2);

    let other = Sha256Digest::of(b"an image nobody refers to");
    let (found, api) = client().referrers(&image, &other, None).unwrap();
    assert!(!api);
    assert!(found.is_empty());
}

#[test]
fn the_media_type_is_the_field_else_the_content_type_else_the_shape() {
    assert_eq!(
        media_type_of(
            br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#,
            Some(OCI_MANIFEST)
        )
        .as_deref(),
        Some(DOCKER_MANIFEST)
    );
    assert_eq!(
        media_type_of(
            b"{}",
            Some("application/vnd.oci.image.index.v1+json; charset=utf-8")
        )
        .as_deref(),
        Some(OCI_INDEX)
    );
    assert_eq!(
        media_type_of(br#"{"manifests":[]}"#, Some("application/json")).as_deref(),
        Some(OCI_INDEX)
    );
    assert_eq!(media_type_of(b"{}", None).as_deref(), Some(OCI_MANIFEST));
    assert_eq!(media_type_of(b"{}", Some("text/html")), None);
    assert_eq!(media_type_of(b"<html>", Some(OCI_MANIFEST)), None);
}

#[test]
fn a_referrer_is_listed_by_artifact_type_else_config_media_type() {
    let digest = Sha256Digest::of(MANIFEST);
    let parsed = ManifestDoc::parse(MANIFEST, OCI_MANIFEST, "the manifest").unwrap();
    let listed = parsed.referrer_descriptor(OCI_MANIFEST, &digest, 9);
    assert_eq!(
        listed.artifact_type.as_deref(),
        Some("application/vnd.oci.image.config.v1+json")
    );
    assert_eq!(listed.digest, digest.to_string());
    assert_eq!(parsed.blobs().len(), 1);

    let with_type = br#"{"schemaVersion":2,"layers":[],"artifactType":"application/spdx+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}}"#;
    let parsed = ManifestDoc::parse(with_type, OCI_MANIFEST, "the manifest").unwrap();
    assert_eq!(
        parsed
            .referrer_descriptor(OCI_MANIFEST, &digest, 9)
            .artifact_type
            .as_deref(),
        Some("application/spdx+json")
    );

    let err = ManifestDoc::parse(b"[1,2]", OCI_MANIFEST, "the pulled manifest").unwrap_err();
    assert!(err.to_string().contains("the pulled manifest"), "{err}");
}

#[test]
fn a_descriptor_digest_must_be_sha256() {
    let mut d: Descriptor = serde_json::from_slice(
        br#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha512:00","size":1}"#,
    )
    .unwrap();
    assert!(d.sha256().is_err());
    d.digest = Sha256Digest::of(b"x").to_string();
    assert_eq!(d.sha256().unwrap(), Sha256Digest::of(b"x"));
}

#[test]
fn the_catalog_and_tag_lists_follow_their_next_links() {
    let registry = FakeRegistry::start(|r| match r.target.as_str() {
        "/v2/_catalog?n=1000" => answer(200)
            .header("Link", r#"</v2/_catalog?last=b&n=1000>; rel="next""#)
            .body(br#"{"repositories":["a","b"]}"#),
        "/v2/_catalog?last=b&n=1000" => answer(200).body(br#"{"repositories":["c/d"]}"#),
        "/v2/c/d/tags/list?n=1000" => answer(200).body(br#"{"name":"c/d","tags":["v1","v2"]}"#),
        // distribution answers an empty repository with `"tags": null`.
        "/v2/a/tags/list?n=1000" => answer(200).body(br#"{"name":"a","tags":null}"#),
        _ => answer(404),
    });
    let client = client();
    assert_eq!(client.catalog(&registry.host).unwrap(), ["a", "b", "c/d"]);
    assert_eq!(client.tags(&registry.image("c/d")).unwrap(), ["v1", "v2"]);
    assert!(client.tags(&registry.image("a")).unwrap().is_empty());
    assert!(client.tags(&registry.image("gone")).unwrap().is_empty());
}

#[test]
fn a_listing_that_is_not_json_names_what_was_listed() {
    let registry = FakeRegistry::start(|_| answer(200).body(b"<html>"));
    let err = client().catalog(&registry.host).unwrap_err().to_string();
    assert!(err.contains("the catalog is not the JSON"), "{err}");
}

#[test]
fn only_a_manifest_pinned_by_digest_is_deleted() {
    let registry = FakeRegistry::start(|r| match r.method.as_str() {
        "DELETE" => answer(202),
        _ => answer(404),
    });
    let client = client();
    let digest = Sha256Digest::of(MANIFEST);
    client
        .delete_manifest(&registry.image("app").with_digest(digest))
        .unwrap();
    assert_eq!(
        registry.requests(),
        [format!("DELETE /v2/app/manifests/{digest}")]
    );
    let err = client
        .delete_manifest(&registry.image("app:v1"))
        .unwrap_err();
    assert!(err.to_string().contains("names no digest"), "{err}");
}
