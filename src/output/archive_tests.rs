//! Unit tests of the single-file outputs, on a small layout written through
//! [`LayoutWriter`]: an `oci-archive` is a canonical tar of the whole layout (same bytes
//! every time), a `docker-archive` is what `docker load` reads, and a `--format` cairn
//! does not know is refused with the names it does.

use super::*;
use crate::oci::layout::LayoutWriter;
use crate::oci::media_type;
use serde_json::{json, Value};

const EPOCH: u64 = 1_700_000_000;

#[test]
fn formats_parse_by_their_cli_names() {
    assert_eq!("oci".parse(), Ok(OutputFormat::Oci));
    assert_eq!("oci-archive".parse(), Ok(OutputFormat::OciArchive));
    assert_eq!("docker-archive".parse(), Ok(OutputFormat::DockerArchive));
    assert!("tar"
        .parse::<OutputFormat>()
        .unwrap_err()
        .to_string()
        .contains("oci-archive"));
}

#[test]
fn an_unknown_format_is_refused_with_the_list_of_formats() {
    let err = "zip".parse::<OutputFormat>().unwrap_err();
    assert_eq!(err, UnknownFormat("zip".into()));
    assert_eq!(
        err.to_string(),
        "unknown format `zip`: expected oci, oci-archive or docker-archive"
    );
    // The names the report prints are the names the flag accepts.
    for format in [
        OutputFormat::Oci,
        OutputFormat::OciArchive,
        OutputFormat::DockerArchive,
    ] {
        let name = serde_json::to_value(format).unwrap();
        assert_eq!(name.as_str().unwrap().parse(), Ok(format));
    }
}

#[test]
fn a_corrupt_blob_fails_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = blobs_dir(dir.path());
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(Sha256Digest::of(b"good").hex()), b"evil").unwrap();
    std::fs::write(dir.path().join("index.json"), b"{}").unwrap();
    std::fs::write(dir.path().join("oci-layout"), b"{}").unwrap();
    let err = write_oci_archive(dir.path(), 0, io::sink()).unwrap_err();
    assert!(matches!(err, ArchiveError::Digest { .. }), "{err}");
}

/// An uncompressed layer tar holding one file.
fn layer_tar(path: &str, content: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(content.len() as u64);
    builder.append_data(&mut h, path, content).unwrap();
    builder.into_inner().unwrap()
}

/// A small image in a published layout: a gzip and a zstd layer, a config, a manifest.
struct Fixture {
    _dir: tempfile::TempDir,
    layout: PathBuf,
    config: Vec<u8>,
    /// (blob digest, media type, diff_id, uncompressed tar), in image order.
    layers: Vec<(Sha256Digest, &'static str, Sha256Digest, Vec<u8>)>,
    /// The archive's names (`demo:latest`).
    tags: Vec<DockerTag>,
}

impl Fixture {
    fn docker_image(&self) -> DockerImage<'_> {
        DockerImage {
            tags: &self.tags,
            config: Sha256Digest::of(&self.config),
            layers: self
                .layers
                .iter()
                .map(|(digest, media, diff_id, _)| (*digest, media.to_string(), *diff_id))
                .collect(),
        }
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let writer = LayoutWriter::begin(dir.path(), "demo").unwrap();
    let motd = layer_tar("etc/motd", b"hello\n");
    let app = layer_tar("usr/bin/app", b"#!/bin/sh\necho app\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&motd).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(app.as_slice(), 3).unwrap();
    let gz_blob = writer.put_blob(&gz).unwrap();
    let zst_blob = writer.put_blob(&zst).unwrap();
    let layers = vec![
        (
            gz_blob.digest,
            media_type::OCI_LAYER_GZIP,
            Sha256Digest::of(&motd),
            motd,
        ),
        (
            zst_blob.digest,
            media_type::OCI_LAYER_ZSTD,
            Sha256Digest::of(&app),
            app,
        ),
    ];
    let config = crate::oci::json::canonical_json(&json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.2.to_string()).collect::<Vec<_>>(),
        },
    }));
    let config_blob = writer.put_blob(&config).unwrap();
    let manifest = crate::oci::json::canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {
            "mediaType": media_type::OCI_CONFIG,
            "digest": config_blob.digest.to_string(),
            "size": config_blob.size,
        },
        "layers": [
            {"mediaType": media_type::OCI_LAYER_GZIP, "digest": gz_blob.digest.to_string(), "size": gz_blob.size},
            {"mediaType": media_type::OCI_LAYER_ZSTD, "digest": zst_blob.digest.to_string(), "size": zst_blob.size},
        ],
    }));
    let manifest_blob = writer.put_blob(&manifest).unwrap();
    let index = crate::oci::json::canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [{
            "mediaType": media_type::OCI_MANIFEST,
            "digest": manifest_blob.digest.to_string(),
            "size": manifest_blob.size,
        }],
    }));
    let layout = writer.publish(&index, &[], &[]).unwrap();
    Fixture {
        _dir: dir,
        layout,
        config,
        layers,
        tags: vec!["demo".parse().unwrap()],
    }
}

/// One member of an archive: its name as stored, header fields and bytes.
struct Member {
    name: String,
    kind: tar::EntryType,
    mode: u32,
    mtime: u64,
    uid: u64,
    gid: u64,
    owner_names_empty: bool,
    bytes: Vec<u8>,
}

fn members(archive: &[u8]) -> Vec<Member> {
    let mut out = Vec::new();
    for entry in tar::Archive::new(archive).entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.push(Member {
            name: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            mtime: h.mtime().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            owner_names_empty: h.username_bytes().unwrap_or_default().is_empty()
                && h.groupname_bytes().unwrap_or_default().is_empty(),
            bytes,
        });
    }
    out
}

fn member<'m>(members: &'m [Member], name: &str) -> &'m Member {
    members
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no member `{name}`"))
}

fn assert_canonical_headers(members: &[Member]) {
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "members not in byte-wise order, or repeated");
    for m in members {
        assert_eq!(m.mtime, EPOCH, "{}: mtime", m.name);
        assert_eq!((m.uid, m.gid), (0, 0), "{}: owner", m.name);
        assert!(m.owner_names_empty, "{}: owner names", m.name);
        let mode = if m.kind == tar::EntryType::Directory {
            0o755
        } else {
            assert_eq!(m.kind, tar::EntryType::Regular, "{}", m.name);
            0o644
        };
        assert_eq!(m.mode, mode, "{}: mode", m.name);
    }
}

#[test]
fn an_oci_archive_is_the_whole_layout_as_a_canonical_tar() {
    let fx = fixture();
    let mut archive = Vec::new();
    write_oci_archive(&fx.layout, EPOCH, &mut archive).unwrap();
    let members = members(&archive);
    assert_canonical_headers(&members);

    let mut want: Vec<String> = BLOB_DIR_MEMBERS.iter().map(|d| d.to_string()).collect();
    let mut blobs: Vec<Sha256Digest> = std::fs::read_dir(blobs_dir(&fx.layout))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    blobs.sort();
    assert_eq!(blobs.len(), 4, "two layers, the config and the manifest");
    want.extend(blobs.iter().map(blob_member));
    want.extend(["index.json".to_string(), "oci-layout".to_string()]);
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, want);

    for digest in &blobs {
        let m = member(&members, &blob_member(digest));
        assert_eq!(Sha256Digest::of(&m.bytes), *digest);
    }
    for small in ["index.json", "oci-layout"] {
        assert_eq!(
            member(&members, small).bytes,
            std::fs::read(fx.layout.join(small)).unwrap(),
            "{small}"
        );
    }
    let layout: Value = serde_json::from_slice(&member(&members, "oci-layout").bytes).unwrap();
    assert_eq!(layout, json!({"imageLayoutVersion": "1.0.0"}));
}

#[test]
fn an_oci_archive_has_the_same_bytes_every_time() {
    let (a, b) = (fixture(), fixture());
    let archive = |fx: &Fixture, epoch| {
        let mut out = Vec::new();
        write_oci_archive(&fx.layout, epoch, &mut out).unwrap();
        out
    };
    let first = archive(&a, EPOCH);
    assert!(first == archive(&a, EPOCH), "the same layout twice");
    assert!(
        first == archive(&b, EPOCH),
        "an equal layout in another place"
    );
    assert!(
        first != archive(&a, EPOCH + 1),
        "the epoch is in the headers"
    );
}

#[test]
fn a_docker_archive_is_what_docker_load_reads() {
    let fx = fixture();
    let image = fx.docker_image();
    let mut archive = Vec::new();
    write_docker_archive(&fx.layout, &image, EPOCH, &mut archive).unwrap();
    let members = members(&archive);
    assert_canonical_headers(&members);

    let config_name = format!("{}.json", image.config.hex());
    let layer_names: Vec<String> = fx
        .layers
        .iter()
        .map(|l| format!("{}.tar", l.2.hex()))
        .collect();
    let manifest: Value = serde_json::from_slice(&member(&members, "manifest.json").bytes).unwrap();
    assert_eq!(
        manifest,
        json!([{
            "Config": config_name,
            "RepoTags": ["demo:latest"],
            "Layers": layer_names,
        }])
    );
    assert_eq!(member(&members, &config_name).bytes, fx.config);
    for ((_, _, diff_id, tar_bytes), name) in fx.layers.iter().zip(&layer_names) {
        // Docker checks each layer file against the config's diff_ids: uncompressed.
        let m = member(&members, name);
        assert_eq!(Sha256Digest::of(&m.bytes), *diff_id, "{name}");
        assert_eq!(&m.bytes, tar_bytes, "{name}");
    }
    let motd = &member(&members, &layer_names[0]).bytes;
    let mut inner = tar::Archive::new(motd.as_slice());
    let mut entry = inner.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(&*entry.path_bytes(), b"etc/motd");
    let mut text = String::new();
    entry.read_to_string(&mut text).unwrap();
    assert_eq!(text, "hello\n");

    // `repositories` names the top layer by its chain id.
    let (first, second) = (fx.layers[0].2, fx.layers[1].2);
    let chain = Sha256Digest::of(format!("{first} {second}").as_bytes());
    let repositories: Value =
        serde_json::from_slice(&member(&members, "repositories").bytes).unwrap();
    assert_eq!(repositories, json!({"demo": {"latest": chain.hex()}}));

    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    let mut want: Vec<&str> = vec![config_name.as_str(), "manifest.json", "repositories"];
    want.extend(layer_names.iter().map(String::as_str));
    want.sort();
    assert_eq!(names, want, "nothing else in the archive");

    let mut again = Vec::new();
    write_docker_archive(&fx.layout, &image, EPOCH, &mut again).unwrap();
    assert!(archive == again, "the same bytes every time");
}

#[test]
fn a_docker_archive_carries_every_tag_asked_for() {
    let mut fx = fixture();
    fx.tags = [
        "team/demo:v1",
        "demo:v1",
        "registry.example:5000/demo",
        "team/demo:v2",
    ]
    .iter()
    .map(|t| t.parse().unwrap())
    .collect();
    let mut archive = Vec::new();
    write_docker_archive(&fx.layout, &fx.docker_image(), EPOCH, &mut archive).unwrap();
    let members = members(&archive);
    let manifest: Value = serde_json::from_slice(&member(&members, "manifest.json").bytes).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        json!([
            "team/demo:v1",
            "demo:v1",
            "registry.example:5000/demo:latest",
            "team/demo:v2"
        ])
    );
    let repositories: Value =
        serde_json::from_slice(&member(&members, "repositories").bytes).unwrap();
    let names: Vec<&String> = repositories.as_object().unwrap().keys().collect();
    assert_eq!(names, ["demo", "registry.example:5000/demo", "team/demo"]);
    assert_eq!(
        repositories["team/demo"].as_object().unwrap().len(),
        2,
        "{repositories}"
    );
}

#[test]
fn a_docker_tag_is_a_docker_reference_without_digest() {
    for bad in [
        "Demo:v1",
        "demo:",
        "demo:-v1",
        "",
        "demo@sha256:".to_string().as_str(),
    ] {
        let e = bad.parse::<DockerTag>().unwrap_err();
        assert!(e.to_string().contains("NAME[:TAG]"), "{bad}: {e}");
    }
    let digest = format!("demo@sha256:{}", "0".repeat(64));
    let e = digest.parse::<DockerTag>().unwrap_err();
    assert!(e.to_string().contains("by tag, not digest"), "{e}");
}

#[test]
fn a_docker_archive_refuses_a_layer_that_does_not_match_its_diff_id() {
    let fx = fixture();
    let mut image = fx.docker_image();
    image.layers[1].2 = Sha256Digest::of(b"another tar");
    let err = write_docker_archive(&fx.layout, &image, EPOCH, io::sink()).unwrap_err();
    match err {
        ArchiveError::Digest {
            expected, actual, ..
        } => {
            assert_eq!(expected, Sha256Digest::of(b"another tar"));
            assert_eq!(actual, fx.layers[1].2);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn a_docker_archive_refuses_a_layer_media_type_docker_cannot_hold() {
    let fx = fixture();
    let mut image = fx.docker_image();
    image.layers[0].1 = "application/vnd.example.layer".into();
    let err = write_docker_archive(&fx.layout, &image, EPOCH, io::sink()).unwrap_err();
    assert!(matches!(err, ArchiveError::Unsupported(_)), "{err}");
    assert!(
        err.to_string()
            .contains("`application/vnd.example.layer`, which a docker-archive cannot hold"),
        "{err}"
    );
}
