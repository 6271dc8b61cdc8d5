//! A base image in an OCI image layout directory.

use super::{BaseError, BaseStore};
use crate::digest::Sha256Digest;
use crate::oci::layout::{Layout, LayoutError};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

pub struct LayoutStore {
    layout: Layout,
}

impl LayoutStore {
    pub fn new(dir: PathBuf) -> Self {
        LayoutStore {
            layout: Layout::open(&dir),
        }
    }

    fn open(&self, what: &'static str, digest: &Sha256Digest) -> Result<File, BaseError> {
        let path = self.layout.blob_path(digest);
        File::open(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => BaseError::Missing {
                what,
                digest: *digest,
            },
            _ => BaseError::Io {
                what: path.display().to_string(),
                source,
            },
        })
    }
}

impl BaseStore for LayoutStore {
    /// The layout's one image: the single entry of `index.json` that is an image
    /// manifest or index and not an artifact (SBOMs and attestations have an
    /// `artifactType`).
    fn resolve(&self) -> Result<Sha256Digest, BaseError> {
        let path = self.layout.index_path();
        let index = self.layout.index().map_err(|e| match e {
            LayoutError::Read { source, .. } => BaseError::Io {
                what: path.display().to_string(),
                source,
            },
            e => BaseError::Invalid(e.to_string()),
        })?;
        let images: Vec<_> = index
            .manifests()
            .iter()
            .filter(|d| d.artifact_type().is_none())
            .collect();
        match images.as_slice() {
            [one] => self.layout.digest_of(one).map_err(|_| {
                BaseError::Invalid("the index.json entry has no sha256 `digest`".into())
            }),
            [] => Err(BaseError::Invalid(format!(
                "{} lists no image",
                path.display()
            ))),
            many => Err(BaseError::Invalid(format!(
                "{} lists {} images; pin one with `digest:` ({})",
                path.display(),
                many.len(),
                many.iter()
                    .map(|d| d.digest().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn manifest(&self, digest: &Sha256Digest) -> Result<Vec<u8>, BaseError> {
        let mut bytes = Vec::new();
        self.open("manifest", digest)?
            .read_to_end(&mut bytes)
            .map_err(|source| BaseError::Io {
                what: self.layout.blob_path(digest).display().to_string(),
                source,
            })?;
        Ok(bytes)
    }

    fn blob(&self, digest: &Sha256Digest) -> Result<Box<dyn Read + '_>, BaseError> {
        Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            self.open("blob", digest)?,
        )))
    }
}
