//! `cairn inspect`: reads an OCI image layout back and reports its manifests, configs,
//! layers and files. Every blob it reads is checked against its digest and size, so
//! inspect doubles as an integrity check of a layout.

use crate::digest::Sha256Digest;
use crate::oci::layout::{Layout, LayoutError};
use crate::oci::whiteout;
use oci_spec::image::{Descriptor, ImageManifest, MediaType, ANNOTATION_REF_NAME};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Layout(#[from] LayoutError),
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

/// `os/arch[/variant]`.
fn platform_name(platform: &oci_spec::image::Platform) -> String {
    let mut s = format!("{}/{}", platform.os(), platform.architecture());
    if let Some(v) = platform.variant() {
        s.push('/');
        s.push_str(v);
    }
    s
}

/// A manifest blob read both typed (to follow) and as the JSON it is (to report).
fn read_manifest(
    layout: &Layout,
    descriptor: &Descriptor,
) -> Result<(ImageManifest, serde_json::Value), InspectError> {
    let bytes = layout.read_blob(descriptor)?;
    let path = layout.blob_path(&layout.digest_of(descriptor)?);
    let json = |source| LayoutError::Json {
        path: path.clone(),
        source,
    };
    let typed = serde_json::from_slice(&bytes).map_err(json)?;
    let raw = serde_json::from_slice(&bytes).map_err(json)?;
    Ok((typed, raw))
}

/// Reads the layout at `root`, verifying every blob it touches.
pub fn inspect(root: &Path) -> Result<LayoutReport, InspectError> {
    let layout = Layout::open(root);
    let index = layout.index()?;
    let mut images = Vec::new();
    // An entry that is an image index (a multi-platform image) stands for its
    // platform manifests, which inherit its ref name.
    let mut manifests: Vec<(Descriptor, Option<String>, Option<String>)> = Vec::new();
    let mut index_digest = None;
    for m in index.manifests() {
        let ref_name = m
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REF_NAME))
            .cloned();
        if *m.media_type() != MediaType::ImageIndex {
            manifests.push((m.clone(), ref_name, None));
            continue;
        }
        for d in layout.image_index(m)?.manifests() {
            let platform = d.platform().as_ref().map(platform_name);
            manifests.push((d.clone(), ref_name.clone(), platform));
        }
        index_digest.get_or_insert(m.digest().to_string());
    }
    let mut referrers: Vec<(String, Referrer)> = Vec::new();
    for (m, ref_name, platform) in &manifests {
        let (ref_name, platform) = (ref_name.clone(), platform.clone());
        let digest = m.digest().to_string();
        let (typed, manifest) = read_manifest(&layout, m)?;
        if let Some(subject) = typed.subject() {
            let blob = typed
                .layers()
                .first()
                .ok_or_else(|| InspectError::Invalid {
                    path: layout.blob_path(&layout.digest_of(m).expect("read above")),
                    message: "an artifact manifest without a blob".into(),
                })?;
            // Read (and so verify) the blob now.
            layout.read_blob(blob)?;
            let annotations = typed
                .annotations()
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            referrers.push((
                subject.digest().to_string(),
                Referrer {
                    artifact_type: typed
                        .artifact_type()
                        .as_ref()
                        .map(MediaType::to_string)
                        .unwrap_or_default(),
                    manifest_digest: digest,
                    annotations,
                    blob_digest: blob.digest().to_string(),
                    blob_size: blob.size(),
                },
            ));
            continue;
        }
        let config = layout.read_json(typed.config())?;
        let mut layers = Vec::new();
        for l in typed.layers() {
            let media_type = l.media_type().to_string();
            let files = list_layer(&layout, &media_type, l)?;
            layers.push(LayerFiles {
                digest: l.digest().to_string(),
                media_type,
                size: l.size(),
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
                path: layout.index_path(),
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
    descriptor: &Descriptor,
) -> Result<Vec<FileInfo>, InspectError> {
    let mut blob = layout.open_blob(descriptor)?;
    let path = blob.path().to_path_buf();
    let listed = list_tar(&path, media_type, &mut blob);
    // Whatever the decoder made of it, hash the rest of the raw blob: a blob that does
    // not match its digest is reported as that, not as whichever decoding error the
    // damage happened to cause.
    io::copy(&mut blob, &mut io::sink()).map_err(io_err(&path))?;
    blob.finish()?;
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
    read_blob(layout, &r.blob_digest, r.blob_size).ok()
}

/// Reads any blob of the layout, verified against `digest` and `size`.
pub fn read_blob(layout: &Path, digest: &str, size: u64) -> Result<Vec<u8>, InspectError> {
    let layout = Layout::open(layout);
    let digest: Sha256Digest = digest.parse().map_err(|_| LayoutError::UnsupportedDigest {
        root: layout.root().to_path_buf(),
        digest: digest.to_string(),
    })?;
    Ok(layout.read_digest(&digest, size)?)
}
