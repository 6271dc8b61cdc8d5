//! `cargo xtask bench-ledger [N]` (or `cargo bench --bench ledger -- N`): the audit
//! ledger's speed targets, measured on a real ledger file of N entries (default
//! 1,000,000). Prints append latency (excluding fsync, at the end of the full
//! ledger, so it shows appends do not slow down as the ledger grows) and the time and
//! peak resident memory to verify everything (chain, every signature, the Merkle root):
//! streamed as `cairn ledger verify` does, with all entries in memory, and through the
//! release `cairn ledger verify` binary when it is built. The ledger is written under
//! the target directory and deleted at the end.

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
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
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
    // The release binary first: a child's peak RSS starts from its parent's at the
    // fork, so it is measured while this process is still small.
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
        let took = t.elapsed();
        assert!(status.success(), "cairn ledger verify failed");
        println!(
            "cairn ledger verify (release binary): {:.2} s, peak RSS {} MB",
            took.as_secs_f64(),
            children_peak_rss_bytes() / 1_000_000
        );
    }

    let threads = rayon::current_num_threads();
    // Streamed first: the in-memory verify leaves freed pages the peak could not tell
    // apart from the streamed verify's own.
    reset_peak_rss();
    let t = Instant::now();
    let mut entries = ledger.entries().expect("open the ledger");
    let verdict = ledger::verify_stream(&mut entries, &trusted, None).expect("read");
    let took = t.elapsed();
    assert!(verdict.verified(), "{:?}", verdict.problems);
    println!(
        "streamed verify (library, {threads} threads): {:.2} s, peak RSS {} MB (targets < 10 s, < 200 MB)",
        took.as_secs_f64(),
        peak_rss_bytes() / 1_000_000
    );

    reset_peak_rss();
    let t = Instant::now();
    let contents = ledger.read().expect("read");
    let verdict = ledger::verify(&contents, &trusted, None);
    let took = t.elapsed();
    assert!(verdict.verified(), "{:?}", verdict.problems);
    drop(contents);
    println!(
        "read all + verify in memory (library, {threads} threads): {:.2} s, peak RSS {} MB",
        took.as_secs_f64(),
        peak_rss_bytes() / 1_000_000
    );
}

/// Resets this process's peak resident set size to its current one (Linux's
/// `clear_refs`), so that [`peak_rss_bytes`] measures what runs after.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
}

/// This process's peak resident set size (`VmHWM`) since the last [`reset_peak_rss`].
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/self/status");
    kib * 1024
}

/// The largest peak resident set size of the child processes waited for (the one
/// `cairn` run).
fn children_peak_rss_bytes() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the rusage it is given; RUSAGE_CHILDREN is a valid `who`.
    let usage = unsafe {
        assert_eq!(
            libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()),
            0
        );
        usage.assume_init()
    };
    // ru_maxrss is in KiB on Linux.
    u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024
}
