//! `base:` — the image a recipe builds on: `{ layout: <dir>, digest: sha256:... }` (an
//! OCI layout relative to the recipe) or `{ ref: REGISTRY/NAME[:TAG][@sha256:...] }`.
//! The digest pins the manifest or index; without one, the lock file pins it.

use super::context::{span_of, Cx};
use super::model::{BaseSource, BaseSpec, ImageRef};
use super::raw::RawBase;
use super::sources::relative_path;
use super::values::Invalid;
use super::Diagnostic;
use crate::digest::Sha256Digest;
use serde_saphyr::Spanned;

const HINT: &str = "write `base: { layout: <OCI layout dir>, digest: sha256:<hex> }` or `base: { ref: registry.example/name:tag@sha256:<hex> }`";

pub(super) fn parse(
    cx: &Cx,
    raw: Option<Spanned<RawBase>>,
) -> Result<Option<BaseSpec>, Diagnostic> {
    let Some(raw) = raw else { return Ok(None) };
    let at = span_of(&raw);
    let RawBase {
        layout,
        reference,
        digest,
    } = raw.value;
    let digest = digest.map(|d| cx.check(&d, |d| parse_digest(d)).map(|v| (v, span_of(&d))));
    let digest = digest.transpose()?;
    match (layout, reference) {
        (Some(layout), None) => {
            cx.check(&layout, |p| {
                relative_path("base layout path", p, "base/debian")
            })?;
            Ok(Some(BaseSpec {
                source: BaseSource::Layout { path: layout.value },
                digest: digest.map(|d| d.0),
                span: at,
            }))
        }
        (None, Some(reference)) => {
            if let Some((_, digest_at)) = digest {
                return Err(cx
                    .error(
                        digest_at,
                        "a `ref:` base carries its digest in the reference",
                    )
                    .with_hint(
                        "write `ref: registry.example/name:tag@sha256:<hex>` and drop `digest:`",
                    ));
            }
            let (image, digest) = cx.check(&reference, |r| image_ref(r))?;
            Ok(Some(BaseSpec {
                source: BaseSource::Registry(image),
                digest,
                span: at,
            }))
        }
        (Some(_), Some(reference)) => Err(cx
            .error(span_of(&reference), "the base has both `layout` and `ref`")
            .with_hint(HINT)),
        (None, None) => Err(cx
            .error(at, "the base has neither `layout` nor `ref`")
            .with_hint(HINT)),
    }
}

fn parse_digest(d: &str) -> Result<Sha256Digest, Invalid> {
    if !d.starts_with("sha256:") {
        return Err(Invalid::new(format!("`{d}` is not a `sha256:` digest"))
            .with_hint("write the manifest or index digest as `sha256:<64 hex digits>`"));
    }
    d.parse::<Sha256Digest>().map_err(|e| {
        Invalid::new(e.to_string())
            .with_hint("write the manifest or index digest as `sha256:<64 hex digits>`")
    })
}

/// Parses `REGISTRY/REPOSITORY[:TAG][@sha256:HEX]`. The registry is always explicit
/// (no implied default registry), and a tag or a digest is required.
pub(super) fn image_ref(text: &str) -> Result<(ImageRef, Option<Sha256Digest>), Invalid> {
    let hint = "write `registry.example/name:tag`, `registry.example/name@sha256:<hex>` or both, with the registry host first";
    let (name, digest) = match text.split_once('@') {
        Some((name, digest)) => (name, Some(parse_digest(digest)?)),
        None => (text, None),
    };
    let Some((registry, rest)) = name.split_once('/') else {
        return Err(Invalid::new(format!("`{text}` does not name a registry")).with_hint(hint));
    };
    let registry_ok = (registry.contains('.') || registry.contains(':') || registry == "localhost")
        && registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !registry_ok {
        return Err(Invalid::new(format!(
            "`{registry}` in `{text}` is not a registry host (a host name with a dot or a port, or `localhost`)"
        ))
        .with_hint(hint));
    }
    let (repository, tag) = match rest.rsplit_once(':') {
        Some((repo, tag)) => (repo, Some(tag)),
        None => (rest, None),
    };
    let repo_ok = !repository.is_empty()
        && repository.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    if !repo_ok {
        return Err(Invalid::new(format!(
            "`{repository}` in `{text}` is not a repository name (lower-case letters, digits, `.`, `_`, `-`, separated by `/`)"
        ))
        .with_hint(hint));
    }
    if let Some(tag) = tag {
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !tag_ok {
            return Err(
                Invalid::new(format!("`{tag}` in `{text}` is not a valid tag")).with_hint(hint),
            );
        }
    }
    if tag.is_none() && digest.is_none() {
        return Err(
            Invalid::new(format!("`{text}` names neither a tag nor a digest"))
                .with_hint("add `:tag` (cairn pins it in the lock file) or `@sha256:<hex>`"),
        );
    }
    Ok((
        ImageRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
        },
        digest,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_split_into_registry_repository_tag_and_digest() {
        let hex = "ab".repeat(32);
        let (r, d) = image_ref(&format!("127.0.0.1:5000/lib/base:1.0@sha256:{hex}")).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "lib/base", Some("1.0"))
        );
        assert_eq!(d.unwrap().hex(), hex);
        assert_eq!(r.to_string(), "127.0.0.1:5000/lib/base:1.0");
        let (r, d) = image_ref("registry.example/base:latest").unwrap();
        assert_eq!((r.tag.as_deref(), d), (Some("latest"), None));
    }

    #[test]
    fn refs_without_registry_tag_or_with_bad_parts_are_refused() {
        for bad in [
            "debian:12",
            "debian/base:12",
            "registry.example/base",
            "registry.example/Base:1",
            "registry.example/base:-x",
            "registry.example/base@sha256:12",
            "registry.example/base@md5:abc",
        ] {
            assert!(image_ref(bad).is_err(), "{bad}");
        }
    }
}
