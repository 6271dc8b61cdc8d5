//! A base image in a registry, read through cairn's registry client. Blobs are
//! streamed to a temporary file (digest-checked by the client as they arrive) and
//! read from there, so memory stays bounded whatever the layer size.

use super::{BaseError, BaseStore};
use crate::digest::Sha256Digest;
use crate::recipe::ImageRef;
use crate::registry::{Client, Reference, RegistryError};
use std::io::{BufReader, Read, Seek};
use std::path::PathBuf;

pub struct RegistryStore<'c> {
    client: &'c Client,
    image: Reference,
    /// Where downloaded blobs are kept while they are read (the build's scratch space).
    scratch: PathBuf,
}

impl<'c> RegistryStore<'c> {
    pub fn new(client: &'c Client, image: &ImageRef, scratch: PathBuf) -> Self {
        RegistryStore {
            client,
            image: Reference {
                registry: image.registry.clone(),
                repository: image.repository.clone(),
                tag: image.tag.clone(),
                digest: None,
            },
            scratch,
        }
    }
}

fn registry_error(
    what: &'static str,
    digest: Option<&Sha256Digest>,
    e: RegistryError,
) -> BaseError {
    match (e, digest) {
        (RegistryError::NotFound { .. }, Some(digest)) => BaseError::Missing {
            what,
            digest: *digest,
        },
        (e, _) => BaseError::Registry(e),
    }
}

impl BaseStore for RegistryStore<'_> {
    /// The digest the tag names now.
    fn resolve(&self) -> Result<Sha256Digest, BaseError> {
        self.client
            .get_manifest(&self.image)
            .map(|m| m.digest)
            .map_err(|e| registry_error("manifest", None, e))
    }

    fn manifest(&self, digest: &Sha256Digest) -> Result<Vec<u8>, BaseError> {
        self.client
            .get_manifest(&self.image.with_digest(*digest))
            .map(|m| m.bytes)
            .map_err(|e| registry_error("manifest", Some(digest), e))
    }

    fn blob(&self, digest: &Sha256Digest) -> Result<Box<dyn Read + '_>, BaseError> {
        let io = |source| BaseError::Io {
            what: format!("a download of blob {digest} in {}", self.scratch.display()),
            source,
        };
        let mut file = tempfile::tempfile_in(&self.scratch).map_err(io)?;
        self.client
            .get_blob_to(&self.image, digest, None, &mut file)
            .map_err(|e| registry_error("blob", Some(digest), e))?;
        file.rewind().map_err(io)?;
        Ok(Box::new(BufReader::with_capacity(1 << 20, file)))
    }
}
