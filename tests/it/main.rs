//! The one integration-test binary (`cargo test --test it`): every module drives the
//! real `cairn` binary or the library's public API, with the fixtures under the
//! repository root.

mod common;

mod attest;
mod build_errors;
mod cli;
mod golden;
mod layer_cache;
mod ledger_cli;
mod ledger_store;
mod multiarch;
mod recipe_errors;
mod reproducible;
mod sbom_validation;
mod signed_sources;
mod trace_diff;

mod tools;
