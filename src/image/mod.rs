//! Stage 4: image. Turns the written layers and the recipe's config into the OCI
//! image config, manifest and index (image-spec 1.1), each serialised as canonical
//! JSON: compact, object keys sorted, so the same inputs give the same bytes.

use crate::base::BaseImage;
use crate::layers::LayerBlob;
use crate::oci::annotation;
use crate::oci::json::canonical_json;
use crate::oci::layout::StoredBlob;
use crate::oci::media_type;
use crate::oci::time::rfc3339;
use crate::oci::OUTPUT_FORMAT_VERSION;
use crate::recipe::{Platform, Recipe};
use oci_spec::image::{
    Arch, Descriptor, DescriptorBuilder, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType,
    Os, PlatformBuilder, RootFsBuilder,
};
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, thiserror::Error)]
#[error("cannot build the OCI {what}: {source}")]
pub struct ImageError {
    what: &'static str,
    source: oci_spec::OciSpecError,
}

fn spec_err(what: &'static str) -> impl FnOnce(oci_spec::OciSpecError) -> ImageError {
    move |source| ImageError { what, source }
}

fn to_hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn oci_digest(d: &crate::digest::Sha256Digest) -> oci_spec::image::Digest {
    d.to_string()
        .parse()
        .expect("a sha256 digest is a valid OCI digest")
}

/// The image config (`application/vnd.oci.image.config.v1+json`) for `platform`.
///
/// With a base image, the base's config is the starting point and the recipe's values
/// override it: `entrypoint`, `cmd`, `workdir`, `user` and `stop_signal` replace the
/// base's (setting `entrypoint` alone also clears the base's `cmd`, as a Dockerfile
/// `ENTRYPOINT` does); `env` and `labels` are merged key by key; ports and volumes are
/// added. The base's `diff_ids` and history come first. `user` is `config.user` in
/// numbers, resolved against the image's accounts ([`crate::layers::image_user`]).
pub fn image_config(
    recipe: &Recipe,
    platform: &Platform,
    base: Option<&BaseImage>,
    layers: &[LayerBlob],
    user: Option<&str>,
    epoch: u64,
) -> Result<ImageConfiguration, ImageError> {
    let spec = &recipe.config;
    let created = rfc3339(epoch);
    let inherited = base.and_then(|b| b.config.config().clone());
    let mut config = inherited.clone().unwrap_or_default();
    if let Some(v) = &spec.entrypoint {
        config.set_entrypoint(Some(v.clone()));
        if spec.cmd.is_none() {
            config.set_cmd(None);
        }
    }
    if let Some(v) = &spec.cmd {
        config.set_cmd(Some(v.clone()));
    }
    let mut env: Vec<String> = config.env().clone().unwrap_or_default();
    for (k, v) in &spec.env {
        let prefix = format!("{k}=");
        match env.iter_mut().find(|e| e.starts_with(&prefix) || *e == k) {
            Some(existing) => *existing = format!("{k}={v}"),
            None => env.push(format!("{k}={v}")),
        }
    }
    config.set_env((!env.is_empty()).then_some(env));
    if let Some(v) = &spec.workdir {
        config.set_working_dir(Some(v.clone()));
    }
    if let Some(v) = user {
        config.set_user(Some(v.to_string()));
    }
    let mut labels: BTreeMap<String, String> = config
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(spec.labels.clone());
    config.set_labels((!labels.is_empty()).then(|| to_hash_map(&labels)));
    let mut ports: Vec<String> = config.exposed_ports().clone().unwrap_or_default();
    ports.extend(spec.exposed_ports.iter().cloned());
    ports.sort();
    ports.dedup();
    config.set_exposed_ports((!ports.is_empty()).then_some(ports));
    let mut volumes: Vec<String> = config.volumes().clone().unwrap_or_default();
    volumes.extend(spec.volumes.iter().cloned());
    volumes.sort();
    volumes.dedup();
    config.set_volumes((!volumes.is_empty()).then_some(volumes));
    if let Some(v) = &spec.stop_signal {
        config.set_stop_signal(Some(v.clone()));
    }
    let diff_ids = base
        .into_iter()
        .flat_map(|b| b.layers.iter().map(|l| l.diff_id.to_string()))
        .chain(layers.iter().map(|l| l.diff_id.to_string()))
        .collect::<Vec<_>>();
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids)
        .build()
        .map_err(spec_err("rootfs"))?;
    let mut history = base
        .and_then(|b| b.config.history().clone())
        .unwrap_or_default();
    for l in layers {
        history.push(
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!("cairn: layer {}", l.name))
                .build()
                .map_err(spec_err("history"))?,
        );
    }
    let mut builder = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::from(platform.architecture.as_str()))
        .os(Os::from(platform.os.as_str()))
        .config(config)
        .rootfs(rootfs)
        .history(history);
    if let Some(v) = &platform.variant {
        builder = builder.variant(v.clone());
    }
    builder.build().map_err(spec_err("image config"))
}

/// Every layer of the image, base layers first: (digest, OCI media type, diff_id).
pub fn layer_list(
    base: Option<&BaseImage>,
    layers: &[LayerBlob],
) -> Vec<(StoredBlob, String, crate::digest::Sha256Digest)> {
    base.into_iter()
        .flat_map(|b| {
            b.layers.iter().map(|l| {
                (
                    StoredBlob {
                        digest: l.digest,
                        size: l.size,
                    },
                    media_type::oci_layer(&l.media_type).to_string(),
                    l.diff_id,
                )
            })
        })
        .chain(layers.iter().map(|l| {
            (
                StoredBlob {
                    digest: l.digest,
                    size: l.size,
                },
                l.media_type().to_string(),
                l.diff_id,
            )
        }))
        .collect()
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
    base: Option<&BaseImage>,
    layers: &[LayerBlob],
) -> Result<ImageManifest, ImageError> {
    let layer_descriptors = layer_list(base, layers)
        .iter()
        .map(|(blob, media_type, _)| descriptor(MediaType::Other(media_type.clone()), blob))
        .collect::<Result<Vec<_>, _>>()?;
    let mut annotations = recipe.annotations.clone();
    annotations.insert(
        annotation::OUTPUT_FORMAT.into(),
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

fn oci_platform(p: &Platform) -> Result<oci_spec::image::Platform, ImageError> {
    let mut platform = PlatformBuilder::default()
        .architecture(Arch::from(p.architecture.as_str()))
        .os(Os::from(p.os.as_str()));
    if let Some(v) = &p.variant {
        platform = platform.variant(v.clone());
    }
    platform.build().map_err(spec_err("platform"))
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
    let mut desc = descriptor(MediaType::ImageManifest, manifest)?;
    desc.set_platform(Some(oci_platform(&recipe.platform)?));
    layout_index(recipe, desc, artifacts)
}

/// The image index of a multi-platform build: one manifest per platform, in the
/// recipe's order, annotated like a manifest (the recipe's annotations and the output
/// format).
pub fn platform_index(
    recipe: &Recipe,
    manifests: &[(Platform, StoredBlob)],
) -> Result<Vec<u8>, ImageError> {
    let mut descriptors = Vec::with_capacity(manifests.len());
    for (platform, blob) in manifests {
        let mut d = descriptor(MediaType::ImageManifest, blob)?;
        d.set_platform(Some(oci_platform(platform)?));
        descriptors.push(d);
    }
    let mut annotations = recipe.annotations.clone();
    annotations.insert(
        annotation::OUTPUT_FORMAT.into(),
        OUTPUT_FORMAT_VERSION.into(),
    );
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(descriptors)
        .annotations(to_hash_map(&annotations))
        .build()
        .map_err(spec_err("image index"))?;
    Ok(canonical_json(&index))
}

/// `index.json` of a multi-platform layout: the platform index, tagged with the
/// recipe's name, then every platform's artifacts.
pub fn index_of_index(
    recipe: &Recipe,
    platform_index: &StoredBlob,
    artifacts: &[(String, StoredBlob)],
) -> Result<Vec<u8>, ImageError> {
    let desc = descriptor(MediaType::ImageIndex, platform_index)?;
    layout_index(recipe, desc, artifacts)
}

fn layout_index(
    recipe: &Recipe,
    mut top: Descriptor,
    artifacts: &[(String, StoredBlob)],
) -> Result<Vec<u8>, ImageError> {
    top.set_annotations(Some(HashMap::from([(
        annotation::REF_NAME.to_string(),
        recipe.name.clone(),
    )])));
    let mut manifests = vec![top];
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
mod tests;
