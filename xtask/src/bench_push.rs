//! The push-burst part of `cargo xtask bench-serve`: Debian's `docker-registry` on a
//! loopback port sends its notifications to a `cairn serve` (release binary) whose
//! queue holds only [`QUEUE`] pushes, and one signed image is pushed once, then put
//! under [`PUSHES`] tags at once (one manifest PUT each, all in flight together). The
//! registry delivers one event per tag; what the queue cannot hold is answered 503 and
//! delivered again. Reported: the time until the last verdict is recorded, how many
//! deliveries were answered 503, that every push has exactly one push entry and one
//! passing verify entry (none lost, none doubled), and the service's peak RSS.

use crate::bench_serve::{free_port, peak_rss, start_registry, wait_for_port, Process};
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Tags pushed in the burst.
const PUSHES: usize = 100;
/// The hook's queue: smaller than the burst, so that the registry has to retry.
const QUEUE: usize = 8;
const SECRET: &str = "bench-push-secret";

/// Runs the burst in `dir`; `cairn` gives a command running the release binary in a
/// clean environment, `layout` is a signed image and `public` the key that signed it.
pub fn push_burst(
    cairn: &dyn Fn() -> Command,
    dir: &Path,
    layout: &Path,
    public: &Path,
) -> Result<()> {
    let dir = dir.join("push-burst");
    let _ = std::fs::remove_dir_all(&dir);
    let service_port = free_port()?;
    let (_registry, registry_host) = start_registry(
        &dir,
        &format!(
            "notifications:\n  endpoints:\n    - name: cairn\n      url: http://127.0.0.1:{service_port}/registry/events\n      headers:\n        Authorization: [Bearer {SECRET}]\n      timeout: 10s\n      threshold: 1\n      backoff: 1s\n      ignore:\n        actions: [pull]\n"
        ),
    )?;

    run_ok(cairn().args(["keygen"]).arg(dir.join("service")))?;
    std::fs::write(dir.join("secret"), SECRET)?;
    let ledger = dir.join("ledger.jsonl");
    let log = dir.join("serve.log");
    let service = Process(
        cairn()
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{service_port}"))
            .arg("--ledger")
            .arg(&ledger)
            .arg("--ledger-key")
            .arg(dir.join("service.key"))
            .arg("--key")
            .arg(public)
            .arg("--hook-secret-file")
            .arg(dir.join("secret"))
            .arg("--hook-queue")
            .arg(QUEUE.to_string())
            .arg("--insecure")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?,
    );
    wait_for_port(&format!("127.0.0.1:{service_port}"))?;

    // The image, its referrers and blobs, pushed once (its own tag event included).
    let first = run_ok(
        cairn()
            .arg("push")
            .arg(layout)
            .arg(format!("{registry_host}/bench/app:first"))
            .arg("--insecure"),
    )?;
    let pinned = String::from_utf8(first.stdout)?;
    let digest = pinned
        .trim()
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .context("cairn push printed no REF@DIGEST")?;
    wait_for_verdicts(&ledger, 1, &log)?;
    let hex = digest.trim_start_matches("sha256:");
    let manifest = std::fs::read(layout.join("blobs/sha256").join(hex))?;

    // The burst: every tag's manifest PUT in flight at once.
    let started = Instant::now();
    let puts: Vec<_> = (0..PUSHES)
        .map(|i| {
            let (host, manifest) = (registry_host.clone(), manifest.clone());
            std::thread::spawn(move || put_manifest(&host, &format!("burst-{i:03}"), &manifest))
        })
        .collect();
    for put in puts {
        put.join()
            .map_err(|_| anyhow::anyhow!("a PUT thread panicked"))??;
    }
    let pushed_in = started.elapsed();
    let entries = wait_for_verdicts(&ledger, PUSHES + 1, &log)?;
    let recorded_in = started.elapsed();
    let rss = peak_rss(service.0.id())?;

    // Exactly one push and one passing verdict per tag.
    let mut per_tag: BTreeMap<String, (usize, usize, bool)> = BTreeMap::new();
    for entry in &entries {
        let details = &entry["details"];
        let Some(tag) = details["tag"]
            .as_str()
            .map(str::to_string)
            .or_else(|| tag_of(details["reference"].as_str()?))
        else {
            continue;
        };
        let counts = per_tag.entry(tag).or_default();
        match entry["action"].as_str() {
            Some("push") => counts.0 += 1,
            Some("verify") => {
                counts.1 += 1;
                counts.2 = details["verified"] == true;
            }
            _ => {}
        }
    }
    for i in 0..PUSHES {
        let tag = format!("burst-{i:03}");
        let counts = per_tag.get(&tag).copied().unwrap_or_default();
        ensure!(
            counts == (1, 1, true),
            "tag {tag}: {} push and {} verify entries, verified {}",
            counts.0,
            counts.1,
            counts.2
        );
    }
    let refused = std::fs::read_to_string(&log)?
        .lines()
        .filter(|l| l.contains("\"push_queue_full\""))
        .count();
    println!("push burst ({PUSHES} tags of one signed image at once, hook queue {QUEUE}, 2 workers, file ledger):");
    println!(
        "  all {PUSHES} manifest PUTs answered in {:.2} s",
        pushed_in.as_secs_f64()
    );
    println!(
        "  last verdict recorded {:.2} s after the burst began ({:.0} ms per push)",
        recorded_in.as_secs_f64(),
        recorded_in.as_secs_f64() * 1000.0 / PUSHES as f64
    );
    println!("  deliveries answered 503 (queue full) and delivered again: {refused}");
    println!("  every push: 1 push entry, 1 passing verify entry; none lost, none doubled");
    println!("  service peak RSS: {:.1} MB", rss as f64 / 1e6);
    Ok(())
}

/// The tag in `HOST/REPO:TAG@sha256:...`.
fn tag_of(reference: &str) -> Option<String> {
    let name = reference.split('@').next()?;
    let (_, last) = name.rsplit_once('/')?;
    last.split_once(':').map(|(_, tag)| tag.to_string())
}

fn run_ok(command: &mut Command) -> Result<std::process::Output> {
    let out = command.output().with_context(|| format!("{command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// `PUT /v2/bench/app/manifests/TAG` with the OCI manifest; 201 expected.
fn put_manifest(host: &str, tag: &str, manifest: &[u8]) -> Result<()> {
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "PUT /v2/bench/app/manifests/{tag} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        manifest.len()
    )?;
    stream.write_all(manifest)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    ensure!(
        answer.starts_with("HTTP/1.1 201"),
        "PUT {tag}: {}",
        answer.lines().next().unwrap_or_default()
    );
    Ok(())
}

/// Waits (up to 10 minutes) until the ledger holds `n` verify entries; returns every
/// entry.
fn wait_for_verdicts(ledger: &Path, n: usize, log: &Path) -> Result<Vec<serde_json::Value>> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let entries: Vec<serde_json::Value> = std::fs::read_to_string(ledger)
            .unwrap_or_default()
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let verdicts = entries.iter().filter(|e| e["action"] == "verify").count();
        if verdicts >= n {
            return Ok(entries);
        }
        if Instant::now() > deadline {
            bail!(
                "{verdicts} of {n} verdicts recorded after 10 minutes; the service said:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
