//! cairn: compile declarative YAML recipes, deterministically, into OCI images.
//!
//! The pipeline, one module per stage, each with typed input and output:
//! [`recipe`] (YAML -> validated `Recipe`) -> [`resolve`] (every source pinned and
//! snapshotted) -> [`layers`] (file trees -> tar+gzip blobs) -> [`image`] (config,
//! manifest, index) -> [`output`] (an OCI layout published atomically). [`build`]
//! runs them in order; [`inspect`] reads a layout back.

pub mod attest;
pub mod build;
pub mod debian;
pub mod diff;
pub mod digest;
pub mod image;
pub mod inspect;
pub mod layers;
pub mod ledger;
pub mod output;
pub mod recipe;
pub mod resolve;
pub mod trace;
pub mod verify;
