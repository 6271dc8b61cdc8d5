//! The distribution-spec operations: manifests, blobs and referrers, one method each.

use super::client::{registry_message, Body, Client, Request, Response};
use super::{referrers_tag, Reference, RegistryError};
use crate::digest::{HashingWriter, Sha256Digest};
use crate::oci::media_type::{self, OCI_INDEX, OCI_MANIFEST};
use oci_spec::image::{Descriptor as OciDescriptor, ImageIndex, ImageManifest, MediaType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use ureq::http::{header, Method, StatusCode};

/// Manifests larger than this are refused (distribution's own limit is 4 MiB).
const MANIFEST_LIMIT: u64 = 4 << 20;

/// A manifest as the registry served it, its digest checked.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Sha256Digest,
}

/// What `put_manifest` learnt.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Sha256Digest,
    /// The `OCI-Subject` header: present when the registry supports the Referrers
    /// API and the manifest has a `subject`.
    pub oci_subject: Option<String>,
}

/// What `push_blob` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobPush {
    /// The repository had it (HEAD): nothing sent.
    Present,
    /// Mounted from another repository of the same registry: nothing sent.
    Mounted,
    /// Uploaded.
    Uploaded,
}

/// An OCI content descriptor (with the fields the referrers index carries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    /// The digest, parsed (only sha256 is supported).
    pub fn sha256(&self) -> Result<Sha256Digest, RegistryError> {
        sha256_of(&self.digest)
    }
}

/// The sha256 digest an oci-spec descriptor names (only sha256 is supported).
pub fn oci_sha256(descriptor: &OciDescriptor) -> Result<Sha256Digest, RegistryError> {
    sha256_of(descriptor.digest().as_ref())
}

fn sha256_of(digest: &str) -> Result<Sha256Digest, RegistryError> {
    digest.parse().map_err(|_| {
        RegistryError::Layout(format!("descriptor digest {digest} is not a sha256 digest"))
    })
}

/// Where the bytes of a blob to upload are.
#[derive(Clone, Copy)]
enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

impl Client {
    /// Pings `/v2/`: checks that a registry answers there, authenticating (for pull
    /// access to `image`'s repository) if it asks.
    pub fn ping(&self, image: &Reference) -> Result<(), RegistryError> {
        self.ping_with(image, false)
    }

    /// [`ping`](Client::ping), authenticating for push access when `push`, so that a
    /// bearer token covers the uploads that follow.
    pub(crate) fn ping_with(&self, image: &Reference, push: bool) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.origin(image.api_host())?);
        let mut req = Request::new(Method::GET, url, image);
        req.push = push;
        let resp = self.send(&req)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(&req, resp))
        }
    }

    /// Fetches the manifest `image` names (by digest if it has one, else by tag) and
    /// checks its digest: against the reference's digest, and against the registry's
    /// `Docker-Content-Digest` header.
    pub fn get_manifest(&self, image: &Reference) -> Result<Manifest, RegistryError> {
        self.find_manifest(image)?
            .ok_or_else(|| RegistryError::NotFound {
                reference: image.to_string(),
                message: String::new(),
            })
    }

    /// [`get_manifest`](Client::get_manifest), but `None` when the registry has no such
    /// manifest (404).
    pub fn find_manifest(&self, image: &Reference) -> Result<Option<Manifest>, RegistryError> {
        let url = format!(
            "{}/manifests/{}",
            self.repo_url(image)?,
            image.manifest_ref()
        );
        let req = Request::new(Method::GET, url.clone(), image)
            .header("Accept", media_type::MANIFESTS.join(", "));
        let mut resp = self.send(&req)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if resp.status() != StatusCode::OK {
            return Err(self.status_error(&req, resp));
        }
        let header_digest = header_str(&resp, "Docker-Content-Digest");
        let content_type = header_str(&resp, header::CONTENT_TYPE.as_str());
        let bytes = self.read_manifest_body(&mut resp, &url, "the manifest body")?;
        let digest = Sha256Digest::of(&bytes);
        let what = format!("manifest for {image}");
        if let Some(expected) = &image.digest {
            if *expected != digest {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        if let Some(claimed) = header_digest.filter(|d| d.starts_with("sha256:")) {
            if claimed != digest.to_string() {
                return Err(RegistryError::DigestMismatch {
                    what,
                    expected: claimed,
                    actual: digest.to_string(),
                });
            }
        }
        let media_type = media_type_of(&bytes, content_type.as_deref()).ok_or_else(|| {
            RegistryError::Protocol {
                url: super::client::redact_url(&url),
                detail: format!(
                    "the manifest is not OCI or Docker v2 JSON (Content-Type {:?}): {}",
                    content_type.unwrap_or_default(),
                    registry_message(&bytes)
                ),
            }
        })?;
        Ok(Some(Manifest {
            bytes,
            media_type,
            digest,
        }))
    }

    /// Uploads a manifest under `target`'s tag, or its digest when it has no tag (or
    /// [`Reference::manifest_ref`] when both). Returns the digest the registry
    /// confirmed.
    pub fn put_manifest(
        &self,
        target: &Reference,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<PutManifest, RegistryError> {
        let digest = Sha256Digest::of(bytes);
        if let Some(expected) = &target.digest {
            if *expected != digest {
                return Err(RegistryError::DigestMismatch {
                    what: format!("manifest to push as {target}"),
                    expected: expected.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let reference = match (&target.tag, &target.digest) {
            (Some(tag), _) => tag.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => digest.to_string(),
        };
        let url = format!("{}/manifests/{reference}", self.repo_url(target)?);
        let req = Request::new(Method::PUT, url, target)
            .header("Content-Type", media_type)
            .body(Body::Bytes(bytes));
        let resp = self.send(&req)?;
        if !resp.status().is_success() {
            return Err(self.status_error(&req, resp));
        }
        if let Some(claimed) =
            header_str(&resp, "Docker-Content-Digest").filter(|d| d.starts_with("sha256:"))
        {
            if claimed != digest.to_string() {
                return Err(RegistryError::DigestMismatch {
                    what: format!("manifest pushed as {target}"),
                    expected: digest.to_string(),
                    actual: claimed,
                });
            }
        }
        Ok(PutManifest {
            digest,
            oci_subject: header_str(&resp, "OCI-Subject"),
        })
    }

    /// Whether the repository has the blob (HEAD).
    pub fn blob_exists(
        &self,
        image: &Reference,
        digest: &Sha256Digest,
    ) -> Result<bool, RegistryError> {
        let url = format!("{}/blobs/{digest}", self.repo_url(image)?);
        let req = Request::new(Method::HEAD, url, image);
        let resp = self.send(&req)?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&req, resp)),
        }
    }

    /// Streams the blob into `out`, checking its digest (and `size`, when given) as
    /// it arrives. On a mismatch, `out` has received the bad bytes: write to a
    /// temporary place and keep it only on success. Returns the size.
    pub fn get_blob_to(
        &self,
        image: &Reference,
        digest: &Sha256Digest,
        size: Option<u64>,
        out: &mut dyn Write,
    ) -> Result<u64, RegistryError> {
        let url = format!("{}/blobs/{digest}", self.repo_url(image)?);
        let req = Request::new(Method::GET, url.clone(), image);
        let mut resp = self.send(&req)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                reference: format!("blob {digest} in {}", image.repository_name()),
                message: String::new(),
            });
        }
        if resp.status() != StatusCode::OK {
            return Err(self.status_error(&req, resp));
        }
        let mut hashing = HashingWriter::new(out);
        let mut reader = self.body_reader(&mut resp);
        let limit = size.map_or(u64::MAX, |s| s + 1);
        std::io::copy(&mut std::io::Read::take(&mut reader, limit), &mut hashing)
            .map_err(|e| self.transfer_error(&Method::GET, &url, 1, ureq::Error::Io(e)))?;
        let (actual, len, _) = hashing.finish();
        if actual != *digest || size.is_some_and(|s| s != len) {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob ({len} bytes)"),
                expected: match size {
                    Some(s) => format!("{digest} ({s} bytes)"),
                    None => digest.to_string(),
                },
                actual: actual.to_string(),
            });
        }
        Ok(len)
    }

    /// Uploads the blob in the file `path` (whose content has `digest` and `size`)
    /// unless the repository has it. With `mount_from` (a repository of the same
    /// registry that has the blob), asks the registry to mount it instead; a registry
    /// that does not mount answers with an upload, which is then used. Blobs up to
    /// [`ClientOptions::chunk_size`](super::ClientOptions::chunk_size) go in one PUT,
    /// larger ones in PATCH chunks; either way read from the file as sent. A failed
    /// upload is restarted (bounded, with backoff). `progress` hears of each byte
    /// sent.
    pub fn push_blob(
        &self,
        image: &Reference,
        path: &Path,
        digest: &Sha256Digest,
        size: u64,
        mount_from: Option<&str>,
        progress: &dyn Fn(u64),
    ) -> Result<BlobPush, RegistryError> {
        self.push_blob_from(
            image,
            Source::File(path),
            digest,
            size,
            mount_from,
            progress,
        )
    }

    /// [`push_blob`](Client::push_blob) for a small blob held in memory (a config, an
    /// index); its digest is computed here.
    pub fn push_blob_bytes(
        &self,
        image: &Reference,
        bytes: &[u8],
    ) -> Result<(Sha256Digest, BlobPush), RegistryError> {
        let digest = Sha256Digest::of(bytes);
        let outcome = self.push_blob_from(
            image,
            Source::Bytes(bytes),
            &digest,
            bytes.len() as u64,
            None,
            &|_| {},
        )?;
        Ok((digest, outcome))
    }

    fn push_blob_from(
        &self,
        image: &Reference,
        source: Source<'_>,
        digest: &Sha256Digest,
        size: u64,
        mount_from: Option<&str>,
        progress: &dyn Fn(u64),
    ) -> Result<BlobPush, RegistryError> {
        if self.blob_exists(image, digest)? {
            return Ok(BlobPush::Present);
        }
        self.upload_with_retries(image, source, digest, size, mount_from, progress)
    }

    /// Uploads (or mounts) the blob in the file `path` without asking first whether
    /// the repository has it; for callers that just did.
    pub(crate) fn upload_file(
        &self,
        image: &Reference,
        path: &Path,
        digest: &Sha256Digest,
        size: u64,
        mount_from: Option<&str>,
        progress: &dyn Fn(u64),
    ) -> Result<BlobPush, RegistryError> {
        self.upload_with_retries(
            image,
            Source::File(path),
            digest,
            size,
            mount_from,
            progress,
        )
    }

    fn upload_with_retries(
        &self,
        image: &Reference,
        source: Source<'_>,
        digest: &Sha256Digest,
        size: u64,
        mount_from: Option<&str>,
        progress: &dyn Fn(u64),
    ) -> Result<BlobPush, RegistryError> {
        let mut attempt = 1;
        loop {
            match self.upload_blob(image, source, digest, size, mount_from, progress) {
                Err(e) if e.is_transient() && attempt < self.options().max_attempts.max(1) => {
                    std::thread::sleep(
                        self.options().initial_backoff * (1u32 << (attempt - 1).min(16)),
                    );
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn upload_blob(
        &self,
        image: &Reference,
        source: Source<'_>,
        digest: &Sha256Digest,
        size: u64,
        mount_from: Option<&str>,
        progress: &dyn Fn(u64),
    ) -> Result<BlobPush, RegistryError> {
        let mut url = format!("{}/blobs/uploads/", self.repo_url(image)?);
        if let Some(from) = mount_from {
            url.push_str(&format!(
                "?mount={digest}&from={}",
                super::client::query_escape(from)
            ));
        }
        let req = Request::new(Method::POST, url, image).body(Body::Bytes(&[]));
        let resp = self.send(&req)?;
        if resp.status() == StatusCode::CREATED && mount_from.is_some() {
            return Ok(BlobPush::Mounted);
        }
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(&req, resp));
        }
        let mut location = self.location(image, &req, &resp)?;
        let part = |offset: u64, len: u64| match source {
            Source::File(path) => Body::File {
                path,
                offset,
                len,
                progress,
            },
            Source::Bytes(bytes) => Body::Bytes(&bytes[offset as usize..(offset + len) as usize]),
        };
        let chunk = self.options().chunk_size.max(1);
        if size > chunk {
            let mut offset = 0;
            while offset < size {
                let len = chunk.min(size - offset);
                let req = Request::new(Method::PATCH, location.clone(), image)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Range", format!("{offset}-{}", offset + len - 1))
                    .body(part(offset, len))
                    .no_retry();
                let resp = self.send(&req)?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(self.status_error(&req, resp));
                }
                location = self.location(image, &req, &resp)?;
                offset += len;
            }
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let put_url = format!("{location}{sep}digest={digest}");
        let body = if size > chunk {
            Body::Bytes(&[])
        } else {
            part(0, size)
        };
        let req = Request::new(Method::PUT, put_url, image)
            .header("Content-Type", "application/octet-stream")
            .body(body)
            .no_retry();
        let resp = self.send(&req)?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error(&req, resp));
        }
        Ok(BlobPush::Uploaded)
    }

    fn location(
        &self,
        image: &Reference,
        req: &Request<'_>,
        resp: &Response,
    ) -> Result<String, RegistryError> {
        let location =
            header_str(resp, header::LOCATION.as_str()).ok_or_else(|| RegistryError::Protocol {
                url: super::client::redact_url(&req.url),
                detail: format!(
                    "HTTP {} without a Location header for the upload",
                    resp.status().as_u16()
                ),
            })?;
        self.resolve_location(image, &location)
    }

    /// The manifests that refer to `subject` (in `image`'s repository), optionally only
    /// those of `artifact_type`. Asks the Referrers API; a registry without it
    /// (404) is read through the `sha256-<hex>` tag schema instead. Returns the
    /// descriptors and whether the Referrers API answered.
    pub fn referrers(
        &self,
        image: &Reference,
        subject: &Sha256Digest,
        artifact_type: Option<&str>,
    ) -> Result<(Vec<OciDescriptor>, bool), RegistryError> {
        let mut url = format!("{}/referrers/{subject}", self.repo_url(image)?);
        if let Some(t) = artifact_type {
            url.push_str(&format!("?artifactType={}", super::client::query_escape(t)));
        }
        let req = Request::new(Method::GET, url.clone(), image).header("Accept", OCI_INDEX);
        let mut resp = self.send(&req)?;
        let api = match resp.status() {
            StatusCode::OK => true,
            StatusCode::NOT_FOUND => false,
            _ => return Err(self.status_error(&req, resp)),
        };
        let (bytes, from) = if api {
            let bytes = self.read_manifest_body(&mut resp, &url, "the referrers index")?;
            (bytes, url)
        } else {
            let tag = image.with_tag(&referrers_tag(subject));
            match self.find_manifest(&tag)? {
                Some(m) => (m.bytes, tag.to_string()),
                None => return Ok((Vec::new(), false)),
            }
        };
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
                url: super::client::redact_url(&from),
                detail: format!("the referrers index is not an OCI index: {e}"),
            })?;
        let mut found = index.manifests().clone();
        if let Some(t) = artifact_type {
            found.retain(|d| d.artifact_type().as_ref().map(MediaType::as_ref) == Some(t));
        }
        Ok((found, api))
    }
}

/// Repositories or tags asked for per page (distribution's default page is 100).
const PAGE: u32 = 1000;

/// Pages followed at most in one listing: a registry whose `Link` never ends is
/// refused rather than followed forever.
const MAX_PAGES: usize = 10_000;

impl Client {
    /// Every repository of the registry `registry` (`host[:port]`), from
    /// `/v2/_catalog`, following its pages.
    pub fn catalog(&self, registry: &str) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let scope = Reference {
            registry: registry.to_string(),
            repository: String::new(),
            tag: None,
            digest: None,
        };
        let first = format!("{}/v2/_catalog?n={PAGE}", self.origin(scope.api_host())?);
        let mut names = Vec::new();
        self.pages(&scope, first, "the catalog", |bytes| {
            let page: Catalog = serde_json::from_slice(bytes)?;
            names.extend(page.repositories.unwrap_or_default());
            Ok(())
        })?;
        Ok(names)
    }

    /// Every tag of `image`'s repository, from `/v2/<name>/tags/list`, following its
    /// pages; none for a repository the registry does not have.
    pub fn tags(&self, image: &Reference) -> Result<Vec<String>, RegistryError> {
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let first = format!("{}/tags/list?n={PAGE}", self.repo_url(image)?);
        let mut tags = Vec::new();
        self.pages(image, first, "the tag list", |bytes| {
            let page: Tags = serde_json::from_slice(bytes)?;
            tags.extend(page.tags.unwrap_or_default());
            Ok(())
        })?;
        Ok(tags)
    }

    /// GETs `url` and each page its `Link: <...>; rel="next"` names, handing every
    /// body to `page`; `what` names the listing in errors. A 404 is an empty listing.
    fn pages(
        &self,
        image: &Reference,
        mut url: String,
        what: &str,
        mut page: impl FnMut(&[u8]) -> Result<(), serde_json::Error>,
    ) -> Result<(), RegistryError> {
        for _ in 0..MAX_PAGES {
            let req = Request::new(Method::GET, url.clone(), image);
            let mut resp = self.send(&req)?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(());
            }
            if resp.status() != StatusCode::OK {
                return Err(self.status_error(&req, resp));
            }
            let next = header_str(&resp, header::LINK.as_str()).and_then(|l| next_link(&l));
            let bytes = self.read_manifest_body(&mut resp, &url, what)?;
            page(&bytes).map_err(|e| RegistryError::Protocol {
                url: super::client::redact_url(&url),
                detail: format!("{what} is not the JSON the distribution spec gives: {e}"),
            })?;
            match next {
                Some(next) => url = self.resolve_location(image, &next)?,
                None => return Ok(()),
            }
        }
        Err(RegistryError::Protocol {
            url: super::client::redact_url(&url),
            detail: format!("{what} goes on for more than {MAX_PAGES} pages"),
        })
    }

    /// Deletes the manifest `image` pins by digest (the registry must allow deletes).
    /// Its tags go with it; a manifest already gone is not an error.
    pub fn delete_manifest(&self, image: &Reference) -> Result<(), RegistryError> {
        let Some(digest) = &image.digest else {
            return Err(RegistryError::Layout(format!(
                "{image} names no digest: only a manifest pinned by digest is deleted"
            )));
        };
        let url = format!("{}/manifests/{digest}", self.repo_url(image)?);
        let req = Request::new(Method::DELETE, url, image);
        let resp = self.send(&req)?;
        match resp.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.status_error(&req, resp)),
        }
    }
}

/// The target of the `rel="next"` link in a `Link` header value
/// (`</v2/_catalog?last=b&n=2>; rel="next"`).
fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

impl Client {
    /// Reads the body of a manifest or index response from `url` (at most
    /// `MANIFEST_LIMIT` bytes); `what` names it in the error.
    fn read_manifest_body(
        &self,
        resp: &mut Response,
        url: &str,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        self.read_limited(resp, MANIFEST_LIMIT).map_err(|e| {
            match super::deadline::fired(&e, &self.options().deadlines) {
                Some(_) => self.transfer_error(&Method::GET, url, 1, e),
                None => RegistryError::Protocol {
                    url: super::client::redact_url(url),
                    detail: format!("cannot read {what}: {e}"),
                },
            }
        })
    }
}

fn header_str(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// The manifest's media type: its `mediaType` field, else the Content-Type; `None`
/// unless one of the four manifest types cairn reads.
fn media_type_of(bytes: &[u8], content_type: Option<&str>) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    let content_type = content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
    let candidate = probe
        .media_type
        .or(content_type.filter(|c| c != "application/json"))
        .unwrap_or_else(|| {
            if probe.manifests.is_some() {
                OCI_INDEX.to_string()
            } else {
                OCI_MANIFEST.to_string()
            }
        });
    media_type::MANIFESTS
        .contains(&candidate.as_str())
        .then_some(candidate)
}

/// An image manifest or index as push and pull follow it, in the oci-spec types (a
/// Docker manifest or manifest list has the same shape).
#[derive(Debug)]
pub(crate) enum ManifestDoc {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

impl ManifestDoc {
    /// Parses `bytes` as the document `media_type` says it is; `what` names it in
    /// the error.
    pub fn parse(bytes: &[u8], media_type: &str, what: &str) -> Result<ManifestDoc, RegistryError> {
        let parsed = if media_type::is_index(media_type) {
            serde_json::from_slice(bytes).map(ManifestDoc::Index)
        } else {
            serde_json::from_slice(bytes).map(ManifestDoc::Image)
        };
        parsed.map_err(|e| {
            RegistryError::Layout(format!("{what} is not an OCI manifest or index: {e}"))
        })
    }

    pub fn is_index(&self) -> bool {
        matches!(self, ManifestDoc::Index(_))
    }

    /// The blobs an image manifest names: config, then layers (none for an index).
    pub fn blobs(&self) -> Vec<&OciDescriptor> {
        match self {
            ManifestDoc::Image(m) => std::iter::once(m.config()).chain(m.layers()).collect(),
            ManifestDoc::Index(_) => Vec::new(),
        }
    }

    /// The manifests an index lists (none for an image manifest).
    pub fn children(&self) -> &[OciDescriptor] {
        match self {
            ManifestDoc::Image(_) => &[],
            ManifestDoc::Index(i) => i.manifests(),
        }
    }

    /// An image manifest's layers (none for an index).
    pub fn layers(&self) -> &[OciDescriptor] {
        match self {
            ManifestDoc::Image(m) => m.layers(),
            ManifestDoc::Index(_) => &[],
        }
    }

    pub fn subject(&self) -> Option<&OciDescriptor> {
        match self {
            ManifestDoc::Image(m) => m.subject().as_ref(),
            ManifestDoc::Index(i) => i.subject().as_ref(),
        }
    }

    pub fn artifact_type(&self) -> Option<&MediaType> {
        match self {
            ManifestDoc::Image(m) => m.artifact_type().as_ref(),
            ManifestDoc::Index(i) => i.artifact_type().as_ref(),
        }
    }

    /// The document's annotations, sorted.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let annotations = match self {
            ManifestDoc::Image(m) => m.annotations(),
            ManifestDoc::Index(i) => i.annotations(),
        };
        annotations
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// How this manifest is listed as a referrer: `artifactType`, else the config's
    /// media type (image-spec 1.1), with the manifest's annotations.
    pub fn referrer_descriptor(
        &self,
        media_type: &str,
        digest: &Sha256Digest,
        size: u64,
    ) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: digest.to_string(),
            size,
            artifact_type: self
                .artifact_type()
                .map(MediaType::to_string)
                .or_else(|| match self {
                    ManifestDoc::Image(m) => Some(m.config().media_type().to_string()),
                    ManifestDoc::Index(_) => None,
                }),
            annotations: self.annotations(),
            platform: None,
        }
    }
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
