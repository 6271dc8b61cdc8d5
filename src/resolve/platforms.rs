//! Sources per platform. A source whose path has `{arch}` reads a different file for
//! each platform, so it is resolved, pinned and recorded once per platform: the
//! recipe is specialised for each platform (`{arch}` replaced by its architecture),
//! its pins living in the lock file under `<name>@<platform>` ([`source_lock_key`]).
//! Other sources keep their plain name and are resolved once, for all platforms.

use super::containment::SourceRoots;
use super::lock::source_lock_key;
use super::{resolve, LockMode, Lockfile, ResolveError, ResolvedSources};
use crate::recipe::{Platform, Recipe, ARCH_PLACEHOLDER};
use std::path::Path;

/// One platform's recipe (paths specialised) and its resolved sources.
pub struct PlatformSources {
    pub platform: Platform,
    pub recipe: Recipe,
    pub resolved: ResolvedSources,
}

/// Every platform's sources, and the lock file as it should now be.
pub struct AllSources {
    pub platforms: Vec<PlatformSources>,
    /// Sources only: the caller adds the base.
    pub lock: Lockfile,
    pub warnings: Vec<String>,
}

fn per_platform(path: &str) -> bool {
    path.contains(ARCH_PLACEHOLDER)
}

/// `recipe` as built for `platform`.
pub fn for_platform(recipe: &Recipe, platform: &Platform) -> Recipe {
    let mut specialised = recipe.clone();
    specialised.platform = platform.clone();
    let arch = &platform.architecture;
    for spec in specialised.sources.values_mut() {
        spec.path = spec.path.replace(ARCH_PLACEHOLDER, arch);
        // A per-platform file has a per-platform signature (the key is shared).
        if let Some(signature) = &mut spec.signature {
            signature.path = signature.path.replace(ARCH_PLACEHOLDER, arch);
        }
    }
    specialised
}

/// The lock file key of each source of `recipe` for `platform`.
fn keys<'r>(recipe: &'r Recipe, platform: &'r Platform) -> impl Iterator<Item = (&'r str, String)> {
    recipe.sources.values().map(move |s| {
        (
            s.name.as_str(),
            source_lock_key(&s.name, per_platform(&s.path), platform),
        )
    })
}

/// Resolves the sources of every platform of `recipe`.
pub fn resolve_all(
    recipe: &Recipe,
    lock: &Lockfile,
    lock_path: &Path,
    mode: LockMode,
    staging: &Path,
    cache_dir: Option<&Path>,
    roots: &SourceRoots,
) -> Result<AllSources, ResolveError> {
    if mode == LockMode::Locked {
        let known: std::collections::BTreeSet<String> = recipe
            .platforms
            .iter()
            .flat_map(|p| keys(recipe, p).map(|(_, k)| k).collect::<Vec<_>>())
            .collect();
        if let Some(stale) = lock.sources.keys().find(|k| !known.contains(*k)) {
            return Err(ResolveError::Lock {
                message: format!(
                    "{} pins source `{stale}`, which the recipe does not have",
                    lock_path.display()
                ),
                hint: "run `cairn lock` to bring the lock file up to date, and commit it".into(),
            });
        }
    }
    // Sources that are the same for every platform are read (hashed, unpacked) once.
    let mut shared_recipe = recipe.clone();
    shared_recipe.sources.retain(|_, s| !per_platform(&s.path));
    let mut shared_view = Lockfile::default();
    for name in shared_recipe.sources.keys() {
        if let Some(entry) = lock.sources.get(name) {
            shared_view.sources.insert(name.clone(), entry.clone());
        }
    }
    let resolve_part = |part: &Recipe, view: &Lockfile| {
        resolve(part, view, lock_path, mode, staging, cache_dir, roots)
    };
    let shared = resolve_part(&shared_recipe, &shared_view)?;
    let mut combined = Lockfile::default();
    combined.sources.extend(shared.lock.sources.clone());
    let mut warnings: Vec<String> = shared.warnings.clone();

    let mut resolved_platforms = Vec::with_capacity(recipe.platforms.len());
    for platform in &recipe.platforms {
        let specialised = for_platform(recipe, platform);
        let mut own_recipe = specialised.clone();
        own_recipe
            .sources
            .retain(|name, _| per_platform(&recipe.sources[name].path));
        let mut view = Lockfile::default();
        for (name, key) in keys(recipe, platform) {
            if let (true, Some(entry)) = (
                own_recipe.sources.contains_key(name),
                lock.sources.get(&key),
            ) {
                view.sources.insert(name.to_string(), entry.clone());
            }
        }
        let own = resolve_part(&own_recipe, &view)?;
        for (name, key) in keys(recipe, platform) {
            if let Some(entry) = own.lock.sources.get(name) {
                combined.sources.insert(key, entry.clone());
            }
        }
        for w in &own.warnings {
            let w = format!("{w} (for {platform})");
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        let mut sources = shared.sources.clone();
        sources.extend(own.sources);
        resolved_platforms.push((platform.clone(), specialised, sources));
    }
    let lock_changed = combined != *lock;
    let platforms = resolved_platforms
        .into_iter()
        .map(|(platform, recipe, sources)| PlatformSources {
            platform,
            recipe,
            resolved: ResolvedSources {
                sources,
                lock: combined.clone(),
                lock_changed,
                warnings: warnings.clone(),
                packages: None,
            },
        })
        .collect();
    Ok(AllSources {
        platforms,
        lock: combined,
        warnings,
    })
}

/// Each source's digest under its lock key, over every platform.
pub fn source_digests(
    recipe: &Recipe,
    all: &[PlatformSources],
) -> std::collections::BTreeMap<String, crate::digest::Sha256Digest> {
    let mut out = std::collections::BTreeMap::new();
    for p in all {
        for (name, key) in keys(recipe, &p.platform) {
            if let Some(s) = p.resolved.sources.get(name) {
                out.insert(key, s.digest);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{parse, RecipeFile};

    #[test]
    fn arch_is_filled_in_paths_and_signatures_and_keys_name_the_platform() {
        let recipe = parse(RecipeFile {
            path: "r.yaml".into(),
            dir: ".".into(),
            text: "cairn: 1\nname: x\nplatforms: [linux/amd64, linux/arm64/v8]\nsources:\n  tool: { path: \"bin/tool-{arch}\", signature: { path: \"bin/tool-{arch}.sig\", key: k.pub } }\n  data: { path: data/ }\nlayers:\n  - name: l\n    contents:\n      - copy: tool\n        to: /t\n".into(),
        })
        .unwrap();
        let arm = &recipe.platforms[1];
        let specialised = for_platform(&recipe, arm);
        let tool = &specialised.sources["tool"];
        assert_eq!(tool.path, "bin/tool-arm64");
        assert_eq!(tool.signature.as_ref().unwrap().path, "bin/tool-arm64.sig");
        assert_eq!(specialised.platform, *arm);
        let keys: Vec<(&str, String)> = keys(&recipe, arm).collect();
        assert_eq!(
            keys,
            [
                ("data", "data".to_string()),
                ("tool", "tool@linux/arm64/v8".to_string())
            ]
        );
    }
}
