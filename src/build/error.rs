//! Why a build failed: the error of whichever stage stopped it.

use crate::attest::sbom;
use crate::debian::DebianError;
use crate::diag::{self, Diagnose, Interrupted};
use crate::disk;
use crate::image::ImageError;
use crate::layers::{self, LayerError, TreeError};
use crate::oci::layout::LayoutError;
use crate::output::OutputError;
use crate::recipe::Diagnostic;
use crate::resolve::{lock::LockError, ResolveError};
use std::borrow::Cow;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Packages(#[from] DebianError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Layer(LayerError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Sbom(#[from] sbom::SbomError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    #[error("{0}")]
    Base(Box<Diagnostic>),
    #[error("{0}")]
    Unsupported(String),
    /// `--strict`, and files the image's platform cannot run.
    #[error("{} file(s) of the image are ELF for another machine than its platform (refused with --strict):\n  {}", .0.len(), .0.join("\n  "))]
    ForeignElf(Vec<String>),
    #[error("interrupted; the previous output, if any, is unchanged")]
    Interrupted(#[from] Interrupted),
}

impl Diagnose for BuildError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            BuildError::Lock(e) => e.hint(),
            BuildError::Resolve(e) => e.hint(),
            BuildError::Packages(e) => e.hint(),
            BuildError::Tree(e) => e.hint(),
            BuildError::Layer(e) => e.hint(),
            BuildError::Disk(e) => e.hint(),
            BuildError::Base(diagnostic) => diagnostic.hint(),
            BuildError::Image(_)
            | BuildError::Sbom(_)
            | BuildError::Output(_)
            | BuildError::Layout(_)
            | BuildError::Unsupported(_)
            | BuildError::Interrupted(_) => None,
            BuildError::ForeignElf(_) => Some(
                "build each file for the image's platform (a source per platform under `platforms:`), or build without --strict to publish with a warning".into(),
            ),
        }
    }

    fn location(&self) -> Option<diag::Location<'_>> {
        match self {
            BuildError::Resolve(e) => e.location(),
            BuildError::Packages(e) => e.location(),
            BuildError::Tree(e) => e.location(),
            BuildError::Disk(e) => e.location(),
            BuildError::Base(diagnostic) => diagnostic.location(),
            BuildError::Lock(_)
            | BuildError::Layer(_)
            | BuildError::Image(_)
            | BuildError::Sbom(_)
            | BuildError::Output(_)
            | BuildError::Layout(_)
            | BuildError::Unsupported(_)
            | BuildError::ForeignElf(_)
            | BuildError::Interrupted(_) => None,
        }
    }
}

impl From<LayerError> for BuildError {
    fn from(e: LayerError) -> Self {
        match e {
            LayerError::Tar {
                source: layers::tar::TarError::Interrupted(interrupted),
                ..
            } => BuildError::Interrupted(interrupted),
            e => BuildError::Layer(e),
        }
    }
}
