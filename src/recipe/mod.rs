//! Stage 1: recipe. Reads a YAML recipe (schema v1) and turns it into a validated
//! [`Recipe`], or a [`Diagnostic`] naming file, line and column with a hint.

mod accounts;
mod base;
mod config;
mod context;
mod diagnostic;
mod layers;
mod limits;
mod model;
mod packages;
mod parse;
mod raw;
mod sources;
mod values;
mod vm;
mod yaml_error;

pub use diagnostic::Diagnostic;
pub use model::*;
pub use packages::valid_package_name;
pub use parse::{load, parse, parse_bytes, SCHEMA_VERSION};
pub use values::did_you_mean;
