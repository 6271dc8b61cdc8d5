//! The image stage of one platform's image: its config and manifest, over the base
//! layers and the layers just written.

use super::context::BuildContext;
use super::error::BuildError;
use super::layers::Layers;
use crate::image;
use crate::oci::json::canonical_json;
use crate::oci::layout::StoredBlob;
use crate::resolve::platforms::PlatformSources;

/// One platform's image config and manifest, in the layout.
pub struct Image {
    pub config: StoredBlob,
    pub manifest: StoredBlob,
}

/// Writes the config and the manifest of `platform`'s image made of `layers`.
pub fn assemble(
    cx: &BuildContext,
    platform: &PlatformSources,
    layers: &Layers,
) -> Result<Image, BuildError> {
    let recipe = &platform.recipe;
    let base = layers.base.as_ref();
    let config = image::image_config(
        recipe,
        &platform.platform,
        base,
        &layers.blobs,
        layers.config_user.as_deref(),
        cx.epoch,
    )?;
    let config = cx.layout.put_blob(&canonical_json(&config))?;
    let manifest = image::manifest(recipe, &config, base, &layers.blobs)?;
    let manifest = cx.layout.put_blob(&canonical_json(&manifest))?;
    Ok(Image { config, manifest })
}
