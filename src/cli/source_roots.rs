//! `--allow-source-root DIR`: the one way to let a recipe read host files outside its
//! own directory tree, for the commands that read a recipe's sources (`build`, `lock`,
//! `verify --rebuild`). A flag, not a recipe field: a recipe from a pull request must
//! not be able to grant itself the host's files.

use anyhow::Result;
use cairn::resolve::containment::SourceRoots;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct SourceRootArgs {
    /// Also let sources (and a `base: layout:`) come from below DIR, outside the
    /// recipe's directory; repeatable. By default a source that resolves outside the
    /// recipe's directory (through `..`, an absolute path or a symlink) is refused.
    #[arg(long = "allow-source-root", value_name = "DIR")]
    allow_source_root: Vec<PathBuf>,
}

impl SourceRootArgs {
    /// The allowed roots, each checked to exist.
    pub fn roots(&self) -> Result<SourceRoots> {
        Ok(SourceRoots::new(&self.allow_source_root)?)
    }
}
