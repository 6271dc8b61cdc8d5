//! Turns a serde-saphyr error into our [`Diagnostic`]: its position, a message in
//! recipe terms (without serde-saphyr's own location prefix and snippet; the
//! diagnostic renders its own) and a hint, using the key the error sits under.

use super::context::span;
use super::model::{RecipeFile, Span};
use super::values::{did_you_mean, list};
use super::Diagnostic;
use serde_saphyr::{Error, MessageFormatter, UserMessageFormatter};

pub(super) fn diagnostic(file: &RecipeFile, err: &Error) -> Diagnostic {
    let at = err
        .location()
        .map(|location| span(&location))
        .unwrap_or_default();
    let key = key_before(&file.text, at);
    let (message, hint) = describe(innermost(err), key.as_deref(), &file.text, at);
    let diagnostic = Diagnostic::new(file, at, message);
    match hint {
        Some(hint) => diagnostic.with_hint(hint),
        None => diagnostic,
    }
}

/// The error itself, without the snippet and alias wrappers around it.
fn innermost(mut err: &Error) -> &Error {
    loop {
        err = match err {
            Error::WithSnippet { error, .. } | Error::AliasError { error, .. } => error,
            other => return other,
        };
    }
}

fn describe(err: &Error, key: Option<&str>, text: &str, at: Span) -> (String, Option<String>) {
    let subject = key.map_or_else(|| "this value".to_string(), |k| format!("`{k}`"));
    match err {
        Error::SerdeUnknownField {
            field, expected, ..
        } => (
            format!(
                "unknown field `{field}`, expected one of {}",
                list(expected.iter().copied())
            ),
            Some(match did_you_mean(field, expected.iter().copied()) {
                Some(close) => format!("did you mean `{close}`?"),
                None => format!("remove `{field}` or rename it to one of the fields listed"),
            }),
        ),
        Error::DuplicateMappingKey { key: dup, .. } => {
            let dup = dup.as_deref().unwrap_or("?");
            let first = first_occurrence(text, at, dup)
                .map(|line| format!("; the first `{dup}` is on line {line}"))
                .unwrap_or_default();
            (
                format!("duplicate key `{dup}`"),
                Some(format!(
                    "a key may appear only once in a mapping{first}: merge the two or remove one"
                )),
            )
        }
        Error::Unexpected { expected, .. } => match *expected {
            "sequence start" => (format!("{subject} must be a list"), list_hint(key)),
            // Only the document itself starts at column 1 without a key.
            "mapping start" if at.column == 1 && key.is_none() => (
                "a recipe must be a YAML mapping of fields".to_string(),
                Some("start the file with `cairn: 1`, then `name:`, `layers:` ...".to_string()),
            ),
            "mapping start" => match (key, list_parent(text, at)) {
                (None, Some("contents")) => (
                    "each item of `contents` must be an op (a mapping)".to_string(),
                    Some(
                        "write an op such as `- dir: /tmp` or `- copy: app` with `to:` below it"
                            .to_string(),
                    ),
                ),
                (None, Some(parent)) => (
                    format!("each item of `{parent}` must be a mapping"),
                    Some(
                        "write the item as `- key: value` with more `key: value` lines below it"
                            .to_string(),
                    ),
                ),
                (Some(k), _) => (
                    format!("`{k}` must be a mapping"),
                    Some(format!(
                        "write `{k}:` followed by indented `key: value` lines"
                    )),
                ),
                (None, None) => (
                    "this value must be a mapping".to_string(),
                    Some("write indented `key: value` lines here".to_string()),
                ),
            },
            "string scalar" => (
                format!("{subject} must be a single value (a string), not a list or mapping"),
                Some("quote the value if it contains `[`, `{`, `:` or `#`".to_string()),
            ),
            other => (format!("expected {other}"), None),
        },
        Error::InvalidScalar { ty, .. } => {
            let max = match *ty {
                "u32" => u32::MAX.to_string(),
                "u64" => u64::MAX.to_string(),
                other => return (format!("{subject} is not a valid {other}"), None),
            };
            (
                format!("{subject} must be a whole number from 0 to {max}"),
                Some(number_hint(key)),
            )
        }
        Error::NullIntoString { .. } => (
            format!("{subject} has no value"),
            Some("write a value after the `:`; use \"\" for an empty string".to_string()),
        ),
        Error::MultipleDocuments { .. } => (
            "a recipe is one YAML document, but a second one starts here".to_string(),
            Some("remove the `---` line and merge the documents into one".to_string()),
        ),
        Error::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (
            format!("{subject} has the wrong type: found {unexpected}, expected {expected}"),
            None,
        ),
        Error::ExternalMessage { .. } => {
            let message = UserMessageFormatter.format_message(err);
            let hint = syntax_hint(&message).to_string();
            (format!("invalid YAML: {message}"), Some(hint))
        }
        other => (
            UserMessageFormatter.format_message(other).into_owned(),
            None,
        ),
    }
}

fn syntax_hint(message: &str) -> &'static str {
    if message.contains("quote") {
        "close the quote on the same value, or write multi-line text as a block (`content: |`)"
    } else if message.contains("bracket") {
        "close the `[` or `{`, or quote the value if the bracket is part of the text"
    } else if message.contains("mapping values are not allowed") {
        "check the indentation of this line, or quote a value that contains `: `"
    } else if message.contains("tab") || message.contains("cannot start any token") {
        "indent with spaces; YAML does not allow tabs for indentation"
    } else {
        "check the indentation, quotes and brackets around this position"
    }
}

fn list_hint(key: Option<&str>) -> Option<String> {
    Some(match key {
        Some("layers") => {
            "each layer is a list item: `- name: base`, with `contents:` below it".to_string()
        }
        Some("contents") => {
            "each op is a list item, e.g. `- copy: app` with `to: /usr/bin/app` below it"
                .to_string()
        }
        Some(k @ ("entrypoint" | "cmd")) => {
            format!("write the command as a list, e.g. `{k}: [/usr/bin/hello, --verbose]`")
        }
        Some(k) => format!("write `{k}: [a, b]`, or one `- item` per line below `{k}:`"),
        None => "write `[a, b]`, or one `- item` per line".to_string(),
    })
}

fn number_hint(key: Option<&str>) -> String {
    match key {
        Some("epoch") => "seconds since 1970-01-01 00:00 UTC, e.g. `epoch: 1700000000`".to_string(),
        Some(k @ ("uid" | "gid")) => format!("a numeric id, e.g. `{k}: 65532`"),
        _ => "write digits only, without quotes or a sign".to_string(),
    }
}

/// The mapping key written just before `at` on its line (`  mode: x` -> `mode`), if
/// the value at `at` is a mapping value.
fn key_before(text: &str, at: Span) -> Option<String> {
    let line = text.lines().nth((at.line as usize).checked_sub(1)?)?;
    let before: String = line
        .chars()
        .take(at.column.saturating_sub(1) as usize)
        .collect();
    let before = before.trim_end();
    // The position is after the `:` (`key: [x]`), or on it for an empty value (`key:`).
    let at_colon = line.chars().nth(at.column.saturating_sub(1) as usize) == Some(':');
    let key = before
        .strip_suffix(':')
        .or(at_colon.then_some(before))?
        .rsplit([' ', '{', ',', '\t'])
        .next()?;
    let is_key = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    is_key.then(|| key.to_string())
}

/// For a value that is a block list item (`  - value`), the key of the list
/// (`contents:` above it).
fn list_parent(text: &str, at: Span) -> Option<&str> {
    let lines: Vec<&str> = text.lines().take(at.line as usize).collect();
    let line = lines.last()?;
    let before: String = line
        .chars()
        .take(at.column.saturating_sub(1) as usize)
        .collect();
    if !before.trim_end().ends_with('-') {
        return None;
    }
    let dash_indent = before.len() - before.trim_start().len();
    lines[..lines.len() - 1].iter().rev().find_map(|above| {
        let trimmed = above.trim_start();
        let indent = above.len() - trimmed.len();
        if trimmed.is_empty() || trimmed.starts_with('#') || indent > dash_indent {
            return None;
        }
        if indent == dash_indent && trimmed.starts_with('-') {
            return None; // an earlier item of the same list
        }
        Some(
            trimmed
                .trim_start_matches("- ")
                .trim_end()
                .strip_suffix(':'),
        )
    })?
}

/// The line of the first `key:` in the mapping where `key` repeats at `at`
/// (a block mapping: same column, scanning upwards until the mapping ends).
fn first_occurrence(text: &str, at: Span, key: &str) -> Option<usize> {
    let column = at.column.checked_sub(1)? as usize;
    let lines: Vec<&str> = text
        .lines()
        .take((at.line as usize).checked_sub(1)?)
        .collect();
    for (index, line) in lines.iter().enumerate().rev() {
        let (prefix, rest) = (line.get(..column), line.get(column..));
        let is_entry_prefix = prefix.is_some_and(|p| p.chars().all(|c| c == ' ' || c == '-'));
        if is_entry_prefix
            && rest.is_some_and(|r| {
                r.strip_prefix(key)
                    .is_some_and(|after| after.trim_start().starts_with(':'))
            })
        {
            return Some(index + 1);
        }
        let indent = line.len() - line.trim_start().len();
        let blank = line.trim().is_empty() || line.trim_start().starts_with('#');
        if !blank && indent < column && !line.trim_start().starts_with('-') {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, column: u32) -> Span {
        Span { line, column }
    }

    #[test]
    fn finds_the_key_a_value_belongs_to() {
        let text = "layers: x\n  - mode: 755\n  { path: [a] }\n  - [1]\n  HOME:\n";
        assert_eq!(key_before(text, at(1, 9)).as_deref(), Some("layers"));
        assert_eq!(key_before(text, at(2, 11)).as_deref(), Some("mode"));
        assert_eq!(key_before(text, at(3, 11)).as_deref(), Some("path"));
        assert_eq!(key_before(text, at(4, 5)), None);
        assert_eq!(key_before(text, at(5, 7)).as_deref(), Some("HOME"));
    }

    #[test]
    fn finds_the_key_of_the_list_an_item_is_in() {
        let text = "layers:\n  - name: a\n    contents:\n      - dir: /x\n\n      - /tmp\n";
        assert_eq!(list_parent(text, at(6, 9)), Some("contents"));
        assert_eq!(list_parent(text, at(2, 5)), Some("layers"));
        assert_eq!(list_parent(text, at(4, 14)), None);
    }

    #[test]
    fn finds_the_first_of_two_duplicate_keys() {
        let text = "layers:\n  - name: a\n    contents: []\n    name: b\n";
        assert_eq!(first_occurrence(text, at(4, 5), "name"), Some(2));
        let text = "name: a\nconfig:\n  name: b\n  x: 1\n  name: c\n";
        assert_eq!(first_occurrence(text, at(5, 3), "name"), Some(3));
    }
}
