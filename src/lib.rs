//! cairn: compile declarative YAML recipes, deterministically, into OCI images.
//!
//! The pipeline, one module per stage, each with typed input and output:
//! [`recipe`] (YAML -> validated `Recipe`) -> [`resolve`] (every source pinned and
//! snapshotted) -> [`layers`] (file trees -> compressed tar blobs, cached) ->
//! [`image`] (config, manifest, index) -> [`output`] (an OCI layout published
//! atomically). [`build`] runs them in order; [`inspect`] reads a layout back.
//! A recipe with `vm:` also gets a bootable disk from the same root file system
//! ([`disk`]). An unchanged recipe is rebuilt from the cache by [`warm`].
//!
//! Below every stage, shared by all of them: [`digest`], [`elf`], [`oci`] (media types,
//! annotations, canonical JSON, time formatting, compression, whiteouts), [`keys`] and
//! [`snapshot`] (a source's files, and archive unpacking). The tidy tests in `xtask`
//! hold the order: a module never imports one above it.

pub mod attest;
pub mod audit;
pub mod base;
pub mod build;
pub mod debian;
pub mod diag;
pub mod diff;
pub mod digest;
pub mod disk;
pub mod elf;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod inspect;
pub mod keys;
pub mod layers;
pub mod ledger;
pub mod oci;
pub mod output;
pub mod recipe;
pub mod registry;
pub mod remote_cache;
pub mod resolve;
pub mod serve;
pub mod snapshot;
pub mod trace;
pub mod verify;
pub mod warm;
