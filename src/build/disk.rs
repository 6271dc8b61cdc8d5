//! The disk stage (`vm:` recipes): a bootable disk built from the layer trees of the
//! image, or replayed from the layer cache with the image (see [`crate::warm::disk`]),
//! signed and kept aside until the publish stage. A disk written afresh is stored in
//! the cache.

use super::attest::{provenance_facts, ProvenanceNames};
use super::context::BuildContext;
use super::error::BuildError;
use super::image::Image;
use super::layers::{DiskCache, Layers};
use super::plan::Plan;
use crate::disk;
use crate::resolve::platforms::PlatformSources;

/// Builds the VM disk the plan asks for, if any.
pub fn build_disk(
    cx: &BuildContext,
    plan: &Plan,
    platform: &PlatformSources,
    layers: &mut Layers,
    image: &Image,
) -> Result<Option<disk::DiskBuild>, BuildError> {
    let Some(disk_plan) = &plan.disk else {
        return Ok(None);
    };
    cx.check_cancelled()?;
    cx.observer.stage("disk");
    let disk_cache = std::mem::replace(&mut layers.disk_cache, DiskCache::None);
    let layers = &*layers;
    let recipe = &platform.recipe;
    let spdx_path = cx.layout.blob_path(&layers.spdx.digest);
    let names = ProvenanceNames::of(platform);
    let input = disk::DiskInput {
        recipe,
        epoch: cx.epoch,
        out_dir: &cx.settings.out_dir,
        spdx: &spdx_path,
        spdx_size: layers.spdx.size,
        provenance: provenance_facts(cx, plan, platform, layers, image, &names),
        sign_key: cx.handles.sign_key.as_ref(),
    };
    let (staged, cached) = match disk_cache {
        DiskCache::Replayed(staged) => (*staged, true),
        not_replayed => {
            let trees = layers
                .trees
                .as_deref()
                .expect("an image with vm: is replayed only with its disk");
            let staged = disk::write(disk_plan, &input, trees)?;
            if let (DiskCache::StoreUnder(key), Some(cache)) =
                (not_replayed, cx.handles.cache.as_ref())
            {
                crate::warm::disk::record(cache, &key, &staged, &recipe.name);
            }
            (staged, false)
        }
    };
    Ok(Some(disk::finish(disk_plan, &input, staged, cached)?))
}
