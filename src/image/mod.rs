//! Stage 4: image. Turns the written layers and the recipe's config into the OCI
//! image config, manifest and index (image-spec 1.1), each serialised as canonical
//! JSON: compact, object keys sorted, so the same inputs give the same bytes.

use crate::layers::LayerBlob;
use crate::output::StoredBlob;
use crate::recipe::Recipe;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType,
    Os, PlatformBuilder, RootFsBuilder,
};
use std::collections::{BTreeMap, HashMap};

/// Bumped whenever cairn changes the bytes it writes for the same recipe and inputs;
/// recorded in every manifest so such a change is always deliberate and visible.
pub const OUTPUT_FORMAT_VERSION: &str = "1";
pub const OUTPUT_FORMAT_ANNOTATION: &str = "dev.cairn.output-format";
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

#[derive(Debug, thiserror::Error)]
#[error("cannot build the OCI {what}: {source}")]
pub struct ImageError {
    what: &'static str,
    source: oci_spec::OciSpecError,
}

fn spec_err(what: &'static str) -> impl FnOnce(oci_spec::OciSpecError) -> ImageError {
    move |source| ImageError { what, source }
}

/// Serialises any value as canonical JSON (compact, keys sorted). Goes through
/// `serde_json::Value`, whose maps are sorted: oci-spec's `HashMap` fields would
/// otherwise serialise in a different order on every run.
pub fn canonical_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("OCI types serialise to JSON");
    serde_json::to_vec(&value).expect("a JSON value serialises")
}

/// `1700000000` -> `2023-11-14T22:13:20Z`.
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn to_hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn oci_digest(d: &crate::digest::Sha256Digest) -> oci_spec::image::Digest {
    d.to_string()
        .parse()
        .expect("a sha256 digest is a valid OCI digest")
}

/// The image config (`application/vnd.oci.image.config.v1+json`).
pub fn image_config(
    recipe: &Recipe,
    layers: &[LayerBlob],
    epoch: u64,
) -> Result<ImageConfiguration, ImageError> {
    let spec = &recipe.config;
    let created = rfc3339(epoch);
    let mut config = ConfigBuilder::default();
    if let Some(v) = &spec.entrypoint {
        config = config.entrypoint(v.clone());
    }
    if let Some(v) = &spec.cmd {
        config = config.cmd(v.clone());
    }
    if !spec.env.is_empty() {
        config = config.env(
            spec.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        );
    }
    if let Some(v) = &spec.workdir {
        config = config.working_dir(v.clone());
    }
    if let Some(v) = &spec.user {
        config = config.user(v.clone());
    }
    if !spec.labels.is_empty() {
        config = config.labels(to_hash_map(&spec.labels));
    }
    if !spec.exposed_ports.is_empty() {
        config = config.exposed_ports(spec.exposed_ports.clone());
    }
    if !spec.volumes.is_empty() {
        config = config.volumes(spec.volumes.clone());
    }
    if let Some(v) = &spec.stop_signal {
        config = config.stop_signal(v.clone());
    }
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(
            layers
                .iter()
                .map(|l| l.diff_id.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(spec_err("rootfs"))?;
    let history = layers
        .iter()
        .map(|l| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!("cairn: layer {}", l.name))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(spec_err("history"))?;
    let mut builder = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::from(recipe.platform.architecture.as_str()))
        .os(Os::from(recipe.platform.os.as_str()))
        .config(config.build().map_err(spec_err("config"))?)
        .rootfs(rootfs)
        .history(history);
    if let Some(v) = &recipe.platform.variant {
        builder = builder.variant(v.clone());
    }
    builder.build().map_err(spec_err("image config"))
}

fn descriptor(media_type: MediaType, blob: &StoredBlob) -> Result<Descriptor, ImageError> {
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(oci_digest(&blob.digest))
        .size(blob.size)
        .build()
        .map_err(spec_err("descriptor"))
}

/// The image manifest, pointing at the stored config and layer blobs.
pub fn manifest(
    recipe: &Recipe,
    config: &StoredBlob,
    layers: &[LayerBlob],
) -> Result<ImageManifest, ImageError> {
    let layer_descriptors = layers
        .iter()
        .map(|l| {
            descriptor(
                MediaType::Other(l.media_type().to_string()),
                &StoredBlob {
                    digest: l.digest,
                    size: l.size,
                },
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut annotations = recipe.annotations.clone();
    annotations.insert(
        OUTPUT_FORMAT_ANNOTATION.into(),
        OUTPUT_FORMAT_VERSION.into(),
    );
    ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(MediaType::ImageConfig, config)?)
        .layers(layer_descriptors)
        .annotations(to_hash_map(&annotations))
        .build()
        .map_err(spec_err("manifest"))
}

/// The empty JSON blob (`{}`) that image-spec 1.1 artifacts use as their config.
pub const EMPTY_JSON: &[u8] = b"{}";

/// An artifact attached to the image: a manifest whose `subject` is the image
/// manifest (image-spec 1.1 referrers), with one blob.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub artifact_type: String,
    pub blob: StoredBlob,
    pub annotations: BTreeMap<String, String>,
}

/// The manifest of `artifact`, referring to `subject` (the image manifest).
pub fn artifact_manifest(
    artifact: &Artifact,
    subject: &StoredBlob,
    empty_config: &StoredBlob,
) -> Result<ImageManifest, ImageError> {
    let mut builder = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(artifact.artifact_type.clone()))
        .config(descriptor(MediaType::EmptyJSON, empty_config)?)
        .layers(vec![descriptor(
            MediaType::Other(artifact.artifact_type.clone()),
            &artifact.blob,
        )?])
        .subject(descriptor(MediaType::ImageManifest, subject)?);
    if !artifact.annotations.is_empty() {
        builder = builder.annotations(to_hash_map(&artifact.annotations));
    }
    builder.build().map_err(spec_err("artifact manifest"))
}

/// `index.json`: the image manifest, tagged with the recipe's name and platform, then
/// the manifests of its artifacts (untagged; found through their `subject`).
pub fn index(
    recipe: &Recipe,
    manifest: &StoredBlob,
    artifacts: &[(String, StoredBlob)],
) -> Result<Vec<u8>, ImageError> {
    let mut platform = PlatformBuilder::default()
        .architecture(Arch::from(recipe.platform.architecture.as_str()))
        .os(Os::from(recipe.platform.os.as_str()));
    if let Some(v) = &recipe.platform.variant {
        platform = platform.variant(v.clone());
    }
    let mut desc = descriptor(MediaType::ImageManifest, manifest)?;
    desc.set_platform(Some(platform.build().map_err(spec_err("platform"))?));
    desc.set_annotations(Some(HashMap::from([(
        REF_NAME_ANNOTATION.to_string(),
        recipe.name.clone(),
    )])));
    let mut manifests = vec![desc];
    for (artifact_type, blob) in artifacts {
        let mut d = descriptor(MediaType::ImageManifest, blob)?;
        d.set_artifact_type(Some(MediaType::Other(artifact_type.clone())));
        manifests.push(d);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(spec_err("index"))?;
    Ok(canonical_json(&index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn canonical_json_sorts_hash_map_keys() {
        let map: HashMap<String, u32> = (0..50).map(|i| (format!("k{i:02}"), i)).collect();
        let text = String::from_utf8(canonical_json(&map)).unwrap();
        let expected: Vec<String> = (0..50).map(|i| format!("\"k{i:02}\":{i}")).collect();
        assert_eq!(text, format!("{{{}}}", expected.join(",")));
    }
}
