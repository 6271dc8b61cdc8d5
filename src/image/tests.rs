//! Unit tests of the image stage: what a user of the image sees in its config,
//! manifest and index (the recipe's config, layer order and media types, times from
//! the epoch, platforms, referrers), and that every document is canonical JSON whose
//! bytes depend only on the input.

use super::*;
use crate::base::BaseLayer;
use crate::digest::Sha256Digest;
use crate::oci::compression::Compression;
use crate::recipe::RecipeFile;
use serde_json::{json, Value};
use std::path::PathBuf;

const EPOCH: u64 = 1_700_000_000;

fn recipe_from(text: &str) -> Recipe {
    crate::recipe::parse(RecipeFile {
        path: PathBuf::from("demo.yaml"),
        dir: PathBuf::from("."),
        text: text.to_string(),
    })
    .unwrap_or_else(|d| panic!("test recipe does not parse: {d:?}"))
}

/// A recipe that sets every config field the image stage copies.
fn recipe() -> Recipe {
    recipe_from(
        "cairn: 1
name: demo
platform: linux/arm64/v8
layers:
  - name: one
    contents:
      - dir: /tmp
config:
  entrypoint: [/usr/bin/app]
  cmd: [--serve]
  env: { PATH: /usr/bin:/bin, LANG: C.UTF-8 }
  workdir: /srv
  user: \"1000:1000\"
  labels: { b.label: two, a.label: one }
  exposed_ports: [8080/tcp]
  volumes: [/data]
  stop_signal: SIGTERM
annotations: { org.opencontainers.image.source: demo.yaml }
",
    )
}

/// `config.user` of a recipe whose accounts are its own: already numbers.
fn ids(recipe: &Recipe) -> Option<&str> {
    match &recipe.config.user {
        Some(crate::recipe::ConfigUser::Ids(ids)) => Some(ids),
        None => None,
        other => panic!("{other:?}"),
    }
}

fn layer(name: &str, compression: Compression) -> LayerBlob {
    LayerBlob {
        name: name.to_string(),
        digest: Sha256Digest::of(format!("{name} compressed").as_bytes()),
        size: 100 + name.len() as u64,
        diff_id: Sha256Digest::of(format!("{name} tar").as_bytes()),
        uncompressed_size: 1000,
        entries: 1,
        compression,
        cached: false,
        sha1: Default::default(),
    }
}

fn stored(what: &str) -> StoredBlob {
    StoredBlob {
        digest: Sha256Digest::of(what.as_bytes()),
        size: what.len() as u64,
    }
}

/// A base image with one Docker-typed layer, a config with env, cmd, labels and
/// history; `labels_json` is the text of its `Labels` object.
fn base_with_labels(labels_json: &str) -> BaseImage {
    let diff_id = Sha256Digest::of(b"base tar");
    let config: ImageConfiguration = serde_json::from_str(&format!(
        r#"{{
            "architecture": "arm64", "os": "linux",
            "config": {{
                "Env": ["PATH=/base/bin", "HOME=/root"],
                "Cmd": ["sh"],
                "User": "0",
                "Labels": {labels_json}
            }},
            "rootfs": {{"type": "layers", "diff_ids": ["{diff_id}"]}},
            "history": [{{"created_by": "base: ADD rootfs"}}]
        }}"#
    ))
    .unwrap();
    BaseImage {
        reference: "layout:base".into(),
        pinned: Sha256Digest::of(b"base index"),
        manifest_digest: Sha256Digest::of(b"base manifest"),
        config,
        layers: vec![BaseLayer {
            digest: Sha256Digest::of(b"base compressed"),
            size: 4242,
            media_type: media_type::DOCKER_LAYER_GZIP.into(),
            diff_id,
        }],
    }
}

fn base() -> BaseImage {
    base_with_labels(r#"{"a.label": "base", "z.label": "base"}"#)
}

fn json_of<T: serde::Serialize>(value: &T) -> Value {
    serde_json::from_slice(&canonical_json(value)).unwrap()
}

/// Fails unless `bytes` are compact JSON with the keys of every object sorted.
fn assert_canonical(bytes: &[u8]) {
    fn sorted(v: &Value, at: &str) {
        match v {
            Value::Object(map) => {
                let keys: Vec<&String> = map.keys().collect();
                let mut want = keys.clone();
                want.sort();
                assert_eq!(keys, want, "keys of {at} are not sorted");
                for (k, v) in map {
                    sorted(v, &format!("{at}.{k}"));
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    sorted(v, &format!("{at}[{i}]"));
                }
            }
            _ => {}
        }
    }
    // `Value` keeps its keys sorted (without serde_json's `preserve_order`), so
    // written back it is the canonical form; the walk holds even with that feature on.
    let value: Value = serde_json::from_slice(bytes).unwrap();
    sorted(&value, "$");
    assert_eq!(
        String::from_utf8_lossy(bytes),
        serde_json::to_string(&value).unwrap(),
        "not canonical JSON (compact, keys sorted)"
    );
}

#[test]
fn the_config_carries_the_recipes_config_and_platform() {
    let recipe = recipe();
    let layers = [layer("one", Compression::Gzip)];
    let config = image_config(
        &recipe,
        &recipe.platform,
        None,
        &layers,
        ids(&recipe),
        EPOCH,
    )
    .unwrap();
    let v = json_of(&config);
    assert_eq!(v["architecture"], "arm64");
    assert_eq!(v["os"], "linux");
    assert_eq!(v["variant"], "v8");
    let c = &v["config"];
    assert_eq!(c["Entrypoint"], json!(["/usr/bin/app"]));
    assert_eq!(c["Cmd"], json!(["--serve"]));
    assert_eq!(c["Env"], json!(["LANG=C.UTF-8", "PATH=/usr/bin:/bin"]));
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Labels"], json!({"a.label": "one", "b.label": "two"}));
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}}));
    assert_eq!(c["Volumes"], json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(v["rootfs"]["type"], "layers");
    assert_eq!(
        v["rootfs"]["diff_ids"],
        json!([layers[0].diff_id.to_string()])
    );
}

#[test]
fn the_config_lists_base_then_recipe_layers_in_order() {
    let recipe = recipe();
    let base = base();
    let layers = [
        layer("one", Compression::Gzip),
        layer("two", Compression::Zstd),
    ];
    let config = image_config(
        &recipe,
        &recipe.platform,
        Some(&base),
        &layers,
        ids(&recipe),
        EPOCH,
    )
    .unwrap();
    let v = json_of(&config);
    assert_eq!(
        v["rootfs"]["diff_ids"],
        json!([
            base.layers[0].diff_id.to_string(),
            layers[0].diff_id.to_string(),
            layers[1].diff_id.to_string(),
        ])
    );
    let created_by: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(
        created_by,
        ["base: ADD rootfs", "cairn: layer one", "cairn: layer two"]
    );
}

#[test]
fn the_recipe_overrides_and_merges_the_base_config() {
    let recipe = recipe();
    let base = base();
    let config = image_config(
        &recipe,
        &recipe.platform,
        Some(&base),
        &[],
        ids(&recipe),
        EPOCH,
    )
    .unwrap();
    let c = &json_of(&config)["config"];
    // PATH replaced in place, HOME kept, LANG added.
    assert_eq!(
        c["Env"],
        json!(["PATH=/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8"])
    );
    assert_eq!(
        c["Labels"],
        json!({"a.label": "one", "b.label": "two", "z.label": "base"})
    );
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Cmd"], json!(["--serve"]));

    // An entrypoint alone clears the base's cmd, as a Dockerfile ENTRYPOINT does.
    let entrypoint_only = recipe_from(
        "cairn: 1\nname: demo\nlayers:\n  - name: one\n    contents:\n      - dir: /tmp\n\
         config:\n  entrypoint: [/bin/x]\n",
    );
    let config = image_config(
        &entrypoint_only,
        &entrypoint_only.platform,
        Some(&base),
        &[],
        None,
        EPOCH,
    )
    .unwrap();
    let c = &json_of(&config)["config"];
    assert_eq!(c["Entrypoint"], json!(["/bin/x"]));
    assert!(c.get("Cmd").is_none_or(Value::is_null), "{c}");
    assert_eq!(
        c["User"], "0",
        "the base's user stays when the recipe sets none"
    );
}

#[test]
fn created_times_are_the_epoch_in_rfc3339_not_the_clock() {
    let recipe = recipe();
    let layers = [layer("one", Compression::Gzip)];
    for (epoch, want) in [(0, "1970-01-01T00:00:00Z"), (EPOCH, "2023-11-14T22:13:20Z")] {
        let config = image_config(&recipe, &recipe.platform, None, &layers, None, epoch).unwrap();
        let v = json_of(&config);
        assert_eq!(v["created"], want);
        assert_eq!(v["history"][0]["created"], want);
    }
}

#[test]
fn the_manifest_lists_layers_with_the_media_type_of_their_compression() {
    let recipe = recipe();
    let base = base();
    let layers = [
        layer("gz", Compression::Gzip),
        layer("zst", Compression::Zstd),
        layer("plain", Compression::None),
    ];
    let config = stored("config");
    let manifest = manifest(&recipe, &config, Some(&base), &layers).unwrap();
    let v = json_of(&manifest);
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], media_type::OCI_MANIFEST);
    assert_eq!(
        v["config"],
        json!({
            "mediaType": media_type::OCI_CONFIG,
            "digest": config.digest.to_string(),
            "size": config.size,
        })
    );
    let listed: Vec<(String, String, u64)> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["mediaType"].as_str().unwrap().to_string(),
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let want = |media: &str, digest: Sha256Digest, size: u64| {
        (media.to_string(), digest.to_string(), size)
    };
    assert_eq!(
        listed,
        [
            // The base's Docker layer is listed under its OCI name (same bytes).
            want(media_type::OCI_LAYER_GZIP, base.layers[0].digest, 4242),
            want(media_type::OCI_LAYER_GZIP, layers[0].digest, layers[0].size),
            want(media_type::OCI_LAYER_ZSTD, layers[1].digest, layers[1].size),
            want(media_type::OCI_LAYER, layers[2].digest, layers[2].size),
        ]
    );
    assert_eq!(
        v["annotations"],
        json!({
            annotation::OUTPUT_FORMAT: OUTPUT_FORMAT_VERSION,
            "org.opencontainers.image.source": "demo.yaml",
        })
    );
}

#[test]
fn layer_list_matches_the_manifest_and_the_config() {
    let base = base();
    let layers = [layer("one", Compression::Zstd)];
    let list = layer_list(Some(&base), &layers);
    let summary: Vec<(Sha256Digest, &str, Sha256Digest)> = list
        .iter()
        .map(|(blob, media, diff_id)| (blob.digest, media.as_str(), *diff_id))
        .collect();
    assert_eq!(
        summary,
        [
            (
                base.layers[0].digest,
                media_type::OCI_LAYER_GZIP,
                base.layers[0].diff_id
            ),
            (
                layers[0].digest,
                media_type::OCI_LAYER_ZSTD,
                layers[0].diff_id
            ),
        ]
    );
}

#[test]
fn index_json_tags_the_image_with_the_recipe_name_and_lists_its_referrers() {
    let recipe = recipe();
    let manifest = stored("manifest");
    let sbom = stored("sbom manifest");
    let bytes = index(
        &recipe,
        &manifest,
        &[("application/spdx+json".to_string(), sbom)],
    )
    .unwrap();
    assert_canonical(&bytes);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], media_type::OCI_INDEX);
    assert_eq!(
        v["manifests"],
        json!([
            {
                "mediaType": media_type::OCI_MANIFEST,
                "digest": manifest.digest.to_string(),
                "size": manifest.size,
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
                "annotations": {annotation::REF_NAME: "demo"},
            },
            {
                "mediaType": media_type::OCI_MANIFEST,
                "digest": sbom.digest.to_string(),
                "size": sbom.size,
                "artifactType": "application/spdx+json",
            },
        ])
    );
}

#[test]
fn a_platform_index_lists_each_platform_once_with_its_platform_object() {
    let recipe = recipe();
    let platform = |os: &str, arch: &str, variant: Option<&str>| Platform {
        os: os.into(),
        architecture: arch.into(),
        variant: variant.map(Into::into),
    };
    let amd64 = stored("amd64 manifest");
    let arm64 = stored("arm64 manifest");
    let bytes = platform_index(
        &recipe,
        &[
            (platform("linux", "amd64", None), amd64),
            (platform("linux", "arm64", Some("v8")), arm64),
        ],
    )
    .unwrap();
    assert_canonical(&bytes);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["mediaType"], media_type::OCI_INDEX);
    assert_eq!(
        v["manifests"],
        json!([
            {
                "mediaType": media_type::OCI_MANIFEST,
                "digest": amd64.digest.to_string(),
                "size": amd64.size,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": media_type::OCI_MANIFEST,
                "digest": arm64.digest.to_string(),
                "size": arm64.size,
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            },
        ])
    );
    assert_eq!(
        v["annotations"][annotation::OUTPUT_FORMAT],
        OUTPUT_FORMAT_VERSION
    );

    // index.json of a multi-platform layout points at that index, tagged.
    let top = StoredBlob {
        digest: Sha256Digest::of(&bytes),
        size: bytes.len() as u64,
    };
    let outer: Value =
        serde_json::from_slice(&index_of_index(&recipe, &top, &[]).unwrap()).unwrap();
    assert_eq!(
        outer["manifests"],
        json!([{
            "mediaType": media_type::OCI_INDEX,
            "digest": top.digest.to_string(),
            "size": top.size,
            "annotations": {annotation::REF_NAME: "demo"},
        }])
    );
}

#[test]
fn an_artifact_manifest_refers_to_its_subject_with_the_empty_config() {
    let subject = stored("image manifest");
    let empty = StoredBlob {
        digest: Sha256Digest::of(EMPTY_JSON),
        size: EMPTY_JSON.len() as u64,
    };
    let envelope = stored("envelope");
    let artifact = Artifact {
        artifact_type: media_type::DSSE_ENVELOPE.into(),
        blob: envelope,
        annotations: BTreeMap::from([(
            annotation::PREDICATE_TYPE.to_string(),
            "https://slsa.dev/provenance/v1".to_string(),
        )]),
    };
    let m = artifact_manifest(&artifact, &subject, &empty).unwrap();
    let bytes = canonical_json(&m);
    assert_canonical(&bytes);
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["mediaType"], media_type::OCI_MANIFEST);
    assert_eq!(v["artifactType"], media_type::DSSE_ENVELOPE);
    assert_eq!(
        v["subject"],
        json!({
            "mediaType": media_type::OCI_MANIFEST,
            "digest": subject.digest.to_string(),
            "size": subject.size,
        })
    );
    assert_eq!(
        v["config"],
        json!({
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            "size": 2,
        })
    );
    assert_eq!(
        v["layers"],
        json!([{
            "mediaType": media_type::DSSE_ENVELOPE,
            "digest": envelope.digest.to_string(),
            "size": envelope.size,
        }])
    );
    assert_eq!(
        v["annotations"],
        json!({annotation::PREDICATE_TYPE: "https://slsa.dev/provenance/v1"})
    );
}

/// The same recipe with its maps written in the opposite order.
fn recipe_reordered() -> Recipe {
    recipe_from(
        "cairn: 1
name: demo
platform: linux/arm64/v8
layers:
  - name: one
    contents:
      - dir: /tmp
config:
  stop_signal: SIGTERM
  volumes: [/data]
  exposed_ports: [8080/tcp]
  labels: { a.label: one, b.label: two }
  user: \"1000:1000\"
  workdir: /srv
  env: { LANG: C.UTF-8, PATH: /usr/bin:/bin }
  cmd: [--serve]
  entrypoint: [/usr/bin/app]
annotations: { org.opencontainers.image.source: demo.yaml }
",
    )
}

#[test]
fn equal_input_gives_equal_canonical_bytes_whatever_the_map_order() {
    // Many labels, so two HashMaps almost surely iterate them in different orders.
    let labels = |reverse: bool| {
        let mut entries: Vec<String> = (0..40).map(|i| format!(r#""l{i:02}": "v{i}""#)).collect();
        if reverse {
            entries.reverse();
        }
        format!("{{{}}}", entries.join(", "))
    };
    let layers = [
        layer("one", Compression::Gzip),
        layer("two", Compression::Zstd),
    ];
    let build = |recipe: &Recipe, base: &BaseImage| {
        let config = image_config(
            recipe,
            &recipe.platform,
            Some(base),
            &layers,
            ids(recipe),
            EPOCH,
        )
        .unwrap();
        let config_bytes = canonical_json(&config);
        let config_blob = StoredBlob {
            digest: Sha256Digest::of(&config_bytes),
            size: config_bytes.len() as u64,
        };
        let manifest_bytes =
            canonical_json(&manifest(recipe, &config_blob, Some(base), &layers).unwrap());
        (config_bytes, manifest_bytes)
    };
    let (config_a, manifest_a) = build(&recipe(), &base_with_labels(&labels(false)));
    let (config_b, manifest_b) = build(&recipe_reordered(), &base_with_labels(&labels(true)));
    assert_canonical(&config_a);
    assert_canonical(&manifest_a);
    assert_eq!(
        String::from_utf8(config_a.clone()).unwrap(),
        String::from_utf8(config_b).unwrap()
    );
    assert_eq!(
        String::from_utf8(manifest_a.clone()).unwrap(),
        String::from_utf8(manifest_b).unwrap()
    );
    // And the same input built again gives the same bytes.
    let again = build(&recipe(), &base_with_labels(&labels(false)));
    assert_eq!((config_a, manifest_a), again);
}
