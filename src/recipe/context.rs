//! What every section parser needs: the recipe file, to turn positions into
//! [`Diagnostic`]s, and small checks shared by several sections.

use super::model::{RecipeFile, Span};
use super::raw::{SpannedMap, Text};
use super::values::Invalid;
use super::Diagnostic;
use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::fmt::Display;

pub(super) struct Cx<'a> {
    file: &'a RecipeFile,
}

impl<'a> Cx<'a> {
    pub fn new(file: &'a RecipeFile) -> Self {
        Cx { file }
    }

    pub fn error(&self, at: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file, at, message)
    }

    pub fn invalid(&self, at: Span, invalid: Invalid) -> Diagnostic {
        let diagnostic = self.error(at, invalid.message);
        match invalid.hint {
            Some(hint) => diagnostic.with_hint(hint),
            None => diagnostic,
        }
    }

    /// Runs a value parser on a spanned value, placing its complaint at the value.
    pub fn check<T, U>(
        &self,
        value: &Spanned<T>,
        parse: impl FnOnce(&T) -> Result<U, Invalid>,
    ) -> Result<U, Diagnostic> {
        parse(&value.value).map_err(|invalid| self.invalid(span(&value.referenced), invalid))
    }

    /// A required value, or an error at `at` (the enclosing mapping) with a hint.
    pub fn require<T>(
        &self,
        value: Option<T>,
        at: Span,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Result<T, Diagnostic> {
        value.ok_or_else(|| self.error(at, message).with_hint(hint))
    }

    /// Whether a scalar was written as a string, quoted or tagged `!!str` (so that
    /// `"755"` and `755` can be told apart although both arrive as the text `755`).
    /// Looks where the scalar is defined, so an alias of a quoted anchor counts.
    pub fn is_quoted<T>(&self, value: &Spanned<T>) -> bool {
        let Some(offset) = value.defined.span().byte_offset() else {
            return false;
        };
        let text = &self.file.text;
        let (before, rest) = (text.get(..offset as usize), text.get(offset as usize..));
        rest.is_some_and(|r| r.starts_with(['"', '\'']))
            || before.is_some_and(|b| b.trim_end().ends_with("!!str"))
    }
}

pub(super) fn span(at: &Location) -> Span {
    Span {
        line: u32::try_from(at.line()).unwrap_or(u32::MAX),
        column: u32::try_from(at.column()).unwrap_or(u32::MAX),
    }
}

pub(super) fn span_of<T>(value: &Spanned<T>) -> Span {
    span(&value.referenced)
}

/// Remembers keys already seen in one list, to report the second of two equal ones.
pub(super) struct Unique<K> {
    what: &'static str,
    seen: BTreeMap<K, Span>,
}

impl<K: Ord + Display> Unique<K> {
    pub fn new(what: &'static str) -> Self {
        Unique {
            what,
            seen: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, cx: &Cx, key: K, at: Span) -> Result<(), Diagnostic> {
        if let Some(first) = self.seen.get(&key) {
            return Err(cx
                .error(at, format!("duplicate {} `{key}`", self.what))
                .with_hint(format!(
                    "{}s must be unique; `{key}` is already used on line {}",
                    self.what, first.line
                )));
        }
        self.seen.insert(key, at);
        Ok(())
    }
}

pub(super) fn non_empty_key(what: &'static str) -> impl Fn(&str) -> Result<(), Invalid> {
    move |key| {
        if key.is_empty() {
            Err(Invalid::new(format!("empty {what} key")).with_hint("give the key a name"))
        } else {
            Ok(())
        }
    }
}

/// A string-to-string map (`env`, `labels`, `annotations`) with keys checked by
/// `check_key`, sorted.
pub(super) fn string_map(
    cx: &Cx,
    raw: Option<SpannedMap<Text>>,
    check_key: impl Fn(&str) -> Result<(), Invalid>,
) -> Result<BTreeMap<String, String>, Diagnostic> {
    let mut map = BTreeMap::new();
    for (key, value) in raw.map(|m| m.0).unwrap_or_default() {
        cx.check(&key, |k| check_key(k))?;
        map.insert(key.value, value.value);
    }
    Ok(map)
}
