//! A base image in an OCI image layout directory.

use super::{BaseError, BaseStore};
use crate::digest::Sha256Digest;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::PathBuf;

pub struct LayoutStore {
    dir: PathBuf,
}

impl LayoutStore {
    pub fn new(dir: PathBuf) -> Self {
        LayoutStore { dir }
    }

    fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }

    fn open(&self, what: &'static str, digest: &Sha256Digest) -> Result<File, BaseError> {
        let path = self.blob_path(digest);
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
        let path = self.dir.join("index.json");
        let bytes = std::fs::read(&path).map_err(|source| BaseError::Io {
            what: path.display().to_string(),
            source,
        })?;
        let index: serde_json::Value = super::parse_json(&path.display().to_string(), &bytes)?;
        let images: Vec<&serde_json::Value> = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d.get("artifactType").is_none())
            .collect();
        match images.as_slice() {
            [one] => super::descriptor_digest(one, "the index.json entry"),
            [] => Err(BaseError::Invalid(format!(
                "{} lists no image",
                path.display()
            ))),
            many => Err(BaseError::Invalid(format!(
                "{} lists {} images; pin one with `digest:` ({})",
                path.display(),
                many.len(),
                many.iter()
                    .filter_map(|d| d["digest"].as_str())
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
                what: self.blob_path(digest).display().to_string(),
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
