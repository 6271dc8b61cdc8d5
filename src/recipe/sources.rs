//! `sources:` — named inputs, each a `path:` (file or directory) or an `archive:`,
//! relative to the recipe file, optionally pinned by `sha256:` and optionally carrying
//! a detached `signature: { path, key }` (both relative to the recipe file too; the
//! signature itself is checked when the source is resolved).

use super::context::{span_of, Cx};
use super::model::{SignatureSpec, SourceKind, SourceSpec, ARCH_PLACEHOLDER};
use super::raw::{RawSignature, RawSource, SpannedMap};
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
        signature,
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
    cx.check(&path, |p| {
        relative_path("source path", p, "vendor/tools.tar.gz")
    })?;
    let sha256 = sha256
        .map(|digest| {
            cx.check(&digest, |d| {
                d.parse::<Sha256Digest>().map_err(|err| {
                    Invalid::new(err.to_string())
                        .with_hint("copy the digest from `sha256sum <file>` (64 hex digits)")
                })
            })
            .map(|value| Spanned {
                value,
                referenced: digest.referenced,
                defined: digest.defined,
            })
        })
        .transpose()?;
    if let (Some(digest), true) = (&sha256, path.value.contains(ARCH_PLACEHOLDER)) {
        return Err(cx
            .error(
                span_of(digest),
                format!(
                    "source `{}` has `{ARCH_PLACEHOLDER}` in its path, so each platform reads a different file, but `sha256` pins one",
                    name.value
                ),
            )
            .with_hint("drop `sha256:`; `cairn lock` pins each platform's file in the lock file"));
    }
    let sha256 = sha256.map(|d| d.value);
    let license = license
        .map(|l| {
            cx.check(&l, |text| license_expression(text))
                .map(|_| l.value)
        })
        .transpose()?;
    let signature = signature
        .map(|s| parse_signature(cx, &name.value, s))
        .transpose()?;
    Ok(SourceSpec {
        name: name.value,
        kind,
        path: path.value,
        sha256,
        license,
        signature,
        span: at,
    })
}

fn parse_signature(
    cx: &Cx,
    source: &str,
    signature: Spanned<RawSignature>,
) -> Result<SignatureSpec, Diagnostic> {
    let at = span_of(&signature);
    let RawSignature { path, key } = signature.value;
    let hint = "write `signature: { path: <signature file>, key: <public key file> }`, both relative to the recipe file, e.g. `{ path: vendor/tools.tar.gz.sig, key: keys/upstream.pub }`";
    let path = cx.require(
        path,
        at,
        format!("the signature of source `{source}` has no `path`"),
        hint,
    )?;
    let key = cx.require(
        key,
        at,
        format!("the signature of source `{source}` has no `key`"),
        hint,
    )?;
    cx.check(&path, |p| {
        relative_path("signature path", p, "vendor/tools.tar.gz.sig")
    })?;
    cx.check(&key, |k| relative_path("key path", k, "keys/upstream.pub"))?;
    Ok(SignatureSpec {
        path: path.value,
        key: key.value,
        span: at,
    })
}

/// Source, signature and key paths are relative to the recipe file, never absolute
/// (whether a source may resolve outside the recipe's directory is decided when it is
/// read: `crate::resolve::containment`), so that a recipe builds the same on any
/// machine. `what` names the path in messages, `example` shows a good one.
pub(super) fn relative_path(what: &str, path: &str, example: &str) -> Result<(), Invalid> {
    if path.is_empty() {
        return Err(Invalid::new(format!("{what} is empty")).with_hint(format!(
            "write the {what} relative to the recipe file, e.g. `{example}`"
        )));
    }
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..3) == Some(":\\") {
        return Err(Invalid::new(format!("{what} `{path}` is absolute"))
            .with_hint(format!("paths are relative to the recipe file, so the recipe stays portable: move the input next to the recipe and write e.g. `{example}` (a source elsewhere needs `--allow-source-root DIR`)")));
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
            Invalid::new(format!("`{text}` is not an SPDX license expression")).with_hint(
                "use SPDX identifiers, e.g. `MIT`, `Apache-2.0 OR MIT`, or `LicenseRef-<name>`",
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::recipe::{parse, Diagnostic, Recipe, RecipeFile, SignatureSpec, Span};

    fn parse_sources(sources: &str) -> Result<Recipe, Diagnostic> {
        parse(RecipeFile {
            path: "recipe.yaml".into(),
            dir: ".".into(),
            text: format!(
                "cairn: 1\nname: t\nsources:\n{sources}layers:\n  - name: l\n    contents:\n      - dir: /x\n"
            ),
        })
    }

    #[test]
    fn a_signature_lands_in_the_model_with_its_position() {
        let recipe = parse_sources(
            "  tools:\n    archive: vendor/tools.tar.gz\n    signature:\n      path: vendor/tools.tar.gz.sig\n      key: keys/upstream.pub\n  plain: { path: app }\n",
        )
        .unwrap();
        assert_eq!(
            recipe.sources["tools"].signature,
            Some(SignatureSpec {
                path: "vendor/tools.tar.gz.sig".into(),
                key: "keys/upstream.pub".into(),
                span: Span { line: 7, column: 7 },
            })
        );
        assert_eq!(recipe.sources["plain"].signature, None);
    }

    #[test]
    fn signature_paths_must_be_relative_and_complete() {
        let cases = [
            (
                "{ path: /srv/app.sig, key: k.pub }",
                "signature path `/srv/app.sig` is absolute",
            ),
            (
                "{ path: app.sig, key: /etc/keys/k.pub }",
                "key path `/etc/keys/k.pub` is absolute",
            ),
            ("{ path: '', key: k.pub }", "signature path is empty"),
            (
                "{ path: app.sig }",
                "the signature of source `app` has no `key`",
            ),
            (
                "{ key: k.pub }",
                "the signature of source `app` has no `path`",
            ),
            (
                "{ path: app.sig, key: k.pub, sha256: x }",
                "unknown field `sha256`, expected one of `path`, `key`",
            ),
        ];
        for (signature, expected) in cases {
            let err = parse_sources(&format!("  app: {{ path: app, signature: {signature} }}\n"))
                .unwrap_err();
            let err = crate::diag::Report::of(&err).to_string();
            assert!(err.contains(expected), "{signature}: {err}");
            assert!(err.contains("= help:"), "{signature}: {err}");
        }
    }
}
