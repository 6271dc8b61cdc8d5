//! Stage 1: recipe. Reads a YAML recipe (schema v1) and turns it into a validated
//! [`Recipe`], or a [`Diagnostic`] naming file, line and column with a hint.

mod diagnostic;
mod model;
mod parse;

pub use diagnostic::Diagnostic;
pub use model::*;
pub use parse::{load, parse};
