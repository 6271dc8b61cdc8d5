//! The layers stage of one platform's image: the base image's layers copied, the
//! package and recipe layers written through the layer cache, the SBOMs generated from
//! what was written (and embedded as a last layer when the recipe asks). An unchanged
//! image is replayed whole from the cache instead (see [`crate::warm`]).

use super::context::BuildContext;
use super::error::BuildError;
use super::names::{self, CAIRN_VERSION, SBOM_LAYER};
use super::plan::{PinnedBase, Plan};
use crate::attest::contents::{self, BaseInfo, SourceInfo};
use crate::attest::sbom;
use crate::base::{self, BaseFs, BaseImage};
use crate::layers::{self, elf, LayerBlob, LayerTree, TreeEntryKind};
use crate::oci::layout::StoredBlob;
use crate::recipe::{Diagnostic, ImagePath};
use crate::resolve::platforms::PlatformSources;
use crate::snapshot::Content;
use crate::warm;
use std::io::Write;

/// One platform's layers and SBOMs, in the layout.
pub struct Layers {
    /// The base image, as selected for this platform.
    pub base: Option<BaseImage>,
    pub base_info: Option<BaseInfo>,
    /// The layers cairn wrote above the base, in order (the SBOM layer last when
    /// embedded).
    pub blobs: Vec<LayerBlob>,
    pub spdx: StoredBlob,
    pub cyclonedx: StoredBlob,
    pub sources: Vec<SourceInfo>,
    /// The layer trees (`None` when replayed from the cache): the VM disk is built
    /// from them.
    pub trees: Option<Vec<LayerTree>>,
    /// Files the platform cannot run ([`elf::foreign_files`]), as warnings.
    pub foreign_elf: Vec<String>,
    /// `config.user` in numbers ([`layers::image_user`]).
    pub config_user: Option<String>,
    /// What the layer cache holds of the image's VM disk.
    pub disk_cache: DiskCache,
}

/// What the layer cache holds of an image's VM disk (see [`warm::disk`]).
pub enum DiskCache {
    /// No disk, or no cache to keep one in.
    None,
    /// Replayed with the image: the disk's files, checked, staged beside the outputs.
    Replayed(Box<crate::disk::StagedDisk>),
    /// Not replayed: the disk stage writes it and stores it under this key.
    StoreUnder(warm::disk::DiskKey),
}

impl Layers {
    /// Whether the layers and SBOMs were replayed from the cache.
    pub fn replayed(&self) -> bool {
        self.trees.is_none()
    }
}

/// Writes the layers and SBOMs of `platform`'s image into the layout; with `--strict`,
/// refuses an image holding files its platform cannot run.
///
/// Frees `platform`'s source entries as the layers are assembled, when the layers are
/// written afresh ([`crate::layers::assemble_on`]).
pub fn write_layers(
    cx: &BuildContext,
    plan: &Plan,
    platform: &mut PlatformSources,
) -> Result<Layers, BuildError> {
    let layers = written_or_replayed(cx, plan, platform)?;
    if cx.settings.strict && !layers.foreign_elf.is_empty() {
        return Err(BuildError::ForeignElf(layers.foreign_elf));
    }
    Ok(layers)
}

/// The layers of `platform`'s image, replayed from the cache or written afresh.
fn written_or_replayed(
    cx: &BuildContext,
    plan: &Plan,
    platform: &mut PlatformSources,
) -> Result<Layers, BuildError> {
    let recipe = &platform.recipe;
    let (base, base_fs) = match &plan.base {
        Some(pinned) => {
            let (image, fs) = copy_base(cx, recipe, pinned, platform)?;
            (Some(image), Some(fs))
        }
        None => (None, None),
    };
    let base_info = base.as_ref().map(contents::base_info);
    let package_accounts = platform
        .resolved
        .packages
        .as_ref()
        .and_then(|p| p.accounts.as_ref());
    let config_user = layers::image_user(recipe, package_accounts, base_fs.as_ref())?;
    // Replayed from the cache when nothing changed (see `warm`); a registry-shared
    // cache pushes from the layer entries.
    let warm = cx
        .handles
        .cache
        .as_ref()
        .filter(|cache| !cache.has_remote())
        .map(|cache| {
            let key = warm::ImageInputs {
                recipe_text: &recipe.file.text,
                recipe_file_name: names::recipe_file_name(recipe),
                platform: platform.platform.to_string(),
                epoch: cx.epoch,
                output_format: cx.settings.format,
                base: base_info.as_ref(),
                resolved: &platform.resolved,
                program: cache.program(),
            }
            .key();
            (cache, key)
        });
    let disk_key = warm
        .as_ref()
        .zip(plan.disk.as_ref())
        .map(|((_, key), disk)| warm::disk::key(key, disk));
    let replayed = warm.as_ref().and_then(|(cache, key)| {
        // The disk first: a recipe with `vm:` needs the layer trees unless its disk
        // is replayed too.
        let disk = match (&plan.disk, &disk_key) {
            (Some(disk), Some(disk_key)) => DiskCache::Replayed(Box::new(warm::disk::replay(
                cache,
                disk_key,
                &cx.settings.out_dir,
                &recipe.name,
                &disk.vm.formats,
            )?)),
            _ => DiskCache::None,
        };
        Some((warm::replay(cache, key, &cx.layout)?, disk))
    });
    if let Some((replayed, disk_cache)) = replayed {
        cx.observer.stage("layers");
        for layer in &replayed.layers {
            cx.observer
                .layer_started(&layer.name, layer.uncompressed_size);
            cx.observer.bytes_written(layer.uncompressed_size);
            cx.observer.layer_finished(layer);
        }
        cx.observer.stage("sbom");
        return Ok(Layers {
            base,
            base_info,
            blobs: replayed.layers,
            spdx: replayed.spdx,
            cyclonedx: replayed.cyclonedx,
            sources: contents::source_infos(recipe, &platform.resolved),
            trees: None,
            foreign_elf: replayed.foreign_elf,
            config_user,
            disk_cache,
        });
    }
    let mut layers = write_afresh(cx, platform, base, base_fs.as_ref(), config_user)?;
    if let Some(key) = disk_key {
        layers.disk_cache = DiskCache::StoreUnder(key);
    }
    if let Some((cache, key)) = &warm {
        warm::record(
            cache,
            key,
            &layers.blobs,
            layers.spdx,
            layers.cyclonedx,
            &layers.foreign_elf,
            &cx.layout,
        );
    }
    Ok(layers)
}

/// Selects `platform`'s image of the pinned base and copies its layers into the
/// layout.
fn copy_base(
    cx: &BuildContext,
    recipe: &crate::recipe::Recipe,
    pinned: &PinnedBase,
    platform: &PlatformSources,
) -> Result<(BaseImage, BaseFs), BuildError> {
    let error = |e: base::BaseError| {
        BuildError::Base(Box::new(
            Diagnostic::new(
                &recipe.file,
                pinned.span,
                format!("base image {} ({}): {e}", pinned.reference, pinned.digest),
            )
            .with_hint_of(&e),
        ))
    };
    let image = base::select(
        pinned.store.as_ref(),
        &pinned.reference,
        pinned.digest,
        &platform.platform,
    )
    .map_err(error)?;
    let fs = base::copy_layers(
        pinned.store.as_ref(),
        &image,
        &cx.layout,
        recipe.limits,
        cx.cancel_flag(),
    )
    .map_err(|e| match e {
        base::BaseError::Interrupted(interrupted) => interrupted.into(),
        e => error(e),
    })?;
    Ok((image, fs))
}

/// Assembles the layer trees on top of the base and the packages, writes (or takes
/// from the layer cache) each layer, then generates the SBOMs and the SBOM layer.
fn write_afresh(
    cx: &BuildContext,
    platform: &mut PlatformSources,
    base: Option<BaseImage>,
    base_fs: Option<&BaseFs>,
    config_user: Option<String>,
) -> Result<Layers, BuildError> {
    let below = crate::layers::debian::hook_layers(&platform.recipe, &platform.resolved, base_fs)?;
    // Frees the source entries as it reads them: the trees share their paths and
    // contents.
    let mut trees = layers::assemble_on(&platform.recipe, &mut platform.resolved, base_fs, below)?;
    let platform = &*platform;
    let recipe = &platform.recipe;
    let resolved = &platform.resolved;
    let foreign_elf: Vec<String> = elf::foreign_files(&trees, &platform.platform)
        .iter()
        .map(ToString::to_string)
        .collect();
    cx.observer.stage("layers");

    let write = |tree: &LayerTree| -> Result<LayerBlob, BuildError> {
        cx.check_cancelled()?;
        let content_bytes = tree
            .entries
            .values()
            .map(|e| match &e.kind {
                TreeEntryKind::File(layers::FileData::Source(c)) => c.size,
                TreeEntryKind::File(layers::FileData::Inline(b)) => b.len() as u64,
                _ => 0,
            })
            .sum();
        cx.observer.layer_started(&tree.name, content_bytes);
        let blob = layers::cache::write_layer(
            cx.handles.cache.as_ref(),
            tree,
            cx.epoch,
            recipe.layer_compression(&tree.name),
            cx.jobs,
            &cx.layout,
            cx.cancel_flag(),
            &|n| cx.observer.bytes_written(n),
        )?;
        cx.observer.layer_finished(&blob);
        Ok(blob)
    };
    let mut blobs = trees.iter().map(write).collect::<Result<Vec<_>, _>>()?;

    cx.observer.stage("sbom");
    // SBOMs describe the layers as written (their SHA-1s were computed in the same
    // pass); the SBOM layer itself is not in them.
    let sha1 = contents::WrittenSha1s {
        base: base_fs.map(|fs| &fs.sha1),
        layers: trees.iter().zip(blobs.iter().map(|b| &b.sha1)).collect(),
    };
    // From a list of the files of its own, which it frees before the SBOMs' is made.
    let image_verification_code =
        sbom::image_verification_code(contents::image_files(base_fs, &trees), &sha1)?;
    let contents = contents::image_contents(recipe, resolved, base.as_ref().zip(base_fs), &trees);
    let platform_name = platform.platform.to_string();
    let recipe_file_name = names::recipe_file_name(recipe);
    let sbom_input = sbom::SbomInput {
        image_name: &recipe.name,
        epoch: cx.epoch,
        platform: &platform_name,
        recipe_file_name: &recipe_file_name,
        contents: &contents,
        cairn_version: CAIRN_VERSION,
        sha1: &sha1,
        image_verification_code,
    };
    // Written straight into blobs, which the SBOM layer, the referrers, the signed
    // statement and the side files read back: an SBOM lists every file of the image
    // and is tens of megabytes at tens of thousands of files.
    let write_sbom = |write: &dyn Fn(&mut dyn Write) -> Result<(), sbom::SbomError>| {
        let mut blob = cx.layout.blob_writer()?;
        write(&mut blob)?;
        Ok::<_, BuildError>(cx.layout.commit_blob(blob)?)
    };
    let spdx = write_sbom(&|out| sbom::write_spdx_json(&sbom_input, out))?;
    let cyclonedx = write_sbom(&|out| {
        sbom::write_cyclonedx_json(&sbom_input, out).map_err(sbom::SbomError::Write)
    })?;
    // The per-file list and SHA-1s serve only the SBOMs: freed before the next layer.
    drop(sha1);
    let contents::ImageContents {
        files,
        sources,
        base: base_info,
    } = contents;
    drop(files);
    if recipe.sbom {
        let blob_content = |blob: &StoredBlob| Content {
            location: crate::snapshot::Location::Path(std::sync::Arc::new(
                cx.layout.blob_path(&blob.digest),
            )),
            size: blob.size,
            sha256: blob.digest,
        };
        let [spdx_at, cyclonedx_at] = names::embedded_sboms(&recipe.name)
            .map(|path| ImagePath::parse(&path).expect("image names are path-safe"));
        let files = vec![
            (spdx_at, layers::FileData::Source(blob_content(&spdx))),
            (
                cyclonedx_at,
                layers::FileData::Source(blob_content(&cyclonedx)),
            ),
        ];
        let layer = layers::generated_layer(recipe, base_fs, &trees, SBOM_LAYER, files)?;
        blobs.push(write(&layer)?);
        trees.push(layer);
    }

    Ok(Layers {
        base,
        base_info,
        blobs,
        spdx,
        cyclonedx,
        sources,
        trees: Some(trees),
        foreign_elf,
        config_user,
        disk_cache: DiskCache::None,
    })
}
