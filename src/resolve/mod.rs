//! Stage 2: resolve. Pins every source by digest and snapshots its contents.

pub mod archive;
pub mod tree;
