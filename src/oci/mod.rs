//! The OCI core every stage shares, below all of them: the media types and annotations
//! cairn reads and writes (one definition each), canonical JSON, time formatting, layer
//! `Compression`, whiteouts, and [`layout`], the one place that knows how an OCI image
//! layout is stored on disk. It depends on no stage, so any stage, service or reader
//! may use it.

pub mod annotation;
pub mod compression;
pub mod json;
pub mod layout;
pub mod media_type;
pub mod owner;
pub mod time;
pub mod whiteout;

/// Bumped whenever cairn changes the bytes it writes for the same recipe and inputs;
/// recorded in every manifest so such a change is always deliberate and visible.
pub const OUTPUT_FORMAT_VERSION: &str = "6";
