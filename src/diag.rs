//! The one way an error tells the user where it happened and what to do about it.
//!
//! Every library error whose user can act on it implements [`Diagnose`]: an optional
//! hint and an optional place in a file. Its `Display` is the message alone;
//! [`Report`] renders message, place and hint as a compiler does:
//!
//! ```text
//! error: unknown field `contens`, expected one of name, contents
//!   --> recipes/hello.yaml:12:5
//!    |
//! 12 |     contens:
//!    |     ^
//!    = help: did you mean `contents`?
//! ```
//!
//! An error without a place renders as `error: MESSAGE`, then `  = help: HINT` if it
//! has a hint. A cancelled operation is the one [`Interrupted`] error, which the
//! error enums of the stages wrap. This module depends on no stage.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

/// An error that may say what the user can do about it, and where in a file it
/// happened. Both default to none.
pub trait Diagnose: std::error::Error {
    /// What the user can do about it, rendered as `= help: ...`.
    fn hint(&self) -> Option<Cow<'_, str>> {
        None
    }

    /// The place in a file (a recipe) that the error points at.
    fn location(&self) -> Option<Location<'_>> {
        None
    }
}

/// A place in a text file, with the line it points into for a snippet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location<'a> {
    /// The path as the user gave it.
    pub file: &'a Path,
    /// From 1.
    pub line: u32,
    /// From 1.
    pub column: u32,
    /// The line `line` (without its newline), if the file has it.
    pub source_line: Option<&'a str>,
}

/// An error as the user sees it: `error: MESSAGE`, the location with the source line
/// and a caret, and `= help: HINT`.
pub struct Report<'a> {
    pub message: &'a dyn fmt::Display,
    pub location: Option<Location<'a>>,
    pub hint: Option<Cow<'a, str>>,
}

impl<'a> Report<'a> {
    /// The report of one error: its message, location and hint.
    pub fn of<E: Diagnose>(error: &'a E) -> Self {
        Report {
            message: error,
            location: error.location(),
            hint: error.hint(),
        }
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        // The gutter is as wide as the line number, so that `|` and `=` line up
        // under it; without a location, one space.
        let mut gutter = " ".to_string();
        if let Some(at) = &self.location {
            let line_no = at.line.to_string();
            gutter = " ".repeat(line_no.len());
            write!(
                f,
                "\n{gutter}--> {}:{}:{}",
                at.file.display(),
                at.line,
                at.column
            )?;
            if let Some(line) = at.source_line {
                let caret_pad = " ".repeat(at.column.saturating_sub(1) as usize);
                write!(
                    f,
                    "\n{gutter} |\n{line_no} | {line}\n{gutter} | {caret_pad}^"
                )?;
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n{gutter} = help: {hint}")?;
        }
        Ok(())
    }
}

/// A warning made of an error that does not stop the command: `message`, then the
/// error's hint, if it has one, on a `  = help:` line as in a [`Report`]. The CLI
/// prints it after `warning: `.
pub fn warning(message: &dyn fmt::Display, error: &dyn Diagnose) -> String {
    match error.hint() {
        Some(hint) => format!("{message}\n  = help: {hint}"),
        None => message.to_string(),
    }
}

/// The operation was cancelled (Ctrl-C) before it finished; nothing was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("no such thing")]
    struct Missing;

    impl Diagnose for Missing {
        fn hint(&self) -> Option<Cow<'_, str>> {
            Some("create it".into())
        }
    }

    #[test]
    fn an_error_without_a_location_renders_message_and_hint() {
        assert_eq!(
            Report::of(&Missing).to_string(),
            "error: no such thing\n  = help: create it"
        );
    }

    #[test]
    fn a_warning_carries_the_hint_as_a_report_does() {
        assert_eq!(
            warning(&"cache skipped: no such thing", &Missing),
            "cache skipped: no such thing\n  = help: create it"
        );
    }

    #[test]
    fn a_location_renders_the_line_and_a_caret_under_the_column() {
        let report = Report {
            message: &"unknown field `nam`",
            location: Some(Location {
                file: Path::new("r.yaml"),
                line: 12,
                column: 3,
                source_line: Some("  nam: x"),
            }),
            hint: Some("did you mean `name`?".into()),
        };
        assert_eq!(
            report.to_string(),
            "error: unknown field `nam`\n  --> r.yaml:12:3\n   |\n12 |   nam: x\n   |   ^\n   = help: did you mean `name`?"
        );
    }
}
