//! Unit tests of base image selection and layer copying over an in-memory
//! [`BaseStore`]: the platform's manifest is chosen from an index, every manifest,
//! config and layer is checked against its digest, and layers reach the output
//! byte for byte with their file system read.

use super::*;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Manifests and blobs by digest; `tag` is what [`BaseStore::resolve`] answers.
#[derive(Default)]
struct MemoryStore {
    manifests: BTreeMap<Sha256Digest, Vec<u8>>,
    blobs: BTreeMap<Sha256Digest, Vec<u8>>,
}

impl MemoryStore {
    fn add_manifest(&mut self, json: serde_json::Value) -> Sha256Digest {
        let bytes = serde_json::to_vec(&json).unwrap();
        let digest = Sha256Digest::of(&bytes);
        self.manifests.insert(digest, bytes);
        digest
    }

    fn add_blob(&mut self, bytes: Vec<u8>) -> Sha256Digest {
        let digest = Sha256Digest::of(&bytes);
        self.blobs.insert(digest, bytes);
        digest
    }
}

impl BaseStore for MemoryStore {
    fn resolve(&self) -> Result<Sha256Digest, BaseError> {
        Err(BaseError::Invalid("no tag in a memory store".into()))
    }

    fn manifest(&self, digest: &Sha256Digest) -> Result<Vec<u8>, BaseError> {
        self.manifests
            .get(digest)
            .cloned()
            .ok_or(BaseError::Missing {
                what: "manifest",
                digest: *digest,
            })
    }

    fn blob(&self, digest: &Sha256Digest) -> Result<Box<dyn Read + '_>, BaseError> {
        match self.blobs.get(digest) {
            Some(bytes) => Ok(Box::new(bytes.as_slice())),
            None => Err(BaseError::Missing {
                what: "blob",
                digest: *digest,
            }),
        }
    }
}

fn platform(text: &str) -> Platform {
    let mut parts = text.split('/');
    Platform {
        os: parts.next().unwrap().into(),
        architecture: parts.next().unwrap().into(),
        variant: parts.next().map(str::to_string),
    }
}

/// A gzip tar layer holding `etc/os-release` with `content`; and its diff_id.
fn layer(content: &[u8]) -> (Vec<u8>, Sha256Digest) {
    let header = |kind, mode, size| {
        let mut header = ::tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header
    };
    let mut tar = ::tar::Builder::new(Vec::new());
    let mut dir = header(::tar::EntryType::Directory, 0o755, 0);
    tar.append_data(&mut dir, "etc/", &b""[..]).unwrap();
    let mut file = header(::tar::EntryType::Regular, 0o644, content.len() as u64);
    tar.append_data(&mut file, "etc/os-release", content)
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let diff_id = Sha256Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Adds an image for `platform_text` with one layer holding `content`; returns the
/// manifest's digest and size.
fn add_image(store: &mut MemoryStore, platform_text: &str, content: &[u8]) -> (Sha256Digest, u64) {
    let p = platform(platform_text);
    let (blob, diff_id) = layer(content);
    let size = blob.len();
    let layer_digest = store.add_blob(blob);
    let mut config = serde_json::json!({
        "architecture": p.architecture,
        "os": p.os,
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    });
    if let Some(v) = &p.variant {
        config["variant"] = v.clone().into();
    }
    let config = serde_json::to_vec(&config).unwrap();
    let config_size = config.len();
    let config_digest = store.add_blob(config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::media_type::OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config_size,
        },
        "layers": [{"mediaType": LAYER_GZIP, "digest": layer_digest.to_string(), "size": size}],
    });
    let size = serde_json::to_vec(&manifest).unwrap().len() as u64;
    (store.add_manifest(manifest), size)
}

/// An index of one image per platform in `platforms`.
fn add_index(store: &mut MemoryStore, platforms: &[&str]) -> Sha256Digest {
    let manifests: Vec<serde_json::Value> = platforms
        .iter()
        .map(|text| {
            let (digest, size) = add_image(store, text, text.as_bytes());
            let p = platform(text);
            let mut platform = serde_json::json!({"os": p.os, "architecture": p.architecture});
            if let Some(v) = &p.variant {
                platform["variant"] = v.clone().into();
            }
            serde_json::json!({
                "mediaType": crate::oci::media_type::OCI_MANIFEST,
                "digest": digest.to_string(),
                "size": size,
                "platform": platform,
            })
        })
        .collect();
    store.add_manifest(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::media_type::OCI_INDEX,
        "manifests": manifests,
    }))
}

#[test]
fn the_index_entry_for_the_platform_is_chosen() {
    let mut store = MemoryStore::default();
    let index = add_index(
        &mut store,
        &["linux/amd64", "linux/arm64/v8", "linux/arm/v7"],
    );
    for (asked, config_arch) in [
        ("linux/amd64", "amd64"),
        ("linux/arm/v7", "arm"),
        // No variant in the recipe: the one arm64 manifest, whatever its variant.
        ("linux/arm64", "arm64"),
    ] {
        let base = select(&store, "layout:base", index, &platform(asked)).unwrap();
        assert_eq!(base.pinned, index);
        assert_ne!(base.manifest_digest, index);
        assert_eq!(base.config.architecture().to_string(), config_arch);
        assert_eq!(base.layers.len(), 1);
        assert_eq!(base.reference, "layout:base");
    }
}

#[test]
fn a_platform_the_index_lacks_names_those_it_has() {
    let mut store = MemoryStore::default();
    let index = add_index(&mut store, &["linux/arm/v6", "linux/arm/v7", "linux/amd64"]);
    let missing = select(&store, "layout:base", index, &platform("linux/s390x")).unwrap_err();
    let ambiguous = select(&store, "layout:base", index, &platform("linux/arm")).unwrap_err();
    for err in [missing, ambiguous] {
        match err {
            BaseError::NoPlatform { available, .. } => {
                assert_eq!(available, "linux/amd64, linux/arm/v6, linux/arm/v7")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_manifest_pinned_directly_must_be_for_the_platform() {
    let mut store = MemoryStore::default();
    let (manifest, _) = add_image(&mut store, "linux/arm64", b"arm");
    let base = select(&store, "layout:base", manifest, &platform("linux/arm64")).unwrap();
    assert_eq!(base.manifest_digest, manifest);
    let err = select(&store, "layout:base", manifest, &platform("linux/amd64")).unwrap_err();
    assert!(matches!(err, BaseError::NoPlatform { .. }), "{err:?}");
}

#[test]
fn a_manifest_or_config_other_than_its_digest_is_refused() {
    let mut store = MemoryStore::default();
    let (manifest, _) = add_image(&mut store, "linux/amd64", b"x");
    let good = store.manifests[&manifest].clone();
    let mut tampered = good.clone();
    tampered.push(b' ');
    store.manifests.insert(manifest, tampered);
    let err = select(&store, "layout:base", manifest, &platform("linux/amd64")).unwrap_err();
    assert!(
        matches!(&err, BaseError::DigestMismatch { what, .. } if what == "manifest"),
        "{err:?}"
    );

    store.manifests.insert(manifest, good);
    let base = select(&store, "layout:base", manifest, &platform("linux/amd64")).unwrap();
    let config_digest: Sha256Digest = {
        let m: serde_json::Value = serde_json::from_slice(&store.manifests[&manifest]).unwrap();
        m["config"]["digest"].as_str().unwrap().parse().unwrap()
    };
    store.blobs.get_mut(&config_digest).unwrap().push(b' ');
    let err = select(&store, "layout:base", manifest, &platform("linux/amd64")).unwrap_err();
    assert!(
        matches!(&err, BaseError::DigestMismatch { what, .. } if what == "config"),
        "{err:?}"
    );
    assert_eq!(base.layers[0].media_type, LAYER_GZIP);
}

#[test]
fn layers_are_copied_unchanged_and_their_files_read() {
    let mut store = MemoryStore::default();
    let (manifest, _) = add_image(&mut store, "linux/amd64", b"ID=test\n");
    let base = select(&store, "layout:base", manifest, &platform("linux/amd64")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let layout = LayoutWriter::begin(out.path(), "img").unwrap();
    let fs = copy_layers(
        &store,
        &base,
        &layout,
        Limits::DEFAULT,
        &AtomicBool::new(false),
    )
    .unwrap();

    let layer = &base.layers[0];
    assert_eq!(
        std::fs::read(layout.blob_path(&layer.digest)).unwrap(),
        store.blobs[&layer.digest]
    );
    assert_eq!(
        fs.entries["etc/os-release"].kind,
        BaseKind::File {
            sha256: Sha256Digest::of(b"ID=test\n"),
            size: 8
        }
    );
    assert_eq!(fs.entries["etc"].kind, BaseKind::Dir);
    assert!(fs.sha1.contains_key(&Sha256Digest::of(b"ID=test\n")));
}

#[test]
fn a_layer_with_another_diff_id_or_digest_is_refused() {
    let mut store = MemoryStore::default();
    let (manifest, _) = add_image(&mut store, "linux/amd64", b"ID=test\n");
    let base = select(&store, "layout:base", manifest, &platform("linux/amd64")).unwrap();
    let out = tempfile::tempdir().unwrap();

    let mut wrong_diff_id = base.clone();
    wrong_diff_id.layers[0].diff_id = Sha256Digest::of(b"another tar");
    let layout = LayoutWriter::begin(out.path(), "a").unwrap();
    let err = copy_layers(
        &store,
        &wrong_diff_id,
        &layout,
        Limits::DEFAULT,
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        matches!(&err, BaseError::DigestMismatch { what, .. } if what.contains("diff_id")),
        "{err:?}"
    );

    let digest = base.layers[0].digest;
    let damaged = store.blobs.get_mut(&digest).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    let layout = LayoutWriter::begin(out.path(), "b").unwrap();
    let err = copy_layers(
        &store,
        &base,
        &layout,
        Limits::DEFAULT,
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(
        matches!(&err, BaseError::DigestMismatch { expected, .. } if *expected == digest),
        "{err:?}"
    );
    // Read without copying, the same checks hold.
    let err = read_fs(&store, &base, Limits::DEFAULT).unwrap_err();
    assert!(
        matches!(&err, BaseError::DigestMismatch { expected, .. } if *expected == digest),
        "{err:?}"
    );
}

#[test]
fn reading_the_file_system_alone_gives_what_copying_gives() {
    let mut store = MemoryStore::default();
    let (manifest, _) = add_image(&mut store, "linux/amd64", b"ID=test\n");
    let base = select(&store, "layout:base", manifest, &platform("linux/amd64")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let layout = LayoutWriter::begin(out.path(), "img").unwrap();
    let copied = copy_layers(
        &store,
        &base,
        &layout,
        Limits::DEFAULT,
        &AtomicBool::new(false),
    )
    .unwrap();
    let read = read_fs(&store, &base, Limits::DEFAULT).unwrap();
    assert_eq!(read.entries, copied.entries);
    assert_eq!(read.kept_files, copied.kept_files);
}

#[test]
fn a_cancelled_copy_stops_before_the_next_layer() {
    let mut store = MemoryStore::default();
    let (manifest, _) = add_image(&mut store, "linux/amd64", b"x");
    let base = select(&store, "layout:base", manifest, &platform("linux/amd64")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let layout = LayoutWriter::begin(out.path(), "img").unwrap();
    let err = copy_layers(
        &store,
        &base,
        &layout,
        Limits::DEFAULT,
        &AtomicBool::new(true),
    )
    .unwrap_err();
    assert!(matches!(err, BaseError::Interrupted(_)), "{err:?}");
    assert!(!layout.blob_path(&base.layers[0].digest).exists());
}

#[test]
fn base_layers_count_against_the_limits_and_a_raised_limit_lets_them_through() {
    let mut store = MemoryStore::default();
    let (manifest, _) = add_image(&mut store, "linux/amd64", b"ID=test\n");
    let base = select(&store, "layout:base", manifest, &platform("linux/amd64")).unwrap();
    let out = tempfile::tempdir().unwrap();
    // The layer holds two entries: `etc` and `etc/os-release`.
    let one = Limits {
        entries: 1,
        ..Limits::DEFAULT
    };
    let layout = LayoutWriter::begin(out.path(), "a").unwrap();
    let err = copy_layers(&store, &base, &layout, one, &AtomicBool::new(false)).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("(base:0)")
            && message.contains("more than 1 entries")
            && message.contains("`etc/os-release`"),
        "{message}"
    );
    assert!(err.hint().unwrap().contains("limits: { entries:"));
    let two = Limits {
        entries: 2,
        ..Limits::DEFAULT
    };
    let layout = LayoutWriter::begin(out.path(), "b").unwrap();
    copy_layers(&store, &base, &layout, two, &AtomicBool::new(false)).unwrap();
}
