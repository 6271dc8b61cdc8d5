//! `cairn diff`: what differs between two image layouts — config, layers, files
//! (added, removed, changed in content, mode, owner or link target) and sources, with
//! Debian packages by version — the tool for finding out why two builds that should
//! match do not; or between two lock files, pin by pin.

use crate::inspect::{self, FileInfo, ImageReport, InspectError};
use crate::resolve::lock::{LockError, Lockfile, PinChange};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ImageDiff {
    pub manifest: (String, String),
    /// `path: a -> b` for every config value that differs (JSON pointer paths).
    pub config: Vec<Change>,
    /// Layer position, with both digests, for every layer that differs.
    pub layers: Vec<Change>,
    pub files_added: Vec<String>,
    pub files_removed: Vec<String>,
    pub files_changed: Vec<Change>,
    /// Sources (from the SPDX SBOMs) whose digest differs, or that only one side has.
    pub sources: Vec<Change>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Change {
    pub what: String,
    pub a: String,
    pub b: String,
}

impl ImageDiff {
    pub fn identical(&self) -> bool {
        self.manifest.0 == self.manifest.1
    }
}

/// The image for `platform` (`os/arch[/variant]`) of a multi-platform layout, else
/// the layout's first image.
fn image_of(layout: &Path, platform: Option<&str>) -> Result<ImageReport, InspectError> {
    let report = inspect::inspect(layout)?;
    let available: Vec<String> = report
        .images
        .iter()
        .filter_map(|i| i.platform.clone())
        .collect();
    let found = report
        .images
        .into_iter()
        .find(|i| platform.is_none() || i.platform.as_deref() == platform);
    found.ok_or_else(|| InspectError::Invalid {
        path: layout.into(),
        message: match platform {
            Some(p) if !available.is_empty() => format!(
                "the layout has no image for {p}; it has {}",
                available.join(", ")
            ),
            Some(p) => {
                format!("the layout has no image for {p} (it is not a multi-platform image)")
            }
            None => "the layout holds no image".into(),
        },
    })
}

/// Compares the images of layouts `a` and `b`: the first image of each, or for
/// multi-platform layouts the image of `platform`.
pub fn diff(a: &Path, b: &Path, platform: Option<&str>) -> Result<ImageDiff, InspectError> {
    let (ia, ib) = (image_of(a, platform)?, image_of(b, platform)?);
    let mut out = ImageDiff {
        manifest: (ia.manifest_digest.clone(), ib.manifest_digest.clone()),
        ..Default::default()
    };
    json_changes("", &ia.config, &ib.config, &mut out.config);
    for i in 0..ia.layers.len().max(ib.layers.len()) {
        let da = ia
            .layers
            .get(i)
            .map_or("-".to_string(), |l| l.digest.clone());
        let db = ib
            .layers
            .get(i)
            .map_or("-".to_string(), |l| l.digest.clone());
        if da != db {
            out.layers.push(Change {
                what: format!("layer {i}"),
                a: da,
                b: db,
            });
        }
    }
    let (fa, fb) = (inspect::final_files(&ia), inspect::final_files(&ib));
    for (path, f) in &fa {
        match fb.get(path) {
            None => out.files_removed.push(format!("/{path}")),
            Some(g) => {
                let (da, db) = (describe(f), describe(g));
                if da != db {
                    out.files_changed.push(Change {
                        what: format!("/{path}"),
                        a: da,
                        b: db,
                    });
                }
            }
        }
    }
    out.files_added = fb
        .keys()
        .filter(|p| !fa.contains_key(*p))
        .map(|p| format!("/{p}"))
        .collect();
    let (sa, sb) = (sbom_sources(a, &ia), sbom_sources(b, &ib));
    let names: BTreeSet<&String> = sa.keys().chain(sb.keys()).collect();
    for name in names {
        let (x, y) = (sa.get(name), sb.get(name));
        if x != y {
            out.sources.push(Change {
                what: format!("source {name}"),
                a: x.cloned().unwrap_or_else(|| "-".into()),
                b: y.cloned().unwrap_or_else(|| "-".into()),
            });
        }
    }
    Ok(out)
}

/// Every pin that differs from lock file `a` to lock file `b` (both must exist).
pub fn diff_locks(a: &Path, b: &Path) -> Result<Vec<PinChange>, LockError> {
    let read = |path: &Path| {
        // A lock file that is not there reads as an empty lock; here it is a mistake.
        std::fs::metadata(path).map_err(|source| LockError::Read {
            path: path.into(),
            source,
        })?;
        Lockfile::read(path)
    };
    Ok(read(a)?.changes_to(&read(b)?))
}

/// A file's type, mode, owner and content (or link target), in `tar tv` terms.
fn describe(f: &FileInfo) -> String {
    let content = match (&f.sha256, &f.link) {
        (Some(d), _) => d.to_string(),
        (None, Some(l)) => format!("-> {l}"),
        _ => String::new(),
    };
    format!("{} {:04o} {}:{} {content}", f.kind, f.mode, f.uid, f.gid)
}

fn json_changes(at: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<Change>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let null = Value::Null;
                json_changes(
                    &format!("{at}/{k}"),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(Change {
            what: if at.is_empty() { "/".into() } else { at.into() },
            a: a.to_string(),
            b: b.to_string(),
        }),
        _ => {}
    }
}

/// Source name -> digest, from the SPDX SBOM attached to the image (empty if none).
fn sbom_sources(layout: &Path, image: &ImageReport) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(spdx) = inspect::referrer_blob(layout, image, crate::attest::sbom::SPDX_MEDIA_TYPE)
    else {
        return out;
    };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&spdx) else {
        return out;
    };
    for p in doc["packages"].as_array().into_iter().flatten() {
        let Some(name) = p["SPDXID"]
            .as_str()
            .and_then(|id| id.strip_prefix("SPDXRef-Source-"))
        else {
            continue;
        };
        let digest = p["checksums"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["algorithm"] == "SHA256")
            .and_then(|c| c["checksumValue"].as_str())
            .map_or_else(|| "?".to_string(), |v| format!("sha256:{v}"));
        // A Debian package: by its own name, with its version.
        match (p["name"].as_str(), p["versionInfo"].as_str()) {
            (Some(package), Some(version)) if name.starts_with("deb.3A") => {
                out.insert(format!("deb:{package}"), format!("{version} {digest}"))
            }
            _ => out.insert(name.to_string(), digest),
        };
    }
    out
}
