//! Pushing an OCI image layout to a registry, in an order that never exposes an
//! incomplete image under a tag:
//!
//! 1. every blob (HEAD first, so an interrupted push resumes without re-sending what
//!    the registry has), the image's before its referrers'; each hashed before any is
//!    sent, so a blob file changed in place is refused, not pushed;
//! 2. the image manifest by digest (for an index, its child manifests first);
//! 3. the referrers the layout lists in `index.json` (manifests with a `subject`:
//!    SBOMs, attestations) by digest. A registry that answers without `OCI-Subject`
//!    lacks the Referrers API: the subject's `sha256-<hex>` referrers tag is merged
//!    instead. DSSE attestations also go into cosign's `sha256-<hex>.att` image;
//! 4. last, the tag.

use super::api::{oci_sha256, Descriptor, ManifestDoc};
use super::referrers::{update_cosign_attestations, update_referrers_tag, Envelope};
use super::{BlobPush, Client, Reference, RegistryError};
use crate::diag::Interrupted;
use crate::digest::Sha256Digest;
use crate::oci::annotation;
use crate::oci::layout::Layout;
use crate::oci::media_type::{DOCKER_MANIFEST, DSSE_ENVELOPE, OCI_MANIFEST};
use oci_spec::image::Descriptor as OciDescriptor;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Hears what a push does, e.g. to draw progress bars.
pub trait PushObserver: Sync {
    /// A blob the registry does not have starts uploading.
    fn blob_started(&self, _digest: &Sha256Digest, _size: u64) {}
    /// `n` more bytes of blob `digest` were sent (blobs upload concurrently).
    fn bytes_sent(&self, _digest: &Sha256Digest, _n: u64) {}
    /// A blob is done (uploaded, present or mounted).
    fn blob_finished(&self, _digest: &Sha256Digest, _outcome: BlobPush) {}
    /// Asked between steps: `true` stops the push before the next blob or manifest
    /// ([`Interrupted`]); nothing is tagged then.
    fn cancelled(&self) -> bool {
        false
    }
}

/// An observer that ignores everything.
pub struct Silent;
impl PushObserver for Silent {}

/// What a push did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `registry/repository[:tag]@sha256:...`
    pub reference: String,
    /// The pushed image manifest (or index) digest.
    pub digest: Sha256Digest,
    pub tag: Option<String>,
    pub blobs_uploaded: usize,
    pub blobs_present: usize,
    pub blobs_mounted: usize,
    pub bytes_uploaded: u64,
    /// Digests of the referrer manifests pushed (SBOMs, attestations).
    pub referrers: Vec<Sha256Digest>,
    /// `referrers-api`, `tag-schema`, or `none` (no referrers in the layout).
    pub referrers_via: &'static str,
    /// The referrers tags written (tag schema), one per subject.
    pub referrers_tags: Vec<String>,
    /// cosign's attestation tags written, one per subject.
    pub attestation_tags: Vec<String>,
}

/// A manifest in the layout: the media type it is listed with, its digest, bytes and
/// parsed form.
struct LayoutManifest {
    media_type: String,
    digest: Sha256Digest,
    bytes: Vec<u8>,
    parsed: ManifestDoc,
}

impl LayoutManifest {
    /// Reads the manifest `descriptor` names in `layout`, checked against its digest
    /// and size.
    fn read(layout: &Layout, descriptor: &OciDescriptor) -> Result<Self, RegistryError> {
        let digest = oci_sha256(descriptor)?;
        let bytes = layout
            .read_blob(descriptor)
            .map_err(RegistryError::ReadLayout)?;
        let media_type = descriptor.media_type().to_string();
        let parsed = ManifestDoc::parse(
            &bytes,
            &media_type,
            &layout.blob_path(&digest).display().to_string(),
        )?;
        Ok(LayoutManifest {
            media_type,
            digest,
            bytes,
            parsed,
        })
    }
}

/// Pushes the image in the OCI layout `layout` to `target` (its tag, if any, is
/// written last; a digest in `target` must be the image's). `mount_from` names a
/// repository of the same registry to mount blobs from.
pub fn push_layout(
    client: &Client,
    layout: &Path,
    target: &Reference,
    mount_from: Option<&str>,
    observer: &dyn PushObserver,
) -> Result<PushReport, RegistryError> {
    let source = Layout::open(layout);
    let index_path = source.index_path();
    let index = source.index().map_err(RegistryError::ReadLayout)?;
    let mut roots = Vec::new();
    let mut referrers = Vec::new();
    for d in index.manifests() {
        let m = LayoutManifest::read(&source, d)?;
        if m.parsed.subject().is_some() {
            referrers.push(m);
        } else {
            roots.push(m);
        }
    }
    let root = match roots.len() {
        1 => roots.remove(0),
        0 => {
            return Err(RegistryError::Layout(format!(
                "{} lists no image (only artifacts with a subject)",
                index_path.display()
            )))
        }
        n => {
            return Err(RegistryError::Layout(format!(
                "{} lists {n} images; cairn push pushes a layout holding one image (or one index)",
                index_path.display()
            )))
        }
    };
    if let Some(pinned) = &target.digest {
        if *pinned != root.digest {
            // Found before anything is sent: the mismatch is local, not the registry's.
            return Err(RegistryError::PinnedDigestMismatch {
                layout: layout.to_path_buf(),
                target: target.to_string(),
                actual: root.digest,
            });
        }
    }
    // Children of an index, depth first, so each is pushed before what lists it.
    let mut image_manifests = Vec::new();
    collect_children(&source, root, &mut image_manifests, 0)?;

    client.ping_with(target, true)?;

    let mut report = PushReport {
        reference: String::new(),
        digest: image_manifests
            .last()
            .map(|m| m.digest)
            .expect("the root is collected"),
        tag: target.tag.clone(),
        blobs_uploaded: 0,
        blobs_present: 0,
        blobs_mounted: 0,
        bytes_uploaded: 0,
        referrers: Vec::new(),
        referrers_via: "none",
        referrers_tags: Vec::new(),
        attestation_tags: Vec::new(),
    };
    let repository = Reference {
        tag: None,
        digest: None,
        ..target.clone()
    };

    // 1. Blobs, a few at a time (uploads are bound by latency more than bandwidth).
    let mut seen = BTreeSet::new();
    let mut blobs = Vec::new();
    for m in image_manifests.iter().chain(referrers.iter()) {
        for blob in m.parsed.blobs() {
            let digest = oci_sha256(blob)?;
            if !seen.insert(digest) {
                continue;
            }
            let path = source.blob_path(&digest);
            match std::fs::metadata(&path) {
                Ok(meta) if meta.len() == blob.size() => {}
                Ok(meta) => {
                    return Err(RegistryError::Layout(format!(
                        "{}: {} bytes, but manifest {} says {}: the layout is corrupt",
                        path.display(),
                        meta.len(),
                        m.digest,
                        blob.size()
                    )))
                }
                Err(error) => return Err(RegistryError::Io { path, error }),
            }
            blobs.push((digest, blob.size(), path));
        }
    }
    // What goes out must be what the manifests name: every blob is hashed (on all
    // cores) before the first upload, so a file changed in place is refused here, by
    // name, and nothing of the image reaches the registry. (A change after this check
    // is caught by the registry, which checks each upload against its digest.)
    blobs
        .par_iter()
        .try_for_each(|(digest, size, _)| source.check_blob_file(digest, *size))
        .map_err(RegistryError::ReadLayout)?;
    let outcomes = push_blobs(client, &repository, &blobs, mount_from, observer)?;
    for ((_, size, _), outcome) in blobs.iter().zip(outcomes) {
        match outcome {
            BlobPush::Present => report.blobs_present += 1,
            BlobPush::Mounted => report.blobs_mounted += 1,
            BlobPush::Uploaded => {
                report.blobs_uploaded += 1;
                report.bytes_uploaded += size;
            }
        }
    }

    // 2. Image manifests by digest.
    stop_if_cancelled(observer)?;
    for m in &image_manifests {
        client.put_manifest(&repository.with_digest(m.digest), &m.bytes, &m.media_type)?;
    }

    // 3. Referrers by digest; the tag schema where the Referrers API is missing.
    stop_if_cancelled(observer)?;
    attach_referrers(client, &repository, &referrers, &mut report)?;

    // 4. The tag, last.
    stop_if_cancelled(observer)?;
    let root = image_manifests.last().expect("the root is collected");
    if let Some(tag) = &target.tag {
        client.put_manifest(&repository.with_tag(tag), &root.bytes, &root.media_type)?;
    }
    report.reference = Reference {
        digest: Some(root.digest),
        ..target.clone()
    }
    .to_string();
    Ok(report)
}

/// Pushes the referrers by digest and, for a registry without the Referrers API,
/// merges them into each subject's referrers tag; DSSE attestations also go into
/// cosign's `.att` image of their subject. Records what it did in `report`.
fn attach_referrers(
    client: &Client,
    repository: &Reference,
    referrers: &[LayoutManifest],
    report: &mut PushReport,
) -> Result<(), RegistryError> {
    let mut by_subject: BTreeMap<Sha256Digest, Vec<&LayoutManifest>> = BTreeMap::new();
    for r in referrers {
        let subject = oci_sha256(r.parsed.subject().expect("referrers have a subject"))?;
        by_subject.entry(subject).or_default().push(r);
    }
    let mut api_supported = true;
    for (subject, listed) in &by_subject {
        for r in listed {
            let put =
                client.put_manifest(&repository.with_digest(r.digest), &r.bytes, &r.media_type)?;
            if put.oci_subject.as_deref() != Some(subject.to_string().as_str()) {
                api_supported = false;
            }
            report.referrers.push(r.digest);
        }
    }
    if !referrers.is_empty() {
        report.referrers_via = if api_supported {
            "referrers-api"
        } else {
            "tag-schema"
        };
    }
    for (subject, listed) in &by_subject {
        if !api_supported {
            let descriptors: Vec<Descriptor> = listed
                .iter()
                .map(|r| {
                    r.parsed
                        .referrer_descriptor(&r.media_type, &r.digest, r.bytes.len() as u64)
                })
                .collect();
            report.referrers_tags.push(update_referrers_tag(
                client,
                repository,
                subject,
                &descriptors,
            )?);
        }
        let envelopes: Vec<Envelope> = listed
            .iter()
            .filter(|r| {
                r.parsed.artifact_type().map(|t| t.to_string()).as_deref() == Some(DSSE_ENVELOPE)
            })
            .flat_map(|r| {
                let predicate_type = r
                    .parsed
                    .annotations()
                    .remove(annotation::PREDICATE_TYPE)
                    .unwrap_or_default();
                r.parsed
                    .layers()
                    .iter()
                    .filter(|l| l.media_type().to_string() == DSSE_ENVELOPE)
                    .map(move |l| {
                        Ok(Envelope {
                            digest: oci_sha256(l)?,
                            size: l.size(),
                            predicate_type: predicate_type.clone(),
                        })
                    })
            })
            .collect::<Result<_, RegistryError>>()?;
        if !envelopes.is_empty() {
            report.attestation_tags.push(update_cosign_attestations(
                client, repository, subject, &envelopes,
            )?);
        }
    }
    Ok(())
}

/// Appends `manifest`'s child manifests (recursively, for an index) and then
/// `manifest` itself.
fn collect_children(
    source: &Layout,
    manifest: LayoutManifest,
    out: &mut Vec<LayoutManifest>,
    depth: usize,
) -> Result<(), RegistryError> {
    let media_type = manifest.media_type.clone();
    if manifest.parsed.is_index() {
        if depth > 4 {
            return Err(RegistryError::Layout(format!(
                "index {} nests more than 4 levels deep",
                manifest.digest
            )));
        }
        for child in manifest.parsed.children() {
            let child = LayoutManifest::read(source, child)?;
            collect_children(source, child, out, depth + 1)?;
        }
    } else if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
        return Err(RegistryError::Layout(format!(
            "manifest {} has media type {media_type}, which cairn push does not know",
            manifest.digest
        )));
    }
    out.push(manifest);
    Ok(())
}

/// Blob uploads in flight at once.
const PARALLEL_UPLOADS: usize = 4;

/// HEADs and, where missing, uploads each blob, [`PARALLEL_UPLOADS`] at a time; returns
/// what happened to each, in order. The first error stops the workers from starting
/// more blobs.
fn push_blobs(
    client: &Client,
    repository: &Reference,
    blobs: &[(Sha256Digest, u64, PathBuf)],
    mount_from: Option<&str>,
    observer: &dyn PushObserver,
) -> Result<Vec<BlobPush>, RegistryError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<std::sync::Mutex<Option<Result<BlobPush, RegistryError>>>> =
        blobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    let push_one = |(digest, size, path): &(Sha256Digest, u64, PathBuf)| {
        if client.blob_exists(repository, digest)? {
            return Ok(BlobPush::Present);
        }
        observer.blob_started(digest, *size);
        let sent = |n| observer.bytes_sent(digest, n);
        client.upload_file(repository, path, digest, *size, mount_from, &sent)
    };
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_UPLOADS.min(blobs.len()) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= blobs.len() || failed.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let result = stop_if_cancelled(observer).and_then(|()| push_one(&blobs[i]));
                match &result {
                    Ok(outcome) => observer.blob_finished(&blobs[i].0, *outcome),
                    Err(_) => failed.store(true, std::sync::atomic::Ordering::SeqCst),
                }
                *results[i].lock().expect("result lock") = Some(result);
            });
        }
    });
    let results: Vec<Option<Result<BlobPush, RegistryError>>> = results
        .into_iter()
        .map(|slot| slot.into_inner().expect("result lock"))
        .collect();
    // Slots stay empty only for blobs a failure kept from starting.
    let mut outcomes = Vec::with_capacity(blobs.len());
    for result in results.into_iter().flatten() {
        outcomes.push(result?);
    }
    assert_eq!(
        outcomes.len(),
        blobs.len(),
        "every blob ran or an error was returned"
    );
    Ok(outcomes)
}

fn stop_if_cancelled(observer: &dyn PushObserver) -> Result<(), RegistryError> {
    if observer.cancelled() {
        Err(Interrupted.into())
    } else {
        Ok(())
    }
}
