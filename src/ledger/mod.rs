//! The audit ledger: an append-only, signed, hash-chained record of what was built,
//! pushed, verified and deployed, with a Merkle tree (RFC 6962) over its entries and
//! signed checkpoints (C2SP tlog-checkpoint / signed-note), verifiable offline by
//! anyone with the public keys.

pub mod entry;
pub mod store;
