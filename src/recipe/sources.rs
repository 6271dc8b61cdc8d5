//! `sources:` — named inputs, each a `path:` (file or directory) or an `archive:`,
//! relative to the recipe file, optionally pinned by `sha256:`.

use super::context::{span_of, Cx};
use super::model::{SourceKind, SourceSpec};
use super::raw::{RawSource, SpannedMap};
use super::values::{item_name, Invalid};
use super::Diagnostic;
use crate::digest::Sha256Digest;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

pub(super) fn parse(
    cx: &Cx,
    raw: Option<Spanned<SpannedMap<Spanned<RawSource>>>>,
) -> Result<BTreeMap<String, SourceSpec>, Diagnostic> {
    let mut sources = BTreeMap::new();
    for (name, source) in raw.map(|r| r.value.0).unwrap_or_default() {
        cx.check(&name, |n| item_name("source", n))?;
        let spec = parse_source(cx, name, source)?;
        sources.insert(spec.name.clone(), spec);
    }
    Ok(sources)
}

fn parse_source(
    cx: &Cx,
    name: Spanned<String>,
    source: Spanned<RawSource>,
) -> Result<SourceSpec, Diagnostic> {
    let at = span_of(&name);
    let RawSource {
        path,
        archive,
        sha256,
        license,
    } = source.value;
    let (kind, path) = match (path, archive) {
        (Some(path), None) => (SourceKind::Path, path),
        (None, Some(archive)) => (SourceKind::Archive, archive),
        (Some(_), Some(archive)) => {
            return Err(cx
                .error(
                    span_of(&archive),
                    format!("source `{}` has both `path` and `archive`", name.value),
                )
                .with_hint("a source is either a `path:` (file or directory) or an `archive:` (a tar to extract); define two sources for both"));
        }
        (None, None) => {
            return Err(cx
                .error(
                    at,
                    format!("source `{}` has neither `path` nor `archive`", name.value),
                )
                .with_hint("add `path: <file or directory>` or `archive: <tar file>`, relative to the recipe file"));
        }
    };
    cx.check(&path, |p| relative_path(p))?;
    let sha256 = sha256
        .map(|digest| {
            cx.check(&digest, |d| {
                d.parse::<Sha256Digest>().map_err(|err| {
                    Invalid::new(err.to_string())
                        .hint("copy the digest from `sha256sum <file>` (64 hex digits)")
                })
            })
        })
        .transpose()?;
    let license = license
        .map(|l| {
            cx.check(&l, |text| license_expression(text))
                .map(|_| l.value)
        })
        .transpose()?;
    Ok(SourceSpec {
        name: name.value,
        kind,
        path: path.value,
        sha256,
        license,
        signature: None,
        span: at,
    })
}

/// Source paths are relative to the recipe file (they may point outside its
/// directory), never absolute, so that a recipe builds the same on any machine.
fn relative_path(path: &str) -> Result<(), Invalid> {
    if path.is_empty() {
        return Err(Invalid::new("source path is empty")
            .hint("write the path of the file, directory or archive relative to the recipe file"));
    }
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..3) == Some(":\\") {
        return Err(Invalid::new(format!("source path `{path}` is absolute"))
            .hint("paths are relative to the recipe file, so the recipe stays portable: move or link the input next to the recipe and write e.g. `vendor/tools.tar.gz`"));
    }
    Ok(())
}

/// An SPDX license expression (`MIT`, `Apache-2.0 OR MIT`, `LicenseRef-custom`): only
/// its alphabet is checked here; SBOM consumers validate identifiers.
fn license_expression(text: &str) -> Result<(), Invalid> {
    let ok = !text.trim().is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " .+-()_:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(
            Invalid::new(format!("`{text}` is not an SPDX license expression")).hint(
                "use SPDX identifiers, e.g. `MIT`, `Apache-2.0 OR MIT`, or `LicenseRef-<name>`",
            ),
        )
    }
}
