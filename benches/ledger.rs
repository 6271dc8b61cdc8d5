//! `cargo xtask bench-ledger [N]` (or `cargo bench --bench ledger -- N`): the audit
//! ledger's speed targets, measured on a real ledger file of N entries (default
//! 1,000,000). Prints append latency (excluding fsync, at the end of the full
//! ledger, so it shows appends do not slow down as the ledger grows) and the time to
//! read and verify everything (chain, every signature, the Merkle root), plus the
//! same verify through the release `cairn ledger verify` binary when it is built.

use cairn::keys;
use cairn::ledger::{self, Action, Entry, Ledger};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn entry(i: u64) -> Entry {
    let details = BTreeMap::from([
        (
            "image".to_string(),
            format!("registry.invalid/app@sha256:{:064x}", i).into(),
        ),
        ("digest".to_string(), format!("sha256:{:064x}", i).into()),
        (
            "env".to_string(),
            if i.is_multiple_of(2) {
                "prod"
            } else {
                "staging"
            }
            .into(),
        ),
    ]);
    Entry::new(
        Action::Deploy,
        "bench",
        cairn::oci::time::rfc3339(1_790_000_000 + i),
        details,
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("N is a number of entries"))
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ledger.jsonl");
    let key = keys::generate();
    let ledger = Ledger::open(&path);

    let start = Instant::now();
    let mut first = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        ledger.append(entry(i), &key, false).expect("append");
        if i < 1000 {
            first.push(t.elapsed());
        }
    }
    let fill = start.elapsed();
    let mut last = Vec::new();
    for i in n..n + 1000 {
        let t = Instant::now();
        ledger.append(entry(i), &key, false).expect("append");
        last.push(t.elapsed());
    }
    first.sort();
    last.sort();
    let bytes = std::fs::metadata(&path).expect("ledger").len();
    println!(
        "ledger: {} entries, {:.1} MB, filled in {:.1} s",
        n + 1000,
        bytes as f64 / 1e6,
        fill.as_secs_f64()
    );
    println!(
        "append (no fsync), first 1000: median {:.3} ms, p99 {:.3} ms",
        percentile(&first, 0.5).as_secs_f64() * 1e3,
        percentile(&first, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "append (no fsync), at {} entries: median {:.3} ms, p99 {:.3} ms (target < 1 ms)",
        n,
        percentile(&last, 0.5).as_secs_f64() * 1e3,
        percentile(&last, 0.99).as_secs_f64() * 1e3
    );

    let trusted = vec![(keys::key_id(&key.verifying_key()), key.verifying_key())];
    let t = Instant::now();
    let contents = ledger.read().expect("read");
    let verdict = ledger::verify(&contents, &trusted, None);
    let took = t.elapsed();
    assert!(verdict.verified(), "{:?}", verdict.problems);
    println!(
        "read + verify (library, {} threads): {:.2} s (target < 10 s)",
        rayon::current_num_threads(),
        took.as_secs_f64()
    );

    let cli = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/cairn");
    if cli.exists() {
        let public = dir.path().join("k.pub");
        std::fs::write(&public, keys::public_pem(&key.verifying_key())).expect("write key");
        let t = Instant::now();
        let status = std::process::Command::new(&cli)
            .args(["ledger", "--ledger"])
            .arg(&path)
            .args(["verify", "--key"])
            .arg(&public)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run cairn");
        assert!(status.success(), "cairn ledger verify failed");
        println!(
            "cairn ledger verify (release binary): {:.2} s",
            t.elapsed().as_secs_f64()
        );
    }
}
