//! Why a build failed: the error of whichever stage stopped it.

use crate::attest::sbom;
use crate::debian::DebianError;
use crate::disk;
use crate::image::ImageError;
use crate::layers::{self, LayerError, TreeError};
use crate::output::OutputError;
use crate::recipe::Diagnostic;
use crate::resolve::{lock::LockError, ResolveError};

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
    Output(#[from] OutputError),
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
    #[error("{0}")]
    Base(Box<Diagnostic>),
    #[error("{0}")]
    Unsupported(String),
    #[error("interrupted; the previous output, if any, is unchanged")]
    Interrupted,
}

impl From<LayerError> for BuildError {
    fn from(e: LayerError) -> Self {
        match e {
            LayerError::Tar {
                source: layers::tar::TarError::Interrupted,
                ..
            } => BuildError::Interrupted,
            e => BuildError::Layer(e),
        }
    }
}
