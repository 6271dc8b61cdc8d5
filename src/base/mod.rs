//! Base images: reading another image (from an OCI layout or a registry) that a
//! recipe builds on.

pub mod media;

pub use media::{layer_compression, Compression};
