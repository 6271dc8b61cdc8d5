//! Unit tests of the referrers tag schema and cosign's attestation tag against a fake
//! registry that stores what is pushed: what other tools listed stays, and nothing
//! is written when everything is already listed.

use super::*;
use crate::registry::fake_registry::{answer, FakeRegistry};
use crate::registry::ClientOptions;
use std::sync::{Arc, Mutex};

/// Manifests by request path, as pushed (PUT) or preset.
type Manifests = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// A registry holding `manifests` (served with `media_type`), storing manifests
/// pushed to it and accepting any blob upload.
fn storing_registry(manifests: Manifests, media_type: &'static str) -> FakeRegistry {
    FakeRegistry::start(move |r| {
        let path = r.target.split('?').next().unwrap_or_default().to_string();
        match r.method.as_str() {
            "GET" => match manifests.lock().unwrap().get(&path) {
                Some(bytes) => answer(200).header("Content-Type", media_type).body(bytes),
                None => answer(404),
            },
            "PUT" if path.contains("/manifests/") => {
                manifests.lock().unwrap().insert(path, r.body.clone());
                answer(201)
            }
            "HEAD" => answer(404),
            "POST" => answer(202).header("Location", "/v2/app/blobs/uploads/u1"),
            "PUT" => answer(201),
            _ => answer(400),
        }
    })
}

fn client() -> Client {
    Client::new(ClientOptions {
        insecure: true,
        max_attempts: 1,
        ..Default::default()
    })
}

fn referrer(name: &[u8]) -> Descriptor {
    Descriptor {
        media_type: OCI_MANIFEST.into(),
        digest: Sha256Digest::of(name).to_string(),
        size: 100,
        artifact_type: Some("application/spdx+json".into()),
        annotations: BTreeMap::new(),
        platform: None,
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn the_referrers_tag_keeps_what_other_tools_listed() {
    let subject = Sha256Digest::of(b"image");
    let tag_path = format!("/v2/app/manifests/{}", referrers_tag(&subject));
    let theirs = serde_json::json!({
        "mediaType": OCI_MANIFEST,
        "digest": Sha256Digest::of(b"their signature").to_string(),
        "size": 7,
        "artifactType": "application/vnd.dev.sigstore.bundle+json",
        "x-field-cairn-does-not-know": true,
    });
    let existing =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [theirs]});
    let manifests: Manifests = Arc::new(Mutex::new(BTreeMap::from([(
        tag_path.clone(),
        serde_json::to_vec(&existing).unwrap(),
    )])));
    let registry = storing_registry(manifests.clone(), OCI_INDEX);
    let image = registry.image("app:v1");

    let ours = referrer(b"our sbom");
    let tag =
        update_referrers_tag(&client(), &image, &subject, std::slice::from_ref(&ours)).unwrap();
    assert_eq!(tag, referrers_tag(&subject));
    let index = json(&manifests.lock().unwrap()[&tag_path]);
    assert_eq!(index["mediaType"], OCI_INDEX);
    assert_eq!(index["manifests"][0], theirs);
    assert_eq!(index["manifests"][1]["digest"], ours.digest);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    // Everything listed already: read, not written.
    let writes = |r: &FakeRegistry| r.requests().iter().filter(|q| q.starts_with("PUT")).count();
    assert_eq!(writes(&registry), 1);
    update_referrers_tag(&client(), &image, &subject, &[ours]).unwrap();
    assert_eq!(writes(&registry), 1);
}

#[test]
fn a_missing_referrers_tag_is_created() {
    let subject = Sha256Digest::of(b"image");
    let manifests: Manifests = Arc::default();
    let registry = storing_registry(manifests.clone(), OCI_INDEX);
    let a = referrer(b"a");
    let b = referrer(b"b");
    update_referrers_tag(
        &client(),
        &registry.image("app:v1"),
        &subject,
        &[a.clone(), b.clone()],
    )
    .unwrap();
    let path = format!("/v2/app/manifests/{}", referrers_tag(&subject));
    let index = json(&manifests.lock().unwrap()[&path]);
    let digests: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [a.digest.as_str(), b.digest.as_str()]);
}

#[test]
fn cosign_attestations_are_added_as_layers_with_matching_diff_ids() {
    let subject = Sha256Digest::of(b"image");
    let path = format!("/v2/app/manifests/{}", cosign_attestation_tag(&subject));
    let manifests: Manifests = Arc::default();
    let registry = storing_registry(manifests.clone(), OCI_MANIFEST);
    let image = registry.image("app:v1");
    let envelope = |name: &[u8], predicate: &str| Envelope {
        digest: Sha256Digest::of(name),
        size: 50,
        predicate_type: predicate.into(),
    };
    let provenance = envelope(b"provenance", "https://slsa.dev/provenance/v1");
    update_cosign_attestations(
        &client(),
        &image,
        &subject,
        std::slice::from_ref(&provenance),
    )
    .unwrap();
    let sbom = envelope(b"sbom", "https://spdx.dev/Document");
    update_cosign_attestations(&client(), &image, &subject, &[sbom.clone(), provenance]).unwrap();

    let manifest = json(&manifests.lock().unwrap()[&path]);
    let layers = manifest["layers"].as_array().unwrap();
    let listed: Vec<(&str, &str)> = layers
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap(),
                l["annotations"][COSIGN_PREDICATE_TYPE].as_str().unwrap(),
            )
        })
        .collect();
    let provenance_digest = Sha256Digest::of(b"provenance").to_string();
    assert_eq!(
        listed,
        [
            (provenance_digest.as_str(), "https://slsa.dev/provenance/v1"),
            (
                sbom.digest.to_string().as_str(),
                "https://spdx.dev/Document"
            ),
        ]
    );
    assert_eq!(
        layers[0]["mediaType"],
        crate::oci::media_type::DSSE_ENVELOPE
    );
    assert_eq!(layers[0]["annotations"][COSIGN_SIGNATURE], "");

    // The config pushed lists the layers as its diff_ids, as cosign writes it.
    let config_put = registry
        .received()
        .into_iter()
        .rfind(|r| r.method == "PUT" && r.target.contains("digest="))
        .unwrap();
    assert_eq!(
        manifest["config"]["digest"],
        Sha256Digest::of(&config_put.body).to_string()
    );
    let config = json(&config_put.body);
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([provenance_digest, sbom.digest.to_string()])
    );
}
