//! Errors that point into the recipe: file, line, column, the offending line and a hint.
//!
//! Rendered by [`crate::diag::Report`] like a compiler diagnostic, so a user can jump
//! straight to the place:
//!
//! ```text
//! error: unknown field `contens`, expected one of name, contents
//!   --> recipes/hello.yaml:12:5
//!    |
//! 12 |     contens:
//!    |     ^
//!    = help: did you mean `contents`?
//! ```

use super::model::{RecipeFile, Span};
use crate::diag::{clip, Diagnose, Location, Snippet};
use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub span: Span,
    pub message: String,
    pub hint: Option<String>,
    /// The source line the span points into (without its newline), if there is one;
    /// a window of it around the column if it is long.
    pub source_line: Option<Snippet>,
}

impl Diagnostic {
    pub fn new(file: &RecipeFile, span: Span, message: impl Into<String>) -> Self {
        let source_line = (span.line > 0)
            .then(|| file.text.lines().nth(span.line as usize - 1))
            .flatten()
            .map(|line| Snippet::of(line, span.column));
        let message = message.into();
        Diagnostic {
            file: file.path.clone(),
            span,
            message: clip(&message).into_owned(),
            hint: None,
            source_line,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// With the hint of `error`, the cause this diagnostic places in the recipe.
    pub fn with_hint_of(mut self, error: &dyn Diagnose) -> Self {
        self.hint = error.hint().map(Cow::into_owned);
        self
    }
}

/// The message alone: [`crate::diag::Report`] adds the location and the hint.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl Diagnose for Diagnostic {
    fn hint(&self) -> Option<Cow<'_, str>> {
        self.hint.as_deref().map(Cow::Borrowed)
    }

    fn location(&self) -> Option<Location<'_>> {
        Some(Location {
            file: &self.file,
            line: self.span.line,
            column: self.span.column,
            source_line: self.source_line.as_ref().map(|s| s.text.as_str()),
            caret: self
                .source_line
                .as_ref()
                .map_or(self.span.column, |s| s.caret),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_snippet_and_hint() {
        let file = RecipeFile {
            path: "r.yaml".into(),
            dir: ".".into(),
            text: "cairn: 1\nnam: x\n".into(),
        };
        let d = Diagnostic::new(&file, Span { line: 2, column: 1 }, "unknown field `nam`")
            .with_hint("did you mean `name`?");
        assert_eq!(
            crate::diag::Report::of(&d).to_string(),
            "error: unknown field `nam`\n --> r.yaml:2:1\n  |\n2 | nam: x\n  | ^\n  = help: did you mean `name`?"
        );
    }
}
