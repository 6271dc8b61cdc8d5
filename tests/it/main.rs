//! The one integration-test binary (`cargo test --test it`): every module drives the
//! real `cairn` binary or the library's public API, with the fixtures under the
//! repository root.
//!
//! Modules at this level need only `cairn` and base tools (sh, tar, gzip, zstd, openssl,
//! ssh-keygen, e2fsprogs: `FAST_TIER_COMMANDS` in `xtask/src/test_suite.rs`):
//! `cargo xtask test --fast` runs them. A test that needs anything else `cargo xtask
//! test` installs (a registry, apt, qemu, skopeo, umoci, runc, podman, the Python
//! validators) belongs under [`tools`], which the fast tier skips; run there by
//! mistake, such a tool fails the test, naming this rule.

mod common;

mod attest;
mod build_errors;
mod cli;
mod elf_machine;
mod fuzz_corpora;
mod golden;
mod hostile_archives;
mod hostile_registry;
mod layer_cache;
mod ledger_cli;
mod ledger_store;
mod ledger_tiles;
mod ledger_unreachable;
mod messages;
mod multiarch;
mod recipe_errors;
mod reproducible;
mod signed_sources;
mod trace_diff;

mod tools;
