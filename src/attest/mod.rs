//! Stage 5 (attest): what the image contains and where each byte came from, as SBOMs
//! ([`sbom`]) and signed in-toto statements ([`intoto`] in [`dsse`] envelopes), all
//! generated from the layers as written ([`contents`]).

pub mod contents;
pub mod dsse;
pub mod intoto;
pub mod keys;
pub mod sbom;

/// Media type of a DSSE envelope, as blob and as artifact type of its referrer.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Annotation on an attestation referrer naming its in-toto predicate type, so a
/// verifier can pick provenance or SBOM statements without opening every envelope.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
