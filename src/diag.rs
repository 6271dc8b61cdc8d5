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
    /// The part of line `line` to show (without its newline), if the file has it:
    /// the whole line, or a [`Snippet`] of a long one.
    pub source_line: Option<&'a str>,
    /// Where in `source_line` the caret goes, from 1: `column`, unless the line was
    /// cut to a [`Snippet`].
    pub caret: u32,
}

/// The most characters of a source line shown under an error: a longer line (a huge
/// inline `content:`) is cut to a window around the column, so that an error costs
/// memory and screen in proportion to this, not to the line.
pub const SNIPPET_WIDTH: usize = 120;

/// The most characters of a message that quotes the input: the middle of a longer one
/// is left out (see [`clip`]).
pub const MESSAGE_WIDTH: usize = 1000;

/// A window of at most [`SNIPPET_WIDTH`] characters of a source line around a column,
/// `…` marking each side that was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    pub text: String,
    /// The column's place in `text`, from 1.
    pub caret: u32,
}

impl Snippet {
    /// The window of `line` around `column` (from 1, counted in characters).
    pub fn of(line: &str, column: u32) -> Snippet {
        let before = (column.max(1) - 1) as usize;
        let start = before.saturating_sub(SNIPPET_WIDTH / 2);
        let mut chars = line.char_indices().skip(start);
        let Some((start_byte, _)) = chars.next() else {
            // The column is past the end of the line: show the end of it.
            let tail_start = line
                .char_indices()
                .rev()
                .nth(SNIPPET_WIDTH - 1)
                .map_or(0, |(i, _)| i);
            let cut = tail_start > 0;
            let text = format!("{}{}", if cut { "…" } else { "" }, &line[tail_start..]);
            let shown = text.chars().count();
            return Snippet {
                caret: u32::try_from(shown + 1).unwrap_or(u32::MAX),
                text,
            };
        };
        let end_byte = chars.nth(SNIPPET_WIDTH - 1).map_or(line.len(), |(i, _)| i);
        let cut_left = start > 0;
        let cut_right = end_byte < line.len();
        let text = format!(
            "{}{}{}",
            if cut_left { "…" } else { "" },
            &line[start_byte..end_byte],
            if cut_right { "…" } else { "" }
        );
        let caret = before - start + 1 + usize::from(cut_left);
        Snippet {
            text,
            caret: u32::try_from(caret).unwrap_or(u32::MAX),
        }
    }
}

/// `text` with its middle left out if it has more than [`MESSAGE_WIDTH`] characters:
/// a message quoting a huge input value stays readable and small.
pub fn clip(text: &str) -> Cow<'_, str> {
    let Some((head_end, _)) = text.char_indices().nth(MESSAGE_WIDTH) else {
        return Cow::Borrowed(text);
    };
    let head_end = text
        .char_indices()
        .nth(MESSAGE_WIDTH * 3 / 4)
        .map_or(head_end, |(i, _)| i);
    let tail_start = text
        .char_indices()
        .rev()
        .nth(MESSAGE_WIDTH / 4 - 1)
        .map_or(head_end, |(i, _)| i.max(head_end));
    let left_out = text[head_end..tail_start].chars().count();
    Cow::Owned(format!(
        "{} … ({left_out} characters left out) … {}",
        &text[..head_end],
        &text[tail_start..]
    ))
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
                let caret_pad = " ".repeat(at.caret.saturating_sub(1) as usize);
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
                caret: 3,
            }),
            hint: Some("did you mean `name`?".into()),
        };
        assert_eq!(
            report.to_string(),
            "error: unknown field `nam`\n  --> r.yaml:12:3\n   |\n12 |   nam: x\n   |   ^\n   = help: did you mean `name`?"
        );
    }

    #[test]
    fn a_long_line_is_shown_as_a_window_around_the_column() {
        let line = format!("content: {}", "x".repeat(10_000_000));
        let near_start = Snippet::of(&line, 10);
        assert_eq!(near_start.caret, 10);
        assert!(near_start.text.starts_with("content: xx") && near_start.text.ends_with('…'));
        assert_eq!(near_start.text.chars().count(), SNIPPET_WIDTH + 1);

        let far = Snippet::of(&line, 5_000_000);
        assert!(far.text.starts_with('…') && far.text.ends_with('…'));
        assert!(far.text.chars().count() <= SNIPPET_WIDTH + 2);
        assert_eq!(far.caret as usize, SNIPPET_WIDTH / 2 + 2);

        let past_end = Snippet::of(&line, u32::MAX);
        assert!(
            past_end.text.starts_with('…') && past_end.text.chars().count() == SNIPPET_WIDTH + 1
        );
        assert_eq!(past_end.caret as usize, SNIPPET_WIDTH + 2);

        let short = Snippet::of("  nam: x", 3);
        assert_eq!((short.text.as_str(), short.caret), ("  nam: x", 3));
    }

    #[test]
    fn a_long_message_keeps_its_start_and_end() {
        let message = format!("found string \"{}\", expected a map", "é".repeat(1_000_000));
        let clipped = clip(&message);
        assert!(clipped.starts_with("found string \"éé"));
        assert!(clipped.ends_with("\", expected a map"));
        assert!(clipped.contains("characters left out"));
        assert!(clipped.chars().count() < MESSAGE_WIDTH + 60);
        assert_eq!(clip("short"), "short");
    }
}
