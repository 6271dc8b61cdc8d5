//! `cairn inspect`: reads an OCI image layout back and reports its manifests, configs,
//! layers and files. Every blob it reads is checked against its digest and size, so
//! inspect doubles as an integrity check of a layout.

use crate::digest::{HashingReader, Sha256Digest};
use crate::oci::whiteout;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not valid OCI JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("blob {digest} is corrupt: expected {expected_size} bytes with that digest, found {actual_size} bytes hashing to {actual}")]
    DigestMismatch {
        digest: String,
        expected_size: u64,
        actual: Sha256Digest,
        actual_size: u64,
    },
}

#[derive(Debug, Serialize)]
pub struct LayoutReport {
    pub layout: PathBuf,
    /// For a multi-platform layout: the digest of the image index `index.json`
    /// points at; `images` are then its platform manifests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    pub images: Vec<ImageReport>,
}

#[derive(Debug, Serialize)]
pub struct ImageReport {
    pub ref_name: Option<String>,
    /// `os/arch[/variant]` of an image listed in an image index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub manifest_digest: String,
    pub manifest: serde_json::Value,
    pub config: serde_json::Value,
    pub layers: Vec<LayerFiles>,
    /// Artifacts whose `subject` is this image (SBOMs, attestations).
    pub referrers: Vec<Referrer>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Referrer {
    pub artifact_type: String,
    pub manifest_digest: String,
    pub annotations: BTreeMap<String, String>,
    /// The artifact's single blob.
    pub blob_digest: String,
    pub blob_size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerFiles {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub files: Vec<FileInfo>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileInfo {
    pub path: String,
    /// `file`, `dir`, `symlink`, `hardlink`, or the tar type byte for anything else.
    pub kind: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// SHA-256 of a regular file's content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
}

impl std::fmt::Display for FileInfo {
    /// `-rwxr-xr-x 0:0 1234 usr/bin/hello`, `l... -> target`, like `tar tv`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let type_char = match self.kind.as_str() {
            "dir" => 'd',
            "symlink" => 'l',
            "hardlink" => 'h',
            "file" => '-',
            _ => '?',
        };
        let mut perms = String::with_capacity(9);
        for shift in [6u32, 3, 0] {
            let bits = (self.mode >> shift) & 7;
            perms.push(if bits & 4 != 0 { 'r' } else { '-' });
            perms.push(if bits & 2 != 0 { 'w' } else { '-' });
            let special = match shift {
                6 => self.mode & 0o4000 != 0,
                3 => self.mode & 0o2000 != 0,
                _ => self.mode & 0o1000 != 0,
            };
            perms.push(match (bits & 1 != 0, special, shift) {
                (true, true, 0) => 't',
                (false, true, 0) => 'T',
                (true, true, _) => 's',
                (false, true, _) => 'S',
                (true, false, _) => 'x',
                (false, false, _) => '-',
            });
        }
        write!(
            f,
            "{type_char}{perms} {}:{} {:>8} {}",
            self.uid, self.gid, self.size, self.path
        )?;
        if let Some(link) = &self.link {
            let arrow = if self.kind == "hardlink" {
                "link to"
            } else {
                "->"
            };
            write!(f, " {arrow} {link}")?;
        }
        Ok(())
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InspectError + '_ {
    move |source| InspectError::Io {
        path: path.to_path_buf(),
        source,
    }
}

struct Layout<'a> {
    root: &'a Path,
}

impl Layout<'_> {
    fn blob_path(&self, digest: &str) -> Result<PathBuf, InspectError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| InspectError::Invalid {
                path: self.root.into(),
                message: format!("unsupported digest `{digest}` (cairn reads sha256 blobs)"),
            })?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    /// Reads a whole (small) blob, verifying its digest and size.
    fn read_verified(&self, digest: &str, size: u64) -> Result<Vec<u8>, InspectError> {
        let path = self.blob_path(digest)?;
        let mut bytes = Vec::new();
        let mut reader = HashingReader::new(File::open(&path).map_err(io_err(&path))?);
        reader.read_to_end(&mut bytes).map_err(io_err(&path))?;
        verify(digest, size, reader.finish())?;
        Ok(bytes)
    }

    fn read_json(&self, digest: &str, size: u64) -> Result<serde_json::Value, InspectError> {
        let bytes = self.read_verified(digest, size)?;
        serde_json::from_slice(&bytes).map_err(|source| InspectError::Json {
            path: self.blob_path(digest).unwrap_or_default(),
            source,
        })
    }
}

fn verify(
    digest: &str,
    size: u64,
    (actual, actual_size): (Sha256Digest, u64),
) -> Result<(), InspectError> {
    if actual.to_string() != digest || actual_size != size {
        return Err(InspectError::DigestMismatch {
            digest: digest.into(),
            expected_size: size,
            actual,
            actual_size,
        });
    }
    Ok(())
}

fn field<'a>(
    v: &'a serde_json::Value,
    path: &Path,
    key: &str,
) -> Result<&'a serde_json::Value, InspectError> {
    v.get(key).ok_or_else(|| InspectError::Invalid {
        path: path.into(),
        message: format!("missing `{key}`"),
    })
}

fn descriptor(v: &serde_json::Value, path: &Path) -> Result<(String, String, u64), InspectError> {
    let s = |k| field(v, path, k).map(|x| x.as_str().unwrap_or_default().to_string());
    let size = field(v, path, "size")?.as_u64().unwrap_or_default();
    Ok((s("mediaType")?, s("digest")?, size))
}

/// Reads the layout at `root`, verifying every blob it touches.
pub fn inspect(root: &Path) -> Result<LayoutReport, InspectError> {
    let layout = Layout { root };
    let index_path = root.join("index.json");
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&index_path).map_err(io_err(&index_path))?,
    )
    .map_err(|source| InspectError::Json {
        path: index_path.clone(),
        source,
    })?;
    let mut images = Vec::new();
    let top = field(&index, &index_path, "manifests")?
        .as_array()
        .cloned()
        .unwrap_or_default();
    // An entry that is an image index (a multi-platform image) stands for its
    // platform manifests, which inherit its ref name.
    let mut manifests: Vec<(serde_json::Value, Option<String>, Option<String>)> = Vec::new();
    let mut index_digest = None;
    for m in top {
        let ref_name = m
            .pointer("/annotations/org.opencontainers.image.ref.name")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        if m["mediaType"] != "application/vnd.oci.image.index.v1+json" {
            manifests.push((m, ref_name, None));
            continue;
        }
        let (_, digest, size) = descriptor(&m, &index_path)?;
        let nested = layout.read_json(&digest, size)?;
        let nested_path = layout.blob_path(&digest)?;
        for d in field(&nested, &nested_path, "manifests")?
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let platform = d.get("platform").map(|p| {
                let mut s = format!(
                    "{}/{}",
                    p["os"].as_str().unwrap_or_default(),
                    p["architecture"].as_str().unwrap_or_default()
                );
                if let Some(v) = p["variant"].as_str() {
                    s.push('/');
                    s.push_str(v);
                }
                s
            });
            manifests.push((d, ref_name.clone(), platform));
        }
        index_digest.get_or_insert(digest);
    }
    let mut referrers: Vec<(String, Referrer)> = Vec::new();
    for (m, ref_name, platform) in &manifests {
        let (ref_name, platform) = (ref_name.clone(), platform.clone());
        let (_, digest, size) = descriptor(m, &index_path)?;
        let manifest = layout.read_json(&digest, size)?;
        let mpath = layout.blob_path(&digest)?;
        if let Some(subject) = manifest.get("subject") {
            let (_, subject_digest, _) = descriptor(subject, &mpath)?;
            let blob = field(&manifest, &mpath, "layers")?.get(0).ok_or_else(|| {
                InspectError::Invalid {
                    path: mpath.clone(),
                    message: "an artifact manifest without a blob".into(),
                }
            })?;
            let (_, blob_digest, blob_size) = descriptor(blob, &mpath)?;
            // Read (and so verify) the blob now.
            layout.read_verified(&blob_digest, blob_size)?;
            let annotations = manifest["annotations"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            referrers.push((
                subject_digest,
                Referrer {
                    artifact_type: manifest["artifactType"].as_str().unwrap_or_default().into(),
                    manifest_digest: digest,
                    annotations,
                    blob_digest,
                    blob_size,
                },
            ));
            continue;
        }
        let (_, cdigest, csize) = descriptor(field(&manifest, &mpath, "config")?, &mpath)?;
        let config = layout.read_json(&cdigest, csize)?;
        let mut layers = Vec::new();
        for l in field(&manifest, &mpath, "layers")?
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let (media_type, ldigest, lsize) = descriptor(&l, &mpath)?;
            let files = list_layer(&layout, &media_type, &ldigest, lsize)?;
            layers.push(LayerFiles {
                digest: ldigest,
                media_type,
                size: lsize,
                files,
            });
        }
        images.push(ImageReport {
            ref_name,
            platform,
            manifest_digest: digest,
            manifest,
            config,
            layers,
            referrers: Vec::new(),
        });
    }
    for (subject, referrer) in referrers {
        let image = images
            .iter_mut()
            .find(|i| i.manifest_digest == subject)
            .ok_or_else(|| InspectError::Invalid {
                path: index_path.clone(),
                message: format!(
                    "artifact {} refers to {subject}, which is not an image in this layout",
                    referrer.manifest_digest
                ),
            })?;
        image.referrers.push(referrer);
    }
    Ok(LayoutReport {
        layout: root.into(),
        index_digest,
        images,
    })
}

fn list_layer(
    layout: &Layout,
    media_type: &str,
    digest: &str,
    size: u64,
) -> Result<Vec<FileInfo>, InspectError> {
    let path = layout.blob_path(digest)?;
    let file = File::open(&path).map_err(io_err(&path))?;
    let mut hashing = HashingReader::new(BufReader::new(file));
    let listed = list_tar(&path, media_type, &mut hashing);
    // Whatever the decoder made of it, hash the rest of the raw blob: a blob that does
    // not match its digest is reported as that, not as whichever decoding error the
    // damage happened to cause.
    io::copy(&mut hashing, &mut io::sink()).map_err(io_err(&path))?;
    verify(digest, size, hashing.finish())?;
    listed
}

fn list_tar(
    path: &Path,
    media_type: &str,
    raw: &mut impl Read,
) -> Result<Vec<FileInfo>, InspectError> {
    let Some(compression) = crate::oci::compression::Compression::of_layer(media_type) else {
        return Err(InspectError::Invalid {
            path: path.into(),
            message: format!("unsupported layer media type `{media_type}`"),
        });
    };
    let reader = compression.decompressing(raw).map_err(io_err(path))?;
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(io_err(path))? {
        let mut entry = entry.map_err(io_err(path))?;
        let h = entry.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => "file".to_string(),
            tar::EntryType::Directory => "dir".into(),
            tar::EntryType::Symlink => "symlink".into(),
            tar::EntryType::Link => "hardlink".into(),
            other => format!("type-{}", other.as_byte() as char),
        };
        files.push(FileInfo {
            path: entry
                .path()
                .map_err(io_err(path))?
                .to_string_lossy()
                .into_owned(),
            mode: h.mode().map_err(io_err(path))?,
            uid: h.uid().map_err(io_err(path))?,
            gid: h.gid().map_err(io_err(path))?,
            size: entry.size(),
            link: entry
                .link_name()
                .map_err(io_err(path))?
                .map(|l| l.to_string_lossy().into_owned()),
            sha256: if kind == "file" {
                Some(
                    crate::digest::sha256_reader(&mut entry)
                        .map_err(io_err(path))?
                        .0,
                )
            } else {
                None
            },
            kind,
        });
    }
    // Decode to the end, so compressed-stream checksums are checked too.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(io_err(path))?;
    Ok(files)
}

/// The image's file system after applying its layers in order (OCI whiteouts
/// included), keyed by path without leading `/` or trailing `/`. Hard links resolve
/// to the content of their target.
pub fn final_files(image: &ImageReport) -> std::collections::BTreeMap<String, FileInfo> {
    use std::collections::BTreeMap;
    let mut fs: BTreeMap<String, FileInfo> = BTreeMap::new();
    for layer in &image.layers {
        let mut layer_files: BTreeMap<String, &FileInfo> = BTreeMap::new();
        for f in &layer.files {
            let key = f
                .path
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            if let Some(w) = whiteout::whiteout(&key) {
                whiteout::apply(&mut fs, &w);
                continue;
            }
            layer_files.insert(key, f);
        }
        for (key, f) in &layer_files {
            if f.kind != "dir" {
                whiteout::remove_subtree(&mut fs, key);
            }
            let mut resolved = FileInfo {
                path: key.clone(),
                kind: f.kind.clone(),
                mode: f.mode,
                uid: f.uid,
                gid: f.gid,
                size: f.size,
                link: f.link.clone(),
                sha256: f.sha256,
            };
            if f.kind == "hardlink" {
                if let Some(target) = f
                    .link
                    .as_deref()
                    .and_then(|l| layer_files.get(l.trim_end_matches('/')))
                {
                    resolved.sha256 = target.sha256;
                    resolved.size = target.size;
                }
            }
            fs.insert(key.clone(), resolved);
        }
    }
    fs
}

/// The blob of `image`'s first referrer with `artifact_type`, verified.
pub fn referrer_blob(layout: &Path, image: &ImageReport, artifact_type: &str) -> Option<Vec<u8>> {
    let r = image
        .referrers
        .iter()
        .find(|r| r.artifact_type == artifact_type)?;
    Layout { root: layout }
        .read_verified(&r.blob_digest, r.blob_size)
        .ok()
}

/// Reads any blob of the layout, verified against `digest` and `size`.
pub fn read_blob(layout: &Path, digest: &str, size: u64) -> Result<Vec<u8>, InspectError> {
    Layout { root: layout }.read_verified(digest, size)
}
