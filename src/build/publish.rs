//! The publish stage: the layout's index over every platform's image, the SBOM and
//! attestation side files beside it, the layout (or archive) published atomically,
//! then the VM disk and the lock file.

use super::attest::Attestations;
use super::context::BuildContext;
use super::error::BuildError;
use super::image::Image;
use super::layers::Layers;
use super::names::{self, SbomFiles, DOCKER_ARCHIVE_TAG};
use super::plan::Plan;
use crate::digest::Sha256Digest;
use crate::disk;
use crate::image;
use crate::keys;
use crate::oci::layout::{SideFile, StoredBlob};
use crate::output::archive::{self, DockerImage, DockerTag, OutputFormat};
use crate::output::OutputError;
use crate::recipe::{Platform, Recipe};
use crate::resolve::LockMode;
use std::path::PathBuf;

/// Everything built for one platform, ready to publish.
pub struct PlatformImage {
    pub platform: Platform,
    pub sbom_files: SbomFiles,
    pub layers: Layers,
    pub image: Image,
    pub attestations: Attestations,
    /// The VM disk built from this image's root file system, not yet published.
    pub disk: Option<disk::DiskBuild>,
}

/// What the publish stage put where.
pub struct Published {
    /// The layout directory, or the archive file for an archive format.
    pub layout: PathBuf,
    /// What the layout's index points at: the image manifest, or for a
    /// multi-platform build the image index over the platforms' manifests.
    pub top: StoredBlob,
    /// Every platform's referrers, in platform order.
    pub referrers: Vec<(String, StoredBlob)>,
    /// Key id of the signing key, when the build was signed.
    pub signed_by: Option<String>,
    pub disk: Option<disk::DiskReport>,
    /// The lock file, if this build wrote it (new pins).
    pub lock_written: Option<PathBuf>,
}

/// Publishes `images` (one per platform, in the recipe's order), ending the build.
pub fn publish(
    cx: BuildContext,
    recipe: &Recipe,
    plan: &Plan,
    images: &mut [PlatformImage],
) -> Result<Published, BuildError> {
    cx.observer.stage("publish");
    let referrers: Vec<(String, StoredBlob)> = images
        .iter()
        .flat_map(|i| i.attestations.referrers.iter().cloned())
        .collect();
    let (top, index) = if recipe.multi_platform {
        let manifests: Vec<(Platform, StoredBlob)> = images
            .iter()
            .map(|i| (i.platform.clone(), i.image.manifest))
            .collect();
        let platform_index = cx
            .layout
            .put_blob(&image::platform_index(recipe, &manifests)?)?;
        (
            platform_index,
            image::index_of_index(recipe, &platform_index, &referrers)?,
        )
    } else {
        let only = &images[0];
        (
            only.image.manifest,
            image::index(recipe, &only.image.manifest, &only.attestations.referrers)?,
        )
    };
    let mut side_files: Vec<SideFile> = Vec::new();
    let mut envelopes: Vec<Sha256Digest> = Vec::new();
    for i in images.iter() {
        for (name, blob) in [
            (i.sbom_files.spdx(), i.layers.spdx.digest),
            (i.sbom_files.cyclonedx(), i.layers.cyclonedx.digest),
        ] {
            side_files.push(SideFile {
                name,
                blobs: vec![blob],
                line_per_blob: false,
            });
        }
        envelopes.extend_from_slice(&i.attestations.envelopes);
    }
    let signed_by = cx
        .handles
        .sign_key
        .as_ref()
        .map(|key| keys::key_id(&key.verifying_key()));
    if signed_by.is_some() {
        side_files.push(SideFile {
            name: names::attestations_file(&recipe.name),
            blobs: envelopes,
            line_per_blob: true,
        });
    }
    cx.check_cancelled()?;
    let stale = names::all_side_files(recipe);
    let epoch = cx.epoch;
    let layout = match cx.settings.format {
        OutputFormat::Oci => cx.layout.publish(&index, &side_files, &stale)?,
        OutputFormat::OciArchive => cx.layout.publish_archive(
            &index,
            |dir, out| archive::write_oci_archive(dir, epoch, out).map_err(OutputError::from),
            &side_files,
            &stale,
        )?,
        OutputFormat::DockerArchive => {
            let only = &images[0];
            let default_tag = [DockerTag {
                name: recipe.name.clone(),
                tag: DOCKER_ARCHIVE_TAG.to_string(),
            }];
            let image = DockerImage {
                tags: match cx.settings.docker_tags.as_slice() {
                    [] => &default_tag,
                    tags => tags,
                },
                config: only.image.config.digest,
                layers: image::layer_list(only.layers.base.as_ref(), &only.layers.blobs)
                    .into_iter()
                    .map(|(blob, media_type, diff_id)| (blob.digest, media_type, diff_id))
                    .collect(),
            };
            cx.layout.publish_archive(
                &index,
                |dir, out| {
                    archive::write_docker_archive(dir, &image, epoch, out)
                        .map_err(OutputError::from)
                },
                &side_files,
                &stale,
            )?
        }
    };

    let disk = match images.first_mut().and_then(|i| i.disk.take()) {
        Some(d) => Some(d.publish(&recipe.name)?),
        None => {
            disk::remove_stale(&cx.settings.out_dir, &recipe.name, &[])?;
            None
        }
    };

    let lock_written =
        if plan.lock != plan.old_lock && cx.settings.lock_mode == LockMode::PinMissing {
            plan.lock.write(&plan.lock_path)?;
            Some(plan.lock_path.clone())
        } else {
            None
        };
    Ok(Published {
        layout,
        top,
        referrers,
        signed_by,
        disk,
        lock_written,
    })
}
