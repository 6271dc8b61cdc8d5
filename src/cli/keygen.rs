//! `cairn keygen`: write a new Ed25519 signing key pair and print its key id.

use anyhow::Result;
use cairn::keys;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct KeygenArgs {
    /// Path prefix for the two files.
    #[arg(default_value = "cairn")]
    prefix: PathBuf,
}

/// Writes PREFIX.key and PREFIX.pub; prints the key id on stdout.
pub fn run(args: KeygenArgs) -> Result<i32> {
    let key = keys::generate();
    let (private, public) = keys::write_pair(&key, &args.prefix)?;
    eprintln!("wrote {} and {}", private.display(), public.display());
    println!("{}", keys::key_id(&key.verifying_key()));
    Ok(0)
}
