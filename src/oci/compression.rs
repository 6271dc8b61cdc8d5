//! How a layer blob is compressed, and the OCI layer media type of each compression.
//! The recipe's `compression:` chooses it for the layers cairn writes; a base image's
//! layer media types say it for the layers cairn reads. The compressors themselves live
//! with the layer writer (`layers::compress`).

use super::media_type::{
    DOCKER_FOREIGN_LAYER_GZIP, DOCKER_LAYER, DOCKER_LAYER_GZIP, OCI_LAYER, OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD, OCI_NONDISTRIBUTABLE_LAYER, OCI_NONDISTRIBUTABLE_LAYER_GZIP,
    OCI_NONDISTRIBUTABLE_LAYER_ZSTD,
};

/// How a layer blob is compressed; each is its own OCI layer media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar+gzip`, deflate level 6.
    #[default]
    Gzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd`, zstd level 3.
    Zstd,
    /// `application/vnd.oci.image.layer.v1.tar`.
    None,
}

impl Compression {
    pub const NAMES: [&'static str; 3] = ["gzip", "zstd", "none"];

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }

    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
            Compression::None => OCI_LAYER,
        }
    }

    /// The compression of a layer of media type `media_type`; `None` for a media type
    /// that is not a layer cairn can read.
    pub fn of_layer(media_type: &str) -> Option<Compression> {
        match media_type {
            OCI_LAYER | OCI_NONDISTRIBUTABLE_LAYER | DOCKER_LAYER => Some(Compression::None),
            OCI_LAYER_GZIP
            | OCI_NONDISTRIBUTABLE_LAYER_GZIP
            | DOCKER_LAYER_GZIP
            | DOCKER_FOREIGN_LAYER_GZIP => Some(Compression::Gzip),
            OCI_LAYER_ZSTD | OCI_NONDISTRIBUTABLE_LAYER_ZSTD => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Reads the uncompressed bytes of a layer blob compressed this way from `raw`.
    pub fn decompressing<'r>(
        self,
        raw: impl std::io::Read + 'r,
    ) -> std::io::Result<Box<dyn std::io::Read + 'r>> {
        Ok(match self {
            // Every member: cairn's own gzip layers are a series of members (RFC 1952, 2.2).
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            Compression::Zstd => Box::new(zstd::Decoder::new(raw)?),
            Compression::None => Box::new(raw),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_and_oci_layers_map_to_their_compression() {
        assert_eq!(
            Compression::of_layer("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            Compression::of_layer("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::of_layer("application/vnd.oci.image.layer.v1.tar"),
            Some(Compression::None)
        );
        assert_eq!(Compression::of_layer("application/spdx+json"), None);
    }

    #[test]
    fn every_compression_reads_back_its_own_media_type() {
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            assert_eq!(Compression::of_layer(c.media_type()), Some(c));
        }
    }
}
