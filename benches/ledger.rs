//! `cargo xtask bench-ledger [N] [--postgres]` (or `cargo bench --bench ledger -- N
//! [--postgres]`): the audit ledger's speed targets, measured on a real ledger file of
//! N entries (default 1,000,000). Prints append latency (excluding fsync, at the end of
//! the full ledger, so it shows appends do not slow down as the ledger grows) and the
//! time and peak resident memory to verify everything (chain, every signature, the
//! Merkle root): streamed as `cairn ledger verify` does, with all entries in memory,
//! and through the release `cairn` binary (built by `cargo xtask bench-ledger`) from
//! the file and from the ledger published as tiles.
//!
//! With `--postgres` it also starts a throwaway PostgreSQL cluster (the integration
//! tests' harness) and measures 8 concurrent durable writers (appends per second, p50
//! and p99 latency) and the release binary's verify of the same N entries imported
//! into the database. Everything is written under the target directory or a temporary
//! directory and deleted at the end.

#[path = "../tests/it/common/postgres.rs"]
#[allow(dead_code)] // the harness's crash and psql helpers serve the tests only
mod postgres;

use cairn::keys::{self, SigningKey};
use cairn::ledger::{self, Action, Entry, Ledger};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Concurrent durable writers in the database bench, and appends each.
const WRITERS: usize = 8;
const APPENDS_PER_WRITER: u64 = 500;

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
    let with_postgres = std::env::args().any(|a| a == "--postgres");
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
    let public = dir.path().join("k.pub");
    std::fs::write(&public, keys::public_pem(&key.verifying_key())).expect("write key");
    let private = dir.path().join("k.pem");
    std::fs::write(&private, keys::private_pem(&key)).expect("write key");
    // The release binary first: a child's peak RSS starts from its parent's at the
    // fork, so it is measured while this process is still small.
    let cli = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/cairn");
    if cli.exists() {
        let location = path.display().to_string();
        let measured = run_measured(cli_verify(&cli, &location, &public));
        println!(
            "cairn ledger verify, file (release binary): {measured} (targets < 10 s, < 200 MB)"
        );
        let tiles = dir.path().join("tiles");
        let mut publish = Command::new(&cli);
        publish.args(["ledger", "--ledger", &location, "tiles"]);
        publish.arg(&tiles).arg("--key").arg(&private);
        publish.stdout(std::process::Stdio::null());
        println!(
            "cairn ledger tiles (release binary): {}",
            run_measured(publish)
        );
        let mut verify = cli_verify(&cli, &location, &public);
        verify.arg("--tiles").arg(&tiles);
        println!(
            "cairn ledger verify --tiles DIR (release binary): {}",
            run_measured(verify)
        );
        std::fs::remove_dir_all(&tiles).expect("remove the tiles");
        if with_postgres {
            bench_postgres(&cli, &path, &public, n + 1000);
        }
    } else if with_postgres {
        panic!("--postgres measures the release binary: build it first (cargo build --release)");
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

/// The release binary's `ledger verify` of `location`, trusting `public`.
fn cli_verify(cli: &Path, location: &str, public: &Path) -> Command {
    let mut verify = Command::new(cli);
    verify.args(["ledger", "--ledger", location, "verify", "--key"]);
    verify.arg(public).stdout(std::process::Stdio::null());
    verify
}

/// 8 concurrent durable writers on an empty database ledger, then the release binary's
/// verify of the `entries` of `file` imported into another database.
fn bench_postgres(cli: &Path, file: &Path, public: &Path, entries: u64) {
    let cluster = postgres::Cluster::start();
    let url = |db: &str| cluster.url_as(postgres::USER, postgres::PASSWORD, db);
    for db in ["writers", "imported"] {
        cluster.psql(&format!("CREATE DATABASE {db}"));
    }

    let writers_url = url("writers");
    let start = Instant::now();
    let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let writers_url = &writers_url;
                scope.spawn(move || {
                    let store = ledger::open(writers_url).expect("open the database ledger");
                    let key: SigningKey = keys::generate();
                    (0..APPENDS_PER_WRITER)
                        .map(|i| {
                            let t = Instant::now();
                            store
                                .append(entry(w as u64 * APPENDS_PER_WRITER + i), &key, true)
                                .expect("append");
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|w| w.join().expect("writer"))
            .collect()
    });
    let wall = start.elapsed();
    latencies.sort();
    let store = ledger::open(&writers_url).expect("open");
    assert_eq!(
        store.size().expect("size"),
        WRITERS as u64 * APPENDS_PER_WRITER
    );
    println!(
        "postgres: {WRITERS} durable writers x {APPENDS_PER_WRITER} appends: {:.0} appends/s, \
         latency p50 {:.2} ms, p99 {:.2} ms (target >= 500/s)",
        latencies.len() as f64 / wall.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3
    );

    let imported = url("imported");
    let mut import = Command::new(cli);
    import.args(["ledger", "--ledger", &imported, "import"]);
    import.arg(file).arg("--key").arg(public);
    import.stdout(std::process::Stdio::null());
    println!(
        "postgres: cairn ledger import of {entries} entries (release binary): {}",
        run_measured(import)
    );
    println!(
        "postgres: cairn ledger verify (release binary): {} (targets < 20 s, < 200 MB)",
        run_measured(cli_verify(cli, &imported, public))
    );
}

/// What one run of the release binary took.
struct Measured {
    wall: Duration,
    /// User plus system CPU time: what the run costs whatever else the machine runs.
    cpu: Duration,
    peak_rss: u64,
}

impl std::fmt::Display for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.2} s wall, {:.2} s CPU, peak RSS {} MB",
            self.wall.as_secs_f64(),
            self.cpu.as_secs_f64(),
            self.peak_rss / 1_000_000
        )
    }
}

/// Runs `command` to success, measuring it.
// The child is reaped by wait4, which also gives its own rusage (Child::wait would not).
#[allow(clippy::zombie_processes)]
fn run_measured(mut command: Command) -> Measured {
    let start = Instant::now();
    let child = command.spawn().expect("run cairn");
    let mut status = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: wait4 waits for the child just spawned and fills the rusage it is given.
    let usage = unsafe {
        let pid = libc::pid_t::try_from(child.id()).expect("a pid");
        assert_eq!(libc::wait4(pid, &mut status, 0, usage.as_mut_ptr()), pid);
        usage.assume_init()
    };
    let took = start.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed"
    );
    let seconds = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Measured {
        wall: took,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        // ru_maxrss is in KiB on Linux.
        peak_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
    }
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
