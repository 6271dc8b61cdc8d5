//! `limits:` — how much each untrusted archive may hold: every archive source, and the
//! base image's layers together. Unset fields keep their defaults
//! ([`Limits::DEFAULT`]); a limit can be raised or lowered, never turned off.

use super::context::{span_of, Cx};
use super::raw::RawLimits;
use super::values::{self, Invalid};
use super::Diagnostic;
use crate::snapshot::limits::{size_text, Limits};
use serde_saphyr::Spanned;

pub(super) fn parse(cx: &Cx, raw: Option<Spanned<RawLimits>>) -> Result<Limits, Diagnostic> {
    let Some(raw) = raw else {
        return Ok(Limits::DEFAULT);
    };
    let at = span_of(&raw);
    let RawLimits { entries, bytes } = raw.value;
    if entries.is_none() && bytes.is_none() {
        return Err(cx.error(at, "`limits:` sets no limit").with_hint(format!(
            "set `entries` (default {}) or `bytes` (default {}), or drop `limits:`",
            Limits::DEFAULT.entries,
            size_text(Limits::DEFAULT.bytes)
        )));
    }
    let mut limits = Limits::DEFAULT;
    if let Some(entries) = entries {
        limits.entries = cx.check(&entries, |&n| positive(n, "entries"))?;
    }
    if let Some(bytes) = bytes {
        limits.bytes = cx.check(&bytes, |s| {
            let n = values::byte_size(s, "write a size such as `16GiB` or `512MiB`")?;
            positive(n, "bytes")
        })?;
    }
    Ok(limits)
}

fn positive(n: u64, field: &str) -> Result<u64, Invalid> {
    if n == 0 {
        return Err(
            Invalid::new(format!("`{field}: 0` would refuse every archive"))
                .with_hint("raise the limit, or drop the field to keep the default"),
        );
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{parse as parse_recipe, RecipeFile};
    use std::path::PathBuf;

    fn recipe_limits(limits: &str) -> Result<Limits, String> {
        let text = format!(
            "cairn: 1\nname: t\nplatform: linux/amd64\n{limits}\
             layers:\n  - name: l\n    contents:\n      - dir: /tmp\n"
        );
        let file = RecipeFile {
            path: PathBuf::from("r.yaml"),
            dir: PathBuf::from("."),
            text,
        };
        parse_recipe(file)
            .map(|r| r.limits)
            .map_err(|d| format!("{d} at line {}", d.span.line))
    }

    #[test]
    fn limits_default_and_are_raised_field_by_field() {
        assert_eq!(recipe_limits(""), Ok(Limits::DEFAULT));
        assert_eq!(
            recipe_limits("limits:\n  entries: 5000000\n"),
            Ok(Limits {
                entries: 5_000_000,
                ..Limits::DEFAULT
            })
        );
        assert_eq!(
            recipe_limits("limits: { bytes: 32GiB }\n").map(|l| l.bytes),
            Ok(32 << 30)
        );
        assert_eq!(
            recipe_limits("limits: { bytes: 1048576 }\n").map(|l| l.bytes),
            Ok(1 << 20)
        );
    }

    #[test]
    fn bad_limits_are_reported_at_their_value() {
        let err = recipe_limits("limits:\n  bytes: lots\n").unwrap_err();
        assert!(
            err.contains("`lots` is not a size") && err.ends_with("line 5"),
            "{err}"
        );
        let err = recipe_limits("limits:\n  entries: 0\n").unwrap_err();
        assert!(err.contains("would refuse every archive"), "{err}");
        let err = recipe_limits("limits: {}\n").unwrap_err();
        assert!(err.contains("sets no limit"), "{err}");
        let err = recipe_limits("limits:\n  files: 3\n").unwrap_err();
        assert!(err.contains("files"), "{err}");
    }
}
