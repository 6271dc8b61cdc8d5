//! Pulling an image and its referrers into a standard OCI image layout.
//!
//! The layout's `index.json` lists the image (annotated with its tag as
//! `org.opencontainers.image.ref.name`) and then every referrer of it (SBOMs,
//! attestations), the same shape `cairn build` writes, so `cairn verify`, `inspect`
//! and any OCI tool read it. Every manifest and blob is checked against its digest
//! as it arrives; the layout appears only when complete (see [`crate::oci::layout`]).

use super::api::{oci_sha256, Descriptor, ManifestDoc};
use super::{Client, Reference, RegistryError};
use crate::digest::Sha256Digest;
use crate::oci::annotation;
use crate::oci::json::canonical_json;
use crate::oci::layout::LayoutWriter;
use crate::oci::media_type::OCI_INDEX;
use oci_spec::image::Descriptor as OciDescriptor;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a pull fetched.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    pub layout: PathBuf,
    /// The image manifest (or index) digest.
    pub digest: Sha256Digest,
    pub media_type: String,
    pub blobs: usize,
    pub bytes: u64,
    /// Referrer manifests pulled (SBOMs, attestations).
    pub referrers: usize,
    /// Whether the registry answered the Referrers API (else the tag schema was read).
    pub referrers_api: bool,
}

struct Puller<'a> {
    client: &'a Client,
    repository: &'a Reference,
    writer: LayoutWriter,
    blobs_done: BTreeSet<Sha256Digest>,
    bytes: u64,
}

impl Puller<'_> {
    /// Fetches a manifest by digest and stores it; returns its bytes and parsed form.
    fn manifest(
        &mut self,
        digest: Sha256Digest,
    ) -> Result<(super::Manifest, ManifestDoc), RegistryError> {
        let manifest = self
            .client
            .get_manifest(&self.repository.with_digest(digest))?;
        self.store_manifest(manifest)
    }

    fn store_manifest(
        &mut self,
        manifest: super::Manifest,
    ) -> Result<(super::Manifest, ManifestDoc), RegistryError> {
        let parsed = ManifestDoc::parse(
            &manifest.bytes,
            &manifest.media_type,
            &format!("manifest {}", manifest.digest),
        )?;
        if self.blobs_done.insert(manifest.digest) {
            self.writer.put_blob(&manifest.bytes)?;
        }
        Ok((manifest, parsed))
    }

    /// Fetches and stores a blob, streamed to disk and verified.
    fn blob(&mut self, descriptor: &OciDescriptor) -> Result<(), RegistryError> {
        let digest = oci_sha256(descriptor)?;
        if !self.blobs_done.insert(digest) {
            return Ok(());
        }
        // A download that breaks off starts again into a fresh file (bounded).
        let mut attempt = 1;
        let n = loop {
            let mut w = self.writer.blob_writer()?;
            match self
                .client
                .get_blob_to(self.repository, &digest, Some(descriptor.size()), &mut w)
            {
                Ok(n) => {
                    self.writer.commit_blob(w)?;
                    break n;
                }
                Err(e) if e.is_transient() && attempt < self.client.options().max_attempts => {
                    w.discard().map_err(|error| {
                        RegistryError::Layout(format!(
                            "cannot remove the partial download of {digest}: {error}"
                        ))
                    })?;
                    attempt += 1;
                    let wait =
                        self.client.options().initial_backoff * (1u32 << (attempt - 2).min(16));
                    std::thread::sleep(wait);
                }
                Err(e) => return Err(e),
            }
        };
        self.bytes += n;
        Ok(())
    }

    /// Fetches everything below a manifest: config and layers, or an index's children.
    /// Returns the digests of the image manifests (for their referrers).
    fn below(
        &mut self,
        manifest: &super::Manifest,
        parsed: &ManifestDoc,
        depth: usize,
        images: &mut Vec<Sha256Digest>,
    ) -> Result<(), RegistryError> {
        images.push(manifest.digest);
        if parsed.is_index() {
            if depth > 4 {
                return Err(RegistryError::Layout(format!(
                    "index {} nests more than 4 levels deep",
                    manifest.digest
                )));
            }
            for child in parsed.children() {
                let (m, p) = self.manifest(oci_sha256(child)?)?;
                self.below(&m, &p, depth + 1, images)?;
            }
        } else {
            for blob in parsed.blobs() {
                self.blob(blob)?;
            }
        }
        Ok(())
    }
}

/// Pulls `image` (by tag or digest), everything it references, and its referrers
/// into a new OCI layout at `dest` (replacing one that is there, atomically).
pub fn pull_to_layout(
    client: &Client,
    image: &Reference,
    dest: &Path,
) -> Result<PullReport, RegistryError> {
    let name = dest.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        RegistryError::Layout(format!("{} has no directory name", dest.display()))
    })?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let writer = LayoutWriter::begin(parent, name)?;
    let repository = Reference {
        tag: None,
        digest: None,
        ..image.clone()
    };
    let mut puller = Puller {
        client,
        repository: &repository,
        writer,
        blobs_done: BTreeSet::new(),
        bytes: 0,
    };
    let root = client.get_manifest(image)?;
    let (root, parsed) = puller.store_manifest(root)?;
    let mut images = Vec::new();
    puller.below(&root, &parsed, 0, &mut images)?;

    let mut annotations = BTreeMap::new();
    if let Some(tag) = &image.tag {
        annotations.insert(annotation::REF_NAME.to_string(), tag.clone());
    }
    let mut listed = vec![Descriptor {
        media_type: root.media_type.clone(),
        digest: root.digest.to_string(),
        size: root.bytes.len() as u64,
        artifact_type: None,
        annotations,
        platform: None,
    }];
    let mut referrers_api = true;
    let mut referrers = 0;
    for subject in &images {
        let (found, api) = client.referrers(&repository, subject, None)?;
        referrers_api &= api;
        for d in found {
            if listed.iter().any(|l| l.digest == d.digest().as_ref()) {
                continue;
            }
            let (m, p) = puller.manifest(oci_sha256(&d)?)?;
            if p.subject().map(|s| s.digest().to_string()) != Some(subject.to_string()) {
                return Err(RegistryError::Protocol {
                    url: image.to_string(),
                    detail: format!(
                        "referrer {} listed for {subject} names another subject",
                        m.digest
                    ),
                });
            }
            for blob in p.blobs() {
                puller.blob(blob)?;
            }
            listed.push(Descriptor {
                annotations: BTreeMap::new(),
                ..p.referrer_descriptor(&m.media_type, &m.digest, m.bytes.len() as u64)
            });
            referrers += 1;
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": listed,
    });
    let blobs = puller.blobs_done.len();
    let bytes = puller.bytes;
    let layout = puller.writer.publish(&canonical_json(&index), &[], &[])?;
    Ok(PullReport {
        layout,
        digest: root.digest,
        media_type: root.media_type,
        blobs,
        bytes,
        referrers,
        referrers_api,
    })
}

/// An image pulled into a temporary directory, which is removed when this is dropped:
/// what `cairn verify REF` and `cairn trace REF` read.
pub struct TempPull {
    pub report: PullReport,
    _dir: tempfile::TempDir,
}

/// [`pull_to_layout`] into a new temporary directory.
pub fn pull_to_temp(client: &Client, image: &Reference) -> Result<TempPull, RegistryError> {
    let dir = tempfile::tempdir().map_err(|error| RegistryError::Io {
        path: std::env::temp_dir(),
        error,
    })?;
    let report = pull_to_layout(client, image, &dir.path().join("image"))?;
    Ok(TempPull { report, _dir: dir })
}
