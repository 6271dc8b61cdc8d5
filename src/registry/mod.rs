//! An OCI distribution-spec registry client: push and pull of images, their blobs
//! and their referrers (SBOMs, attestations), over blocking HTTP(S).
//!
//! Start with [`Client::new`] and [`ClientOptions`] (credentials, `insecure`,
//! retries). Single operations are methods of [`Client`]:
//! [`get_manifest`](Client::get_manifest) (digest verified),
//! [`put_manifest`](Client::put_manifest), [`blob_exists`](Client::blob_exists),
//! [`get_blob_to`](Client::get_blob_to) (streamed, verified),
//! [`push_blob`](Client::push_blob) (HEAD skip, cross-repository mount, monolithic or
//! chunked upload streamed from a file), [`referrers`](Client::referrers) (the
//! Referrers API, else the `sha256-<hex>` tag schema). Whole images:
//! [`push::push_layout`] and [`pull::pull_to_layout`].
//!
//! Every byte received is checked against the digest it was asked for; a mismatch
//! is [`RegistryError::DigestMismatch`]. Errors carry the registry's own message
//! (`errors[].code/message`); credentials never appear in errors or `Debug` output.

pub(crate) mod api;
pub mod auth;
mod client;
pub mod deadline;
#[cfg(test)]
pub(crate) mod fake_registry;
pub mod pull;
pub mod push;

pub mod reference;
pub mod referrers;

/// A manifest or index parsed as push, pull and the audit follow it.
pub(crate) use api::ManifestDoc;
pub use api::{oci_sha256, BlobPush, Descriptor, Manifest, PutManifest};
pub use auth::{Credentials, Login};
/// Whether plain HTTP may be used with a host (the ledger's tile reader asks too).
pub(crate) use client::is_loopback;
pub use client::{Client, ClientOptions};
pub use deadline::Deadlines;
pub use reference::Reference;

use crate::diag::{Diagnose, Interrupted};
use crate::digest::Sha256Digest;
use std::borrow::Cow;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{method} {url} failed with HTTP {status}{}", colon(message))]
    Status {
        method: String,
        url: String,
        status: u16,
        /// The registry's own error message(s).
        message: String,
        /// What to check, for the statuses that say (401, 403).
        hint: Option<String>,
    },
    // `error`, not `source`: the message includes it, so error chains must not
    // print it twice.
    #[error("cannot reach the registry at {url} (after {attempts} attempt{}): {error}", if *attempts == 1 { "" } else { "s" })]
    Connect {
        url: String,
        attempts: u32,
        error: ureq::Error,
    },
    #[error("authentication to {registry} failed: {message}")]
    Auth { registry: String, message: String },
    #[error("the registry at {host} did not answer {method} {path} in time: {fired}")]
    Deadline {
        host: String,
        method: String,
        path: String,
        fired: deadline::Fired,
    },
    #[error("the registry at {host} answered in plain HTTP, not HTTPS")]
    PlainHttpAnswer { host: String, loopback: bool },
    #[error("refusing plain HTTP to {host}: --insecure is allowed only for loopback registries (localhost, 127.0.0.0/8, ::1)")]
    InsecureNotLoopback { host: String },
    #[error("the registry served a {what} that does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{target} pins a digest, but the image in {} is {actual}: nothing was pushed", layout.display())]
    PinnedDigestMismatch {
        layout: PathBuf,
        target: String,
        actual: Sha256Digest,
    },
    #[error("{url}: the registry sent something that is not a valid answer: {detail}")]
    Protocol { url: String, detail: String },
    #[error("{reference} was not found in the registry{}", colon(message))]
    NotFound { reference: String, message: String },
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Layout(String),
    #[error("interrupted: the push stopped before the tag was written")]
    Interrupted(#[from] Interrupted),
    #[error("cannot write the pulled layout: {0}")]
    Output(crate::oci::layout::LayoutError),
    /// The layout being pushed cannot be read, or does not match its descriptors.
    #[error(transparent)]
    ReadLayout(crate::oci::layout::LayoutError),
}

impl From<crate::oci::layout::LayoutError> for RegistryError {
    fn from(e: crate::oci::layout::LayoutError) -> Self {
        RegistryError::Output(e)
    }
}

fn colon(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl Diagnose for RegistryError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            RegistryError::Status { hint, .. } => hint.as_deref().map(Cow::Borrowed),
            RegistryError::Deadline { fired, .. } => Some(Cow::Owned(fired.hint())),
            RegistryError::PlainHttpAnswer { host, loopback: true } => Some(Cow::Owned(format!(
                "if {host} is your local registry, pass --insecure to talk plain HTTP to it"
            ))),
            RegistryError::PinnedDigestMismatch { target, actual, .. } => {
                let repository = target.split('@').next().unwrap_or(target);
                Some(Cow::Owned(format!(
                    "push to a reference without the digest (a tag), or with the layout's own: {repository}@{actual}"
                )))
            }
            RegistryError::PlainHttpAnswer { .. } => Some(Cow::Borrowed(
                "cairn talks plain HTTP only to loopback registries (with --insecure): serve this registry over HTTPS, or reach it through a loopback address",
            )),
            _ => None,
        }
    }
}

impl RegistryError {
    /// A failure that another attempt may not meet: a server error, throttling, or a
    /// dropped connection.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
            RegistryError::Connect { error, .. } => client::is_transient(error),
            RegistryError::Deadline { fired, .. } => !matches!(fired, deadline::Fired::Overall(_)),
            _ => false,
        }
    }
}

/// `sha256-<hex>`: the tag of the referrers tag schema for `digest`.
pub fn referrers_tag(digest: &Sha256Digest) -> String {
    format!("sha256-{}", digest.hex())
}

/// `sha256-<hex>.att`: cosign's tag for the attestations of `digest`.
pub fn cosign_attestation_tag(digest: &Sha256Digest) -> String {
    format!("sha256-{}.att", digest.hex())
}
