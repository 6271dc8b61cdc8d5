//! The body of each `cairn` command, one module per command (or per small family of
//! commands): each takes its parsed arguments, calls the library and prints the
//! result; each returns the exit code. Binary-only: the library never sees clap,
//! anyhow or the terminal.

pub mod audit;
pub mod build;
pub mod cache;
pub mod inspect;
pub mod keygen;
pub mod ledger;
pub mod progress;
pub mod push;
pub mod recipe;
pub mod registry;
pub mod serve;
pub mod source_roots;
pub mod unrecorded;
pub mod verify;
