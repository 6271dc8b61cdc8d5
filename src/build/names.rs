//! The names a build gives what it writes outside the layout blobs: the side files
//! beside the layout, where the SBOMs go inside the image, the docker-archive tag.
//! Spelled here once; everything else asks.

use crate::recipe::{Platform, Recipe};

/// Where the embedded SBOMs live in the image.
pub const SBOM_DIR: &str = "/usr/share/sbom";
/// The name of the layer that embeds the SBOMs (`sbom: true`).
pub const SBOM_LAYER: &str = "sbom";
/// The tag a `docker-archive` gives the image (`<name>:latest`): a recipe names an
/// image, not a tag.
pub const DOCKER_ARCHIVE_TAG: &str = "latest";
/// cairn's version, as recorded in SBOMs and provenance.
pub const CAIRN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The SPDX and CycloneDX file names of one document set.
const SPDX_EXT: &str = "spdx.json";
const CYCLONEDX_EXT: &str = "cdx.json";
const ATTESTATIONS_EXT: &str = "intoto.jsonl";

/// The side files of one platform's image: `<name>.spdx.json` and `<name>.cdx.json`,
/// or `<name>.<os>-<arch>[-<variant>].…` when the recipe builds several platforms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomFiles {
    prefix: String,
}

impl SbomFiles {
    pub fn of(recipe: &Recipe, platform: &Platform) -> Self {
        let prefix = if recipe.multi_platform {
            format!("{}.{}", recipe.name, platform.to_string().replace('/', "-"))
        } else {
            recipe.name.clone()
        };
        SbomFiles { prefix }
    }

    pub fn spdx(&self) -> String {
        format!("{}.{SPDX_EXT}", self.prefix)
    }

    pub fn cyclonedx(&self) -> String {
        format!("{}.{CYCLONEDX_EXT}", self.prefix)
    }
}

/// The file of signed DSSE envelopes, one per line: `<name>.intoto.jsonl`.
pub fn attestations_file(recipe_name: &str) -> String {
    format!("{recipe_name}.{ATTESTATIONS_EXT}")
}

/// Every side file a build of `recipe` may write beside the layout, so that those
/// this build does not write are removed.
pub fn all_side_files(recipe: &Recipe) -> Vec<String> {
    let mut names = vec![attestations_file(&recipe.name)];
    let mut sets = vec![SbomFiles {
        prefix: recipe.name.clone(),
    }];
    sets.extend(recipe.platforms.iter().map(|p| SbomFiles::of(recipe, p)));
    for set in sets {
        names.push(set.spdx());
        names.push(set.cyclonedx());
    }
    names.dedup();
    names
}

/// Where an embedded SBOM sits in the image: `/usr/share/sbom/<name>.spdx.json` and
/// `.cdx.json`.
pub fn embedded_sboms(recipe_name: &str) -> [String; 2] {
    [SPDX_EXT, CYCLONEDX_EXT].map(|ext| format!("{SBOM_DIR}/{recipe_name}.{ext}"))
}

/// The recipe's file name as recorded in SBOMs and provenance.
pub fn recipe_file_name(recipe: &Recipe) -> String {
    recipe.file.path.file_name().map_or_else(
        || "recipe".to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
