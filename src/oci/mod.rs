//! The OCI core every stage shares: what the image-spec defines, written once.
//! [`layout`] is the one place that knows how an OCI image layout is stored on disk.

pub mod layout;
