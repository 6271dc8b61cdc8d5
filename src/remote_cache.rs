//! The layer cache shared through an OCI registry (`--cache-registry REF`), like
//! BuildKit's registry cache: a fleet of CI runners fills and reads one repository.
//!
//! Each cache entry is an OCI artifact manifest tagged `cairn-layer-<key hex>` in the
//! repository `REF` names (its tag, if any, is ignored):
//!
//! ```text
//! artifactType  application/vnd.dev.cairn.layer-cache.v1
//! config        application/vnd.dev.cairn.layer-cache.entry.v1+json   the layer's record:
//!               digest, size, diff_id, entry count, compression, per-file SHA-1s
//! layers[0]     the layer blob itself, with its layer media type
//! ```
//!
//! A fetched blob is checked against its digest while it streams in (the registry client
//! does that) and against the record's size before it enters the local cache, and the
//! record must name the same blob as the manifest, so a registry can at worst make a
//! build slower, never different: the key says what the layer contains, the digest what
//! its bytes are. Registry problems never fail a build; they become warnings.

use crate::diag::{self, Diagnose};
use crate::digest::{Blake3Digest, Sha256Digest};
use crate::layers::cache::{CacheError, LayerCache, LayerKey, LayerRecord, SharedLayerStore};
use crate::oci::json::canonical_json;
use crate::oci::media_type::OCI_MANIFEST;
use crate::registry::{oci_sha256, Client, Reference, RegistryError};
use oci_spec::image::ImageManifest;
use std::borrow::Cow;
use std::fs;
use std::io::BufWriter;

pub const ARTIFACT_TYPE: &str = "application/vnd.dev.cairn.layer-cache.v1";
pub const ENTRY_MEDIA_TYPE: &str = "application/vnd.dev.cairn.layer-cache.entry.v1+json";

#[derive(Debug, thiserror::Error)]
enum RemoteError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{0}")]
    Invalid(String),
}

impl Diagnose for RemoteError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            RemoteError::Registry(e) => e.hint(),
            RemoteError::Cache(_) | RemoteError::Invalid(_) => None,
        }
    }
}
/// A registry repository holding layer cache entries.
pub struct RemoteCache {
    client: Client,
    repository: Reference,
}

impl RemoteCache {
    pub fn new(client: Client, repository: Reference) -> Self {
        RemoteCache { client, repository }
    }

    fn entry_ref(&self, key: &LayerKey) -> Reference {
        self.repository
            .with_tag(&format!("cairn-layer-{}", key.hex()))
    }

    fn try_fetch(&self, key: &LayerKey, local: &LayerCache) -> Result<bool, RemoteError> {
        let Some(manifest) = self.client.find_manifest(&self.entry_ref(key))? else {
            return Ok(false);
        };
        let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes)
            .map_err(|e| RemoteError::Invalid(format!("the entry manifest is unreadable: {e}")))?;
        let (config, [layer]) = (parsed.config(), parsed.layers().as_slice()) else {
            return Err(RemoteError::Invalid(
                "the entry manifest does not have one layer".into(),
            ));
        };
        let config_digest = oci_sha256(config)?;
        let mut record_bytes = Vec::new();
        self.client.get_blob_to(
            &self.repository,
            &config_digest,
            Some(config.size()),
            &mut record_bytes,
        )?;
        let record: LayerRecord = serde_json::from_slice(&record_bytes)
            .map_err(|e| RemoteError::Invalid(format!("the entry record is unreadable: {e}")))?;
        if oci_sha256(layer)? != record.digest || layer.size() != record.size {
            return Err(RemoteError::Invalid(
                "the entry's record and manifest name different blobs".into(),
            ));
        }
        let tmp = local.tmp_path();
        let download = (|| -> Result<Blake3Digest, RemoteError> {
            let file = fs::File::create(&tmp)
                .map_err(|e| RemoteError::Invalid(format!("{}: {e}", tmp.display())))?;
            let mut out = BufWriter::new(file);
            self.client.get_blob_to(
                &self.repository,
                &record.digest,
                Some(record.size),
                &mut out,
            )?;
            let file = out
                .into_inner()
                .map_err(|e| RemoteError::Invalid(e.error().to_string()))?;
            file.sync_all()
                .and_then(|()| Blake3Digest::of_reader(fs::File::open(&tmp)?))
                .map(|(check, _)| check)
                .map_err(|e| RemoteError::Invalid(format!("{}: {e}", tmp.display())))
        })();
        let check = match download {
            Ok(check) => check,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        local.adopt(&tmp, key, record, check)?;
        Ok(true)
    }

    fn try_publish(
        &self,
        key: &LayerKey,
        local: &LayerCache,
        record: &LayerRecord,
    ) -> Result<(), RemoteError> {
        let target = self.entry_ref(key);
        if self.client.find_manifest(&target)?.is_some() {
            return Ok(());
        }
        let blob = local.blob_path(&record.digest);
        self.client.push_blob(
            &self.repository,
            &blob,
            &record.digest,
            record.size,
            None,
            &|_| {},
        )?;
        let record_json = canonical_json(record);
        let (record_digest, _) = self
            .client
            .push_blob_bytes(&self.repository, &record_json)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": descriptor(ENTRY_MEDIA_TYPE, &record_digest, record_json.len() as u64),
            "layers": [descriptor(
                record.compression.media_type(),
                &record.digest,
                record.size,
            )],
        });
        self.client
            .put_manifest(&target, &canonical_json(&manifest), OCI_MANIFEST)?;
        Ok(())
    }
}

impl SharedLayerStore for RemoteCache {
    /// Downloads the entry for `key` into `local`; false if the registry has none or it
    /// could not be fetched (with a warning).
    fn fetch(&self, key: &LayerKey, local: &LayerCache) -> bool {
        match self.try_fetch(key, local) {
            Ok(found) => found,
            Err(e) => {
                local.warn(diag::warning(
                    &format_args!(
                        "layer cache registry {}: could not fetch an entry: {e}",
                        self.repository
                    ),
                    &e,
                ));
                false
            }
        }
    }

    /// Pushes the entry for `key` (the blob from `local`) unless the registry has it.
    /// Failures become warnings.
    fn publish(&self, key: &LayerKey, local: &LayerCache, record: &LayerRecord) {
        if let Err(e) = self.try_publish(key, local, record) {
            local.warn(diag::warning(
                &format_args!(
                    "layer cache registry {}: could not store an entry: {e}",
                    self.repository
                ),
                &e,
            ));
        }
    }
}

fn descriptor(media_type: &str, digest: &Sha256Digest, size: u64) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": digest.to_string(),
        "size": size,
    })
}
