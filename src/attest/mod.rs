//! Stage 5 (attest): what the image contains and where each byte came from, as SBOMs
//! and signed in-toto statements.

pub mod contents;
pub mod dsse;
pub mod intoto;
pub mod keys;
pub mod sbom;
