//! What a build or `cairn lock` tells its caller: exactly what was written, where.

use super::names::{self, SbomFiles};
use super::plan::Plan;
use super::publish::{PlatformImage, Published};
use crate::attest::contents::BaseInfo;
use crate::base::BaseLayer;
use crate::debian;
use crate::digest::Sha256Digest;
use crate::disk;
use crate::layers::LayerBlob;
use crate::output::archive::OutputFormat;
use crate::recipe::Recipe;
use crate::resolve::{platforms, Lockfile};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub name: String,
    /// The layout directory, or the archive file for an archive format.
    pub layout: PathBuf,
    pub format: OutputFormat,
    pub manifest_digest: Sha256Digest,
    pub manifest_size: u64,
    pub config_digest: Sha256Digest,
    pub platform: String,
    pub epoch: u64,
    /// The layers cairn wrote (after the base image's, if any).
    pub layers: Vec<LayerBlob>,
    /// The base image, if the recipe has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseInfo>,
    /// The base image's layers, reused unchanged below `layers`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub base_layers: Vec<BaseLayer>,
    /// For a multi-platform build, each platform's image (`manifest_digest` is then
    /// the image index over them; the fields above describe the first platform).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<PlatformReport>,
    /// The lock file, if this build wrote it (new pins).
    pub lock_written: Option<PathBuf>,
    /// SBOMs written beside the layout (and attached to the image as referrers).
    pub spdx: PathBuf,
    pub cyclonedx: PathBuf,
    /// Whether the SBOMs are also embedded in the image (`sbom:` in the recipe).
    pub sbom_embedded: bool,
    /// Signed DSSE envelopes, one per line, when the build was signed.
    pub attestations: Option<PathBuf>,
    /// Key id of the signing key.
    pub signed_by: Option<String>,
    /// Manifests attached to the image (SBOMs, attestations) in the layout.
    pub referrers: Vec<ReferrerReport>,
    /// Every source (Debian packages as `deb:<name>`, per platform of an image index
    /// `deb:<name>@<platform>`, by .deb digest) and the digest it was built from.
    pub sources: BTreeMap<String, Sha256Digest>,
    pub warnings: Vec<String>,
    /// The VM disk, when the recipe has `vm:`.
    pub disk: Option<disk::DiskReport>,
    /// Whether every image's layers and SBOMs were replayed whole from the cache (an
    /// unchanged rebuild; see [`crate::warm`]).
    pub image_cached: bool,
}

/// One platform's image of a multi-platform build.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformReport {
    pub platform: String,
    pub manifest_digest: Sha256Digest,
    pub config_digest: Sha256Digest,
    pub spdx: PathBuf,
    pub cyclonedx: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReferrerReport {
    pub artifact_type: String,
    pub manifest_digest: Sha256Digest,
}

/// What `cairn lock` did.
#[derive(Debug, Serialize)]
pub struct LockReport {
    pub lock_file: PathBuf,
    pub changed: bool,
    pub sources: Lockfile,
    /// What changed from the lock file as it was, pin by pin.
    pub changes: Vec<crate::resolve::lock::PinChange>,
}

/// Where the build wrote what: the report of a finished build.
pub struct Built<'a> {
    pub recipe: &'a Recipe,
    pub out_dir: &'a Path,
    pub format: OutputFormat,
    pub epoch: u64,
    pub plan: Plan<'a>,
    pub images: Vec<PlatformImage>,
    pub published: Published,
    /// Warnings the layer cache gathered during the build.
    pub cache_warnings: Vec<String>,
}

impl Built<'_> {
    pub fn report(self) -> BuildReport {
        let Built {
            recipe,
            out_dir,
            format,
            epoch,
            plan,
            mut images,
            published,
            cache_warnings,
        } = self;
        let sbom_paths =
            |files: &SbomFiles| (out_dir.join(files.spdx()), out_dir.join(files.cyclonedx()));
        let platform_reports: Vec<PlatformReport> = images
            .iter()
            .map(|i| {
                let (spdx, cyclonedx) = sbom_paths(&i.sbom_files);
                PlatformReport {
                    platform: i.platform.to_string(),
                    manifest_digest: i.image.manifest.digest,
                    config_digest: i.image.config.digest,
                    spdx,
                    cyclonedx,
                }
            })
            .collect();
        // Debian packages count as sources, named `deb:<package>` (per platform
        // `deb:<package>@<platform>`, as the lock keys them), by .deb digest.
        let multi = recipe.platforms.len() > 1;
        let package_digests: Vec<(String, Sha256Digest)> = plan
            .sources
            .platforms
            .iter()
            .flat_map(|p| {
                let at = if multi {
                    format!("@{}", p.platform)
                } else {
                    String::new()
                };
                let installed = p.resolved.packages.iter().flat_map(|i| &i.packages);
                installed.map(move |package| {
                    let name = debian::source_name(&package.name);
                    (format!("{name}{at}"), package.pin.sha256)
                })
            })
            .collect();
        let image_cached = images.iter().all(|i| i.layers.replayed());
        let foreign_elf: Vec<String> = images
            .iter()
            .flat_map(|i| i.layers.foreign_elf.iter().cloned())
            .collect();
        let first = images.swap_remove(0);
        let (spdx, cyclonedx) = sbom_paths(&first.sbom_files);
        BuildReport {
            name: recipe.name.clone(),
            layout: published.layout,
            format,
            manifest_digest: published.top.digest,
            manifest_size: published.top.size,
            config_digest: first.image.config.digest,
            platform: first.platform.to_string(),
            epoch,
            layers: first.layers.blobs,
            base: first.layers.base_info,
            base_layers: first.layers.base.map(|b| b.layers).unwrap_or_default(),
            images: if recipe.multi_platform {
                platform_reports
            } else {
                Vec::new()
            },
            lock_written: published.lock_written,
            spdx,
            cyclonedx,
            sbom_embedded: recipe.sbom,
            attestations: published
                .signed_by
                .as_ref()
                .map(|_| out_dir.join(names::attestations_file(&recipe.name))),
            signed_by: published.signed_by,
            referrers: published
                .referrers
                .into_iter()
                .map(|(artifact_type, blob)| ReferrerReport {
                    artifact_type,
                    manifest_digest: blob.digest,
                })
                .collect(),
            sources: platforms::source_digests(recipe, &plan.sources.platforms)
                .into_iter()
                .chain(package_digests)
                .collect(),
            warnings: plan
                .warnings
                .into_iter()
                .chain(foreign_elf)
                .chain(cache_warnings)
                .collect(),
            disk: published.disk,
            image_cached,
        }
    }
}
