//! Pinning the base image: the digest comes from the recipe (`digest:` or the
//! `@sha256:` of a `ref:`), else from the lock file, else (unless `--locked`) from
//! resolving the reference now, which is then written to the lock file.

use super::lock::LockedBase;
use super::{LockMode, Lockfile};
use crate::base::{BaseError, BaseStore};
use crate::diag::Diagnose;
use crate::digest::Sha256Digest;
use crate::recipe::BaseSpec;
use std::borrow::Cow;

/// Why the base cannot be pinned.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("the base image {reference} is not pinned: no digest in the recipe and none in the lock file")]
    Unpinned { reference: String },
    #[error("the lock file pins base image {locked}, but the recipe's base is {reference}")]
    LockedOther { reference: String, locked: String },
    #[error(transparent)]
    Base(#[from] BaseError),
}

impl Diagnose for PinError {
    fn hint(&self) -> Option<Cow<'_, str>> {
        match self {
            PinError::Unpinned { .. } | PinError::LockedOther { .. } => {
                Some("--locked builds use only pinned inputs; run `cairn lock` and commit the lock file, or write the digest in the recipe".into())
            }
            PinError::Base(e) => e.hint(),
        }
    }
}

/// The pinned digest of `spec`, the lock entry to keep, and a warning if the base was
/// pinned just now.
pub fn pin(
    spec: &BaseSpec,
    store: &dyn BaseStore,
    lock: &Lockfile,
    mode: LockMode,
) -> Result<(Sha256Digest, LockedBase, Option<String>), PinError> {
    let reference = spec.source.reference();
    let entry = |digest| LockedBase {
        reference: reference.clone(),
        digest,
    };
    if let Some(digest) = spec.digest {
        return Ok((digest, entry(digest), None));
    }
    let locked = lock.base.as_ref();
    match (locked, mode) {
        (Some(l), LockMode::Locked | LockMode::PinMissing | LockMode::Repin)
            if l.reference == reference =>
        {
            Ok((l.digest, l.clone(), None))
        }
        (Some(l), LockMode::Locked) => Err(PinError::LockedOther {
            reference,
            locked: l.reference.clone(),
        }),
        (None, LockMode::Locked) => Err(PinError::Unpinned { reference }),
        _ => {
            let digest = store.resolve()?;
            let warning = (mode == LockMode::PinMissing).then(|| {
                format!(
                    "base image {reference} was not pinned; pinned it as {digest} in the lock file"
                )
            });
            Ok((digest, entry(digest), warning))
        }
    }
}
