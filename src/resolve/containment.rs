//! Which host files a recipe may put into an image: those inside the recipe's own
//! directory tree, and those below outside roots that the person running cairn names
//! (`cairn build --allow-source-root DIR`). Recipes from pull requests are untrusted in
//! CI, so the permission to read elsewhere comes from the command line, never from the
//! recipe.
//!
//! A host path the recipe names (a `path:` or `archive:` source, a `base: layout:`
//! directory) is checked where it resolves: every `..` and every symlink, the last one
//! included, is followed ([`std::fs::canonicalize`]), and the resolved path is the one
//! read. Symlinks inside a directory source are never followed: they become symlinks
//! in the image, so they reach no host file. Keys, signatures and keyrings are read
//! from anywhere: they decide what is trusted and never reach the image.

use crate::diag::Diagnose;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The outside directories a build may read sources from, besides the recipe's own
/// directory tree: none by default.
#[derive(Debug, Clone, Default)]
pub struct SourceRoots {
    /// Canonical paths.
    allowed: Vec<PathBuf>,
}

/// A host path named by a recipe that resolves outside every allowed root, or an
/// allowed root that does not exist.
#[derive(Debug, thiserror::Error)]
pub enum ContainmentError {
    #[error("{what} `{written}` resolves to {resolved}, outside the recipe's directory {recipe_dir}{allowed}")]
    Outside {
        what: String,
        written: String,
        resolved: PathBuf,
        recipe_dir: PathBuf,
        /// ` and outside the allowed roots A, B`, or empty.
        allowed: String,
    },
    #[error("--allow-source-root {path}: {source}")]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Diagnose for ContainmentError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        Some(match self {
            ContainmentError::Outside { .. } => "a recipe reads host files only inside its own directory (after following `..` and symlinks); to read from another directory on purpose, pass `--allow-source-root DIR` to cairn".into(),
            ContainmentError::Root { .. } => "give an existing directory".into(),
        })
    }
}

impl SourceRoots {
    /// Allows the directories `roots` (each must exist) besides the recipe's own.
    pub fn new(roots: &[PathBuf]) -> Result<Self, ContainmentError> {
        let allowed = roots
            .iter()
            .map(|root| {
                std::fs::canonicalize(root).map_err(|source| ContainmentError::Root {
                    path: root.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(SourceRoots { allowed })
    }

    /// Where `written` (a path relative to `recipe_dir`, as the recipe has it) resolves,
    /// if that is inside `recipe_dir` or an allowed root; `what` names it in the error
    /// (``source `app` ``). A path that does not resolve (missing, unreadable) is
    /// given back joined and made absolute (like a resolved one, so that no caller
    /// joins it to the recipe's directory again), and reading it reports the problem.
    pub fn resolve(
        &self,
        what: &str,
        recipe_dir: &Path,
        written: &str,
    ) -> Result<PathBuf, ContainmentError> {
        let joined = recipe_dir.join(written);
        let (Ok(resolved), Ok(recipe_dir)) = (
            std::fs::canonicalize(&joined),
            std::fs::canonicalize(recipe_dir),
        ) else {
            return Ok(std::path::absolute(&joined).unwrap_or(joined));
        };
        if resolved.starts_with(&recipe_dir)
            || self.allowed.iter().any(|root| resolved.starts_with(root))
        {
            return Ok(resolved);
        }
        let allowed = if self.allowed.is_empty() {
            String::new()
        } else {
            let roots: Vec<String> = self
                .allowed
                .iter()
                .map(|r| r.display().to_string())
                .collect();
            format!(" and outside the allowed roots {}", roots.join(", "))
        };
        Err(ContainmentError::Outside {
            what: what.to_string(),
            written: written.to_string(),
            resolved,
            recipe_dir,
            allowed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// `outside/secret`, and `recipe/` holding `inside`, a link to the secret, a link
    /// to the outside directory and a link that stays inside.
    fn layout() -> (tempfile::TempDir, PathBuf) {
        let top = tempfile::tempdir().unwrap();
        let recipe = top.path().join("recipe");
        std::fs::create_dir_all(recipe.join("sub")).unwrap();
        std::fs::create_dir(top.path().join("outside")).unwrap();
        std::fs::write(top.path().join("outside/secret"), b"s").unwrap();
        std::fs::write(recipe.join("inside"), b"i").unwrap();
        symlink("../outside/secret", recipe.join("to-secret")).unwrap();
        symlink(top.path().join("outside"), recipe.join("sub/to-outside")).unwrap();
        symlink("../inside", recipe.join("sub/to-inside")).unwrap();
        (top, recipe)
    }

    #[test]
    fn paths_that_resolve_inside_the_recipe_directory_are_read_where_they_resolve() {
        let (_top, recipe) = layout();
        let roots = SourceRoots::default();
        let inside = std::fs::canonicalize(recipe.join("inside")).unwrap();
        for written in [
            "inside",
            "sub/../inside",
            "sub/to-inside",
            "./sub/to-inside",
        ] {
            assert_eq!(
                roots.resolve("source `a`", &recipe, written).unwrap(),
                inside
            );
        }
    }

    #[test]
    fn dot_dot_absolute_paths_and_symlinks_out_of_the_tree_are_refused_by_name() {
        let (top, recipe) = layout();
        let roots = SourceRoots::default();
        let secret = top.path().join("outside/secret");
        for written in [
            "../outside/secret".to_string(),
            secret.display().to_string(),
            "to-secret".into(),
            "sub/to-outside/secret".into(),
            "sub/to-outside".into(),
            "/etc/passwd".into(),
        ] {
            let err = roots.resolve("source `a`", &recipe, &written).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains("source `a`") && message.contains(&format!("`{written}`")),
                "{message}"
            );
            assert!(
                message.contains("outside the recipe's directory"),
                "{message}"
            );
            assert!(err.hint().unwrap().contains("--allow-source-root"));
        }
        let err = roots
            .resolve("source `a`", &recipe, "to-secret")
            .unwrap_err();
        let resolved = std::fs::canonicalize(&secret).unwrap();
        assert!(
            err.to_string().contains(&resolved.display().to_string()),
            "names where it resolved: {err}"
        );
    }

    #[test]
    fn an_allowed_root_admits_what_resolves_below_it_and_nothing_else() {
        let (top, recipe) = layout();
        let roots = SourceRoots::new(&[top.path().join("outside")]).unwrap();
        assert!(roots.resolve("source `a`", &recipe, "to-secret").is_ok());
        assert!(roots
            .resolve("source `a`", &recipe, "../outside/secret")
            .is_ok());
        let err = roots
            .resolve("source `a`", &recipe, "/etc/passwd")
            .unwrap_err();
        assert!(err.to_string().contains("allowed roots"), "{err}");
        assert!(SourceRoots::new(&[top.path().join("missing")]).is_err());
    }
}
