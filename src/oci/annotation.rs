//! The annotation keys cairn writes or reads on OCI manifests, indexes and descriptors,
//! each defined once.

/// The version of cairn's output format ([`super::OUTPUT_FORMAT_VERSION`]) on every
/// manifest and index it writes.
pub const OUTPUT_FORMAT: &str = "dev.cairn.output-format";
/// The tag of an image in a layout's `index.json` (image-spec `ref.name`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The in-toto predicate type on an attestation referrer (a DSSE envelope), so a
/// verifier can pick provenance or SBOM statements without opening every envelope.
pub const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// The annotation cosign puts on each signature and attestation layer (its value is
/// the base64 signature for simple signing, empty for DSSE attestations).
pub const COSIGN_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// The annotation cosign puts on attestation layers: the in-toto predicate type.
pub const COSIGN_PREDICATE_TYPE: &str = "predicateType";
