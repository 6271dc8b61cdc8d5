//! Stage 5 (attest): what the image contains and where each byte came from, as SBOMs
//! ([`sbom`]) and signed in-toto statements ([`intoto`] in [`dsse`] envelopes), all
//! generated from the layers as written ([`contents`]).

pub mod contents;
pub mod dsse;
pub mod intoto;
pub mod sbom;
