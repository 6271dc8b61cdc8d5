//! `cargo xtask`: the project's developer commands (see `.cargo/config.toml` for the alias).
//!
//! - `test [ARGS...]`: ensure the Debian tools the integration tests drive are installed,
//!   then run `cargo test --workspace --locked ARGS...` and exit with its status.
//! - `test --fast [ARGS...]`: install nothing; run the unit tests and the integration
//!   tests outside `tests/it/tools/` (see `test_suite.rs`).
//! - `ci`: what `.ci/run` means; the same code path as `test`.
//! - `bench [--size-mb N[,N...]] [--runs N] [--files N[,N...]] [--keep]`: time `cairn build`
//!   (each compression, cold and warm cache) against the gzip, pigz, zstd pipelines and
//!   umoci on a generated tree (see `bench.rs`); `--files` adds builds of N small files
//!   from a directory and an archive, with peak RSS per file (see `bench_files.rs`).
//! - `bench-ledger [N] [--postgres]`: the audit ledger's append and verify speed at N entries
//!   (`benches/ledger.rs`).
//! - `bench-debian`: build time of `recipes/distroless.yaml`, a python3 +
//!   ca-certificates image, `recipes/debian-vm.yaml` and `recipes/immutable-vm.yaml`
//!   from the host's Debian mirror, cold, from the lock with a warm package cache, and
//!   with the layer cache (`bench_debian.rs`).
//! - `bench-disk`: the disk stage (native ext4 and the raw disk) against `mke2fs -d`
//!   of the same 300 MiB tree, as a ratio (`bench_disk.rs`).
//! - `bench-serve`: `cairn serve` under load: 200 concurrent admission requests with a
//!   warm verdict cache, each recorded once, and the service's RSS (`bench_serve.rs`);
//!   a burst of 100 pushes through the registry push hook (`bench_push.rs`).

mod bench;
mod bench_debian;
mod bench_disk;
mod bench_files;
mod bench_push;
mod bench_serve;
mod bench_tree;
mod failures;
mod measure;
mod prng;
mod test_suite;
#[cfg(test)]
mod tidy;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  test [ARGS...]               install missing test tools (as root), then
                               cargo test --workspace --locked ARGS...
  test --fast [ARGS...]        no installs, no registry, apt, qemu or Python
                               validators: the unit tests and the integration
                               tests outside tests/it/tools/
  ci                           the same as `test`; what .ci/run runs
  bench [--size-mb N[,N...]] [--runs N] [--files N[,N...]] [--keep]
                               time cairn build (gzip, zstd, none; cold and warm
                               cache) against tar | gzip, pigz -p2, zstd -T2 and
                               umoci repack on generated trees of about N MiB
                               (default 300; e.g. 100,300,1024), N runs each
                               (default 3); --keep leaves cairn's layouts in
                               target/bench/; --files builds N small files from a
                               directory and an archive (e.g. 100000,1000000;
                               alone, it skips the tree sizes), files kept in
                               target/bench-files/
  bench-ledger [N] [--postgres]
                               append latency and verify time of an N-entry audit
                               ledger (default 1000000), from the file and from
                               tiles; --postgres adds 8 concurrent durable writers
                               and a verify from a throwaway PostgreSQL cluster
  bench-debian                 build time of recipes/distroless.yaml, a python3 +
                               ca-certificates image, recipes/debian-vm.yaml and
                               recipes/immutable-vm.yaml (Debian packages from the
                               host's mirror), cold, from the lock, with the layer
                               cache
  bench-disk                   the disk stage (ext4 root, raw disk) against
                               mke2fs -d of the same 300 MiB tree, as a ratio
  bench-serve                  cairn serve: p99 of 200 concurrent admission
                               requests over 20 digests (warm cache), each
                               recorded exactly once; a burst of 100 pushes
                               through the push hook, each verified and
                               recorded once; service peak RSS";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode> {
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(ExitCode::FAILURE);
    };
    match command.as_str() {
        "test" | "ci" => match rest.split_first() {
            Some((flag, args)) if flag == "--fast" => test_suite::run_fast(args),
            _ => test_suite::run(rest),
        },
        "bench" => bench::run(&bench::Options::parse(rest)?),
        "bench-ledger" => {
            run_checked(cargo().args(["build", "--release", "-p", "cairn"]))?;
            let status = cargo()
                .args(["bench", "-p", "cairn", "--bench", "ledger", "--"])
                .args(rest)
                .status()
                .context("running cargo bench")?;
            Ok(exit_code(status))
        }
        "bench-debian" => bench_debian::run(),
        "bench-disk" => bench_disk::run(),
        "bench-serve" => bench_serve::run(),
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// The workspace root: xtask lives in `<root>/xtask`.
fn repo_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR` as cargo does.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => repo_root().join(dir),
        None => repo_root().join("target"),
    }
}

/// The cargo that started us (`cargo xtask` sets `CARGO`), so toolchain overrides hold.
fn cargo() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    command.current_dir(repo_root());
    command
}

/// Runs `command` with inherited stdio and fails unless it exits 0.
fn run_checked(command: &mut std::process::Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// Turns a child's exit status into ours (a signal death becomes 1).
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}
