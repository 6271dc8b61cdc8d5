//! Errors that point into the recipe: file, line, column, the offending line and a hint.
//!
//! Rendered like a compiler diagnostic so a user can jump straight to the place:
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
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub span: Span,
    pub message: String,
    pub hint: Option<String>,
    /// The source line the span points into (without its newline), if there is one.
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &RecipeFile, span: Span, message: impl Into<String>) -> Self {
        let source_line = (span.line > 0)
            .then(|| file.text.lines().nth(span.line as usize - 1))
            .flatten()
            .map(str::to_string);
        Diagnostic {
            file: file.path.clone(),
            span,
            message: message.into(),
            hint: None,
            source_line,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        let line_no = self.span.line.to_string();
        let pad = " ".repeat(line_no.len());
        write!(
            f,
            "{pad}--> {}:{}:{}",
            self.file.display(),
            self.span.line,
            self.span.column
        )?;
        if let Some(line) = &self.source_line {
            let caret_pad = " ".repeat(self.span.column.saturating_sub(1) as usize);
            write!(f, "\n{pad} |\n{line_no} | {line}\n{pad} | {caret_pad}^")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n{pad} = help: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

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
            d.to_string(),
            "error: unknown field `nam`\n --> r.yaml:2:1\n  |\n2 | nam: x\n  | ^\n  = help: did you mean `name`?"
        );
    }
}
