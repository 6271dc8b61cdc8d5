//! The disk stage (`vm:` recipes): a bootable disk built from the layer trees of the
//! image, kept aside until the publish stage.

use super::attest::{provenance_facts, ProvenanceNames};
use super::context::BuildContext;
use super::error::BuildError;
use super::image::Image;
use super::layers::Layers;
use super::plan::Plan;
use crate::disk;
use crate::resolve::platforms::PlatformSources;

/// Builds the VM disk the plan asks for, if any.
pub fn build_disk(
    cx: &BuildContext,
    plan: &Plan,
    platform: &PlatformSources,
    layers: &Layers,
    image: &Image,
) -> Result<Option<disk::DiskBuild>, BuildError> {
    let Some(disk_plan) = &plan.disk else {
        return Ok(None);
    };
    cx.check_cancelled()?;
    cx.observer.stage("disk");
    let recipe = &platform.recipe;
    let spdx_path = cx.layout.blob_path(&layers.spdx.digest);
    let names = ProvenanceNames::of(platform);
    let input = disk::DiskInput {
        recipe,
        layers: layers
            .trees
            .as_deref()
            .expect("a recipe with vm: is never replayed"),
        epoch: cx.epoch,
        out_dir: &cx.settings.out_dir,
        spdx: &spdx_path,
        spdx_size: layers.spdx.size,
        provenance: provenance_facts(cx, plan, platform, layers, image, &names),
        sign_key: cx.handles.sign_key.as_ref(),
    };
    Ok(Some(disk::build(disk_plan, &input)?))
}
