//! `cargo xtask bench-serve`: `cairn serve` under load, with the release binary,
//! against Debian's `docker-registry` on a loopback port, everything in
//! `target/bench-serve/`.
//!
//! Admission: 20 signed images, each pushed under its own digest; one review per image
//! warms the verdict cache, then 200 AdmissionReview requests (10 per image, each its
//! own request uid) are sent at once over plain HTTP on loopback, one connection each.
//! Reported: latency p50/p99/max of those 200 with the cache warm, that every one was
//! allowed, that the ledger holds exactly one deploy entry per request uid, and the
//! service's peak RSS.
//!
//! Push burst (`bench_push.rs`): 100 tags pushed at once to a registry that notifies
//! the service's push hook; every push verified and recorded exactly once.

use crate::{cargo, run_checked, target_dir};
use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const IMAGES: usize = 20;
const CONCURRENT: usize = 200;

pub fn run() -> Result<ExitCode> {
    run_checked(cargo().args(["build", "--release", "-p", "cairn"]))?;
    let bench = Bench::start()?;
    admission(&bench)?;
    // The last image admission built, signed by the bench key.
    crate::bench_push::push_burst(
        &|| bench.cairn(),
        &bench.dir,
        &bench.dir.join("out/bench"),
        &bench.public,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// A registry, a signing key and a scratch directory, shared by the benchmarks.
struct Bench {
    dir: PathBuf,
    cairn: PathBuf,
    /// Kept running while the bench runs.
    _registry: Process,
    /// `127.0.0.1:PORT`
    registry_host: String,
    key: PathBuf,
    public: PathBuf,
}

/// A child process killed (by PID) when dropped.
pub(crate) struct Process(pub(crate) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Bench {
    fn start() -> Result<Bench> {
        let dir = target_dir().join("bench-serve");
        let _ = std::fs::remove_dir_all(&dir);
        let cairn = target_dir().join("release/cairn");
        let (registry, registry_host) = start_registry(&dir, "  delete:\n    enabled: true\n")?;
        let out = Command::new(&cairn)
            .arg("keygen")
            .arg(dir.join("ci"))
            .output()?;
        ensure!(out.status.success(), "cairn keygen failed");
        Ok(Bench {
            key: dir.join("ci.key"),
            public: dir.join("ci.pub"),
            dir,
            cairn,
            _registry: registry,
            registry_host,
        })
    }

    /// `cairn` with a clean environment inside the bench directory.
    fn cairn(&self) -> Command {
        let mut cmd = Command::new(&self.cairn);
        cmd.env("HOME", &self.dir)
            .env("DOCKER_CONFIG", &self.dir)
            .env("CAIRN_NO_CACHE", "1")
            .env_remove("CAIRN_LEDGER")
            .env_remove("CAIRN_LEDGER_KEY");
        cmd
    }

    /// Builds a small image unique to `n`, signed, pushes it as `repository:v1` and
    /// returns `HOST/repository@sha256:...`.
    fn push_signed_image(&self, repository: &str, n: usize) -> Result<String> {
        let recipe = self.dir.join(format!("image-{n}.yaml"));
        std::fs::write(
            &recipe,
            format!(
                "cairn: 1\nname: bench\nepoch: 1700000000\nlayers:\n  - name: app\n    contents:\n      - file: /etc/bench\n        content: \"image {n}\\n\"\n"
            ),
        )?;
        let target = format!("{}/{repository}:v1", self.registry_host);
        let out = self
            .cairn()
            .arg("build")
            .arg(&recipe)
            .arg("-o")
            .arg(self.dir.join("out"))
            .args(["-q", "--json", "--insecure", "--push", &target])
            .arg("--sign-key")
            .arg(&self.key)
            .output()?;
        if !out.status.success() {
            bail!(
                "building and pushing {target}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let digest = report["manifest_digest"]
            .as_str()
            .context("cairn build --json printed no manifest_digest")?;
        Ok(format!("{}/{repository}@{digest}", self.registry_host))
    }

    /// Starts `cairn serve` on a free loopback port with `ledger`; returns it and its
    /// address.
    fn serve(&self, ledger: &Path, log: &Path) -> Result<(Process, String)> {
        let address = format!("127.0.0.1:{}", free_port()?);
        let child = self
            .cairn()
            .args([
                "serve",
                "--listen",
                &address,
                "--insecure",
                "--env",
                "bench",
            ])
            .arg("--ledger")
            .arg(ledger)
            .arg("--ledger-key")
            .arg(&self.key)
            .arg("--key")
            .arg(&self.public)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()?;
        let process = Process(child);
        wait_for_port(&address)?;
        Ok((process, address))
    }
}

/// Debian's `docker-registry` on a free loopback port, storing under `dir/storage`,
/// with `extra` (YAML: more `storage:` keys, then top-level sections) in its
/// configuration; the process and its `127.0.0.1:PORT`.
pub(crate) fn start_registry(dir: &Path, extra: &str) -> Result<(Process, String)> {
    std::fs::create_dir_all(dir.join("storage"))?;
    let host = format!("127.0.0.1:{}", free_port()?);
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n{extra}http:\n  addr: {host}\n",
            dir.join("storage").display()
        ),
    )?;
    let registry = Process(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log"))?)
            .spawn()
            .context("starting docker-registry (Debian package docker-registry)")?,
    );
    wait_for_port(&host)?;
    Ok((registry, host))
}

pub(crate) fn wait_for_port(address: &str) -> Result<()> {
    for _ in 0..400 {
        if TcpStream::connect(address).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    bail!("nothing listens on {address}")
}

/// One POST over a new connection (`Connection: close`); returns the status code and
/// the body.
fn post(address: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no HTTP header in the answer")?;
    let status = std::str::from_utf8(&answer[..split])?
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status in the answer")?;
    Ok((status, answer[split + 4..].to_vec()))
}

fn review(uid: &str, image: &str, dry_run: bool) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": uid,
            "namespace": "bench",
            "operation": "CREATE",
            "userInfo": {"username": "bench", "groups": ["system:authenticated"]},
            "object": {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": uid, "namespace": "bench"},
                       "spec": {"containers": [{"name": "app", "image": image}]}},
            "dryRun": dry_run,
        }
    })
    .to_string()
    .into_bytes()
}

/// Sends one review; returns whether it was allowed.
fn admit(address: &str, uid: &str, image: &str, dry_run: bool) -> Result<bool> {
    let (status, body) = post(address, "/admit", &review(uid, image, dry_run))?;
    ensure!(
        status == 200,
        "{uid}: HTTP {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    ensure!(answer["response"]["uid"] == uid, "{uid}: uid not echoed");
    Ok(answer["response"]["allowed"] == true)
}

/// Sends [`CONCURRENT`] reviews at once (uids `PREFIX-n`, the images in turn);
/// returns their latencies, sorted, and how many were denied.
fn concurrent(
    address: &str,
    images: &[String],
    prefix: &str,
    dry_run: bool,
) -> Result<(Vec<Duration>, usize)> {
    // All threads start together, so the requests are in flight at once.
    let gate = std::sync::Arc::new(std::sync::Barrier::new(CONCURRENT));
    let threads: Vec<_> = (0..CONCURRENT)
        .map(|n| {
            let (gate, address) = (gate.clone(), address.to_string());
            let image = images[n % images.len()].clone();
            let uid = format!("{prefix}-{n}");
            std::thread::spawn(move || -> Result<(Duration, bool)> {
                gate.wait();
                let sent = Instant::now();
                let allowed = admit(&address, &uid, &image, dry_run)?;
                Ok((sent.elapsed(), allowed))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut denied = 0;
    for thread in threads {
        let (latency, allowed) = thread.join().expect("client thread")?;
        latencies.push(latency);
        denied += usize::from(!allowed);
    }
    latencies.sort();
    Ok((latencies, denied))
}

/// Peak resident set of `pid` (VmHWM), in bytes.
pub(crate) fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(kib * 1024)
}

fn admission(bench: &Bench) -> Result<()> {
    println!("admission: pushing {IMAGES} signed images");
    let images: Vec<String> = (0..IMAGES)
        .map(|n| bench.push_signed_image(&format!("bench/app{n}"), n))
        .collect::<Result<_>>()?;
    let ledger = bench.dir.join("admission-ledger.jsonl");
    let (service, address) = bench.serve(&ledger, &bench.dir.join("admission-serve.log"))?;
    let started = Instant::now();
    for (n, image) in images.iter().enumerate() {
        ensure!(
            admit(&address, &format!("warm-{n}"), image, false)?,
            "{image} was not allowed"
        );
    }
    let warming = started.elapsed();
    // Checked only (dryRun), then checked and recorded.
    let dry = concurrent(&address, &images, "dry", true)?;
    let (latencies, denied) = concurrent(&address, &images, "load", false)?;
    let rss = peak_rss(service.0.id())?;
    // The client runs on the same cores: what else runs shows in the latencies.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    drop(service);

    let mut per_uid: BTreeMap<String, usize> = BTreeMap::new();
    for line in std::fs::read_to_string(&ledger)?.lines() {
        let entry: serde_json::Value = serde_json::from_str(line)?;
        if entry["action"] == "deploy" {
            let uid = entry["details"]["uid"].as_str().unwrap_or_default();
            *per_uid.entry(uid.to_string()).or_default() += 1;
        }
    }
    let load_uids = per_uid.keys().filter(|u| u.starts_with("load-")).count();
    let once = per_uid.values().all(|&n| n == 1);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "admission: {IMAGES} images verified (cold cache) in {:.0} ms",
        ms(warming)
    );
    let quantile = |latencies: &[Duration], q: f64| {
        ms(latencies[((latencies.len() as f64 * q).ceil() as usize).max(1) - 1])
    };
    println!(
        "admission: {CONCURRENT} concurrent dryRun requests (checked, not recorded), warm cache: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        quantile(&dry.0, 0.50),
        quantile(&dry.0, 0.99),
        quantile(&dry.0, 1.0),
    );
    println!(
        "admission: {CONCURRENT} concurrent requests over {IMAGES} digests, warm cache, each recorded: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 < 20 ms)",
        quantile(&latencies, 0.50),
        quantile(&latencies, 0.99),
        quantile(&latencies, 1.0),
    );
    println!(
        "admission: {} allowed, {denied} denied; {load_uids} of {CONCURRENT} request uids recorded, {}",
        CONCURRENT - denied,
        if once {
            "each exactly once"
        } else {
            "SOME MORE THAN ONCE"
        }
    );
    println!(
        "admission: load average {} during the run (client and service share the machine)",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "admission: service peak RSS {:.1} MB (target < 100 MB)",
        rss as f64 / 1e6
    );
    ensure!(
        dry.1 == 0 && denied == 0 && load_uids == CONCURRENT && once,
        "not every request was allowed and recorded exactly once"
    );
    Ok(())
}
