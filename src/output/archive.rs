//! Single-file outputs: an OCI layout as a tar (`oci-archive`) and the `docker save`
//! tarball (`docker-archive`) that `docker load` and `podman load` read.
//!
//! Both are written from a complete layout directory as canonical tars: entries in
//! byte-wise path order, directories explicit, POSIX ustar headers, mtime = the
//! build epoch, uid/gid 0 with empty names, mode 0644 for files and 0755 for
//! directories. The same layout and epoch give the same bytes. Blobs are streamed,
//! never held in memory, and each is checked against its digest as it is copied.

use crate::digest::{HashingReader, HashingWriter, Sha256Digest};
use crate::oci::layout::{blob_member, blob_path, blobs_dir, BLOB_DIR_MEMBERS};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// How `cairn build` writes the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// An OCI image layout directory `<out>/<name>/`.
    #[default]
    Oci,
    /// The same layout as one tar, `<out>/<name>.tar`.
    OciArchive,
    /// A `docker save` tarball, `<out>/<name>.tar`.
    DockerArchive,
}

impl OutputFormat {
    pub fn is_archive(self) -> bool {
        self != OutputFormat::Oci
    }
}

/// A `--format` that is none of [`OutputFormat`]'s names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format `{0}`: expected oci, oci-archive or docker-archive")]
pub struct UnknownFormat(pub String);

impl std::str::FromStr for OutputFormat {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s {
            "oci" => Ok(OutputFormat::Oci),
            "oci-archive" => Ok(OutputFormat::OciArchive),
            "docker-archive" => Ok(OutputFormat::DockerArchive),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot write the archive: {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("blob {expected} in {path} hashes to {actual}: the layout is corrupt")]
    Digest {
        path: PathBuf,
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error("{0}")]
    Unsupported(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A tar writer with canonical headers.
struct CanonicalTar<W: Write> {
    builder: tar::Builder<W>,
    epoch: u64,
}

impl<W: Write> CanonicalTar<W> {
    fn new(out: W, epoch: u64) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        CanonicalTar { builder, epoch }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.epoch);
        h.set_size(size);
        h
    }

    fn dir(&mut self, name: &str) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Directory, 0o755, 0);
        self.builder.append_data(&mut h, name, io::empty())
    }

    fn file(&mut self, name: &str, size: u64, content: impl Read) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Regular, 0o644, size);
        self.builder.append_data(&mut h, name, content)
    }

    fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

/// Reads a blob of `layout`, checking it against its name as it streams.
struct BlobFile {
    path: PathBuf,
    digest: Sha256Digest,
    size: u64,
}

impl BlobFile {
    fn at(layout: &Path, digest: Sha256Digest) -> Result<Self, ArchiveError> {
        let path = blob_path(layout, &digest);
        let size = std::fs::metadata(&path).map_err(io_err(&path))?.len();
        Ok(BlobFile { path, digest, size })
    }

    /// Appends the blob's bytes, then fails if they did not hash to its digest.
    fn copy_into<W: Write>(
        &self,
        tar: &mut CanonicalTar<W>,
        name: &str,
    ) -> Result<(), ArchiveError> {
        let file = File::open(&self.path).map_err(io_err(&self.path))?;
        let mut reader = HashingReader::new(BufReader::with_capacity(1 << 20, file));
        tar.file(name, self.size, &mut reader)
            .map_err(io_err(&self.path))?;
        self.check(reader.finish().0)
    }

    fn check(&self, actual: Sha256Digest) -> Result<(), ArchiveError> {
        if actual != self.digest {
            return Err(ArchiveError::Digest {
                path: self.path.clone(),
                expected: self.digest,
                actual,
            });
        }
        Ok(())
    }
}

/// Writes `layout` (a complete OCI layout directory) as an `oci-archive` tar.
pub fn write_oci_archive(layout: &Path, epoch: u64, out: impl Write) -> Result<(), ArchiveError> {
    let blobs_dir = blobs_dir(layout);
    let mut names: Vec<String> = std::fs::read_dir(&blobs_dir)
        .map_err(io_err(&blobs_dir))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(io_err(&blobs_dir))?;
    names.sort();
    let mut tar = CanonicalTar::new(out, epoch);
    let at = |p: &str| layout.join(p);
    for dir in BLOB_DIR_MEMBERS {
        tar.dir(dir).map_err(io_err(&blobs_dir))?;
    }
    for name in names {
        let digest: Sha256Digest = name.parse().map_err(|_| {
            ArchiveError::Unsupported(format!(
                "{}: `{name}` is not a sha256 blob name",
                blobs_dir.display()
            ))
        })?;
        BlobFile::at(layout, digest)?.copy_into(&mut tar, &blob_member(&digest))?;
    }
    for small in ["index.json", "oci-layout"] {
        let path = at(small);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        tar.file(small, bytes.len() as u64, bytes.as_slice())
            .map_err(io_err(&path))?;
    }
    tar.finish()
        .and_then(|mut w| w.flush())
        .map_err(io_err(layout))
}

/// A name a `docker-archive` gives its image (`docker load` tags the image so): a
/// docker reference `NAME[:TAG]` without digest, the tag `latest` when none is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerTag {
    pub name: String,
    pub tag: String,
}

/// A `--tag` that is not a docker reference `NAME[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a docker image name NAME[:TAG] (e.g. team/hello:v1): {reason}")]
pub struct BadDockerTag {
    pub text: String,
    pub reason: String,
}

impl std::str::FromStr for DockerTag {
    type Err = BadDockerTag;
    fn from_str(text: &str) -> Result<Self, BadDockerTag> {
        let bad = |reason: String| BadDockerTag {
            text: text.to_string(),
            reason,
        };
        // The registry client's reference grammar checks the name and the tag.
        let parsed: crate::registry::Reference = text
            .parse()
            .map_err(|e: crate::registry::reference::ParseReferenceError| bad(e.to_string()))?;
        if parsed.digest.is_some() {
            return Err(bad(
                "a docker-archive names its image by tag, not digest".into()
            ));
        }
        // Kept as written (`hello`, not `docker.io/library/hello`), as docker save does.
        let last_slash = text.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match text[last_slash..].rfind(':') {
            Some(i) => (&text[..last_slash + i], &text[last_slash + i + 1..]),
            None => (text, "latest"),
        };
        Ok(DockerTag {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl std::fmt::Display for DockerTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// What a `docker-archive` needs to know about the one image it holds.
pub struct DockerImage<'a> {
    /// Its names, recorded in `manifest.json` `RepoTags` and `repositories`.
    pub tags: &'a [DockerTag],
    pub config: Sha256Digest,
    /// Each layer blob in order, with its media type and `diff_id` (from the config).
    pub layers: Vec<(Sha256Digest, String, Sha256Digest)>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Writes `image` from `layout` as a `docker save` tarball: `manifest.json`,
/// `repositories`, the config as `<hex>.json` and each layer, uncompressed as Docker
/// stores them, as `<diff_id hex>.tar` (the names docker and skopeo use). Layers are
/// decompressed twice, once to learn their size for the tar header and once to copy,
/// so memory stays bounded; both passes are checked against the `diff_id`.
pub fn write_docker_archive(
    layout: &Path,
    image: &DockerImage,
    epoch: u64,
    out: impl Write,
) -> Result<(), ArchiveError> {
    let config_name = format!("{}.json", image.config.hex());
    let mut layer_files: BTreeMap<String, (Sha256Digest, &str, Sha256Digest)> = BTreeMap::new();
    let mut layer_names = Vec::new();
    for (digest, media_type, diff_id) in &image.layers {
        let name = format!("{}.tar", diff_id.hex());
        layer_names.push(name.clone());
        layer_files.insert(name, (*digest, media_type, *diff_id));
    }
    let manifest = vec![DockerManifestEntry {
        config: config_name.clone(),
        repo_tags: image.tags.iter().map(DockerTag::to_string).collect(),
        layers: layer_names,
    }];
    let manifest_json = crate::oci::json::canonical_json(&manifest);
    // The legacy `repositories` file names the top layer's v1 id; like skopeo, cairn
    // uses the layer chain id (docker's `CreateChainID`) as that id.
    let mut chain: Option<Sha256Digest> = None;
    for (_, _, diff_id) in &image.layers {
        chain = Some(match chain {
            None => *diff_id,
            Some(parent) => Sha256Digest::of(format!("{parent} {diff_id}").as_bytes()),
        });
    }
    let top = chain.map(|c| c.hex()).unwrap_or_default();
    let mut repositories: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for t in image.tags {
        repositories
            .entry(&t.name)
            .or_default()
            .insert(&t.tag, &top);
    }
    let repositories = crate::oci::json::canonical_json(&repositories);

    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    entries.insert(config_name, Entry::Config);
    for (name, layer) in layer_files {
        entries.insert(name, Entry::Layer(layer.0, layer.1.to_string(), layer.2));
    }
    entries.insert("manifest.json".into(), Entry::Bytes(manifest_json));
    entries.insert("repositories".into(), Entry::Bytes(repositories));

    let mut tar = CanonicalTar::new(out, epoch);
    for (name, entry) in entries {
        match entry {
            Entry::Bytes(bytes) => tar
                .file(&name, bytes.len() as u64, bytes.as_slice())
                .map_err(io_err(layout))?,
            Entry::Config => BlobFile::at(layout, image.config)?.copy_into(&mut tar, &name)?,
            Entry::Layer(digest, media_type, diff_id) => {
                let blob = BlobFile::at(layout, digest)?;
                let size = {
                    let (id, size) = uncompressed(&blob, &media_type, io::sink())?;
                    check_diff_id(&blob, diff_id, id)?;
                    size
                };
                let file = File::open(&blob.path).map_err(io_err(&blob.path))?;
                let raw = HashingReader::new(BufReader::with_capacity(1 << 20, file));
                let mut decoded = HashingReader::new(decoder(&blob, &media_type, raw)?);
                tar.file(&name, size, &mut decoded)
                    .map_err(io_err(&blob.path))?;
                check_diff_id(&blob, diff_id, decoded.finish().0)?;
            }
        }
    }
    tar.finish()
        .and_then(|mut w| w.flush())
        .map_err(io_err(layout))
}

enum Entry {
    Bytes(Vec<u8>),
    Config,
    Layer(Sha256Digest, String, Sha256Digest),
}

fn check_diff_id(
    blob: &BlobFile,
    expected: Sha256Digest,
    actual: Sha256Digest,
) -> Result<(), ArchiveError> {
    if actual != expected {
        return Err(ArchiveError::Digest {
            path: blob.path.clone(),
            expected,
            actual,
        });
    }
    Ok(())
}

fn decoder<'r>(
    blob: &BlobFile,
    media_type: &str,
    raw: impl Read + 'r,
) -> Result<Box<dyn Read + 'r>, ArchiveError> {
    let Some(compression) = crate::oci::compression::Compression::of_layer(media_type) else {
        return Err(ArchiveError::Unsupported(format!(
            "layer {} has media type `{media_type}`, which a docker-archive cannot hold",
            blob.digest
        )));
    };
    compression.decompressing(raw).map_err(io_err(&blob.path))
}

/// Decompresses the layer into `sink`, checking the compressed bytes against the
/// blob's digest; gives the diff_id and uncompressed size.
fn uncompressed(
    blob: &BlobFile,
    media_type: &str,
    sink: impl Write,
) -> Result<(Sha256Digest, u64), ArchiveError> {
    let file = File::open(&blob.path).map_err(io_err(&blob.path))?;
    let mut raw = HashingReader::new(BufReader::with_capacity(1 << 20, file));
    let (diff_id, size) = {
        let mut decoded = decoder(blob, media_type, &mut raw)?;
        let mut out = HashingWriter::new(sink);
        io::copy(&mut decoded, &mut out).map_err(io_err(&blob.path))?;
        let (d, n, _) = out.finish();
        (d, n)
    };
    io::copy(&mut raw, &mut io::sink()).map_err(io_err(&blob.path))?;
    blob.check(raw.finish().0)?;
    Ok((diff_id, size))
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
