//! Stage 5: output. The layout itself is written and published atomically by
//! [`crate::oci::layout::LayoutWriter`]; [`archive`] turns a finished layout into a
//! single-file `oci-archive` or `docker-archive`, published the same way.

pub mod archive;

use crate::oci::layout::LayoutError;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error(transparent)]
    Archive(Box<archive::ArchiveError>),
}

impl From<archive::ArchiveError> for OutputError {
    fn from(e: archive::ArchiveError) -> Self {
        OutputError::Archive(Box::new(e))
    }
}
