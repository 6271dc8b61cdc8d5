//! Registries that misbehave, played by plain TCP listeners of the test's own: one
//! that accepts and never answers, one that drips its answer a byte at a time, a
//! bearer challenge whose token realm is plain HTTP on another host, a redirect to
//! another host, and a plain-HTTP server asked for HTTPS. `cairn` must end in bounded
//! time naming the registry and the deadline, and never send credentials where they
//! do not belong. Also the push to a reference pinned to another digest, refused
//! before anything is sent, an upload the registry stops reading, and a Debian mirror
//! that never answers.

use crate::common::{self, build_json, keygen, run_err, write_recipe};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Serves each connection to `listener` with `handle` on a thread of its own; the
/// threads end with the test process.
fn serve(listener: TcpListener, handle: impl Fn(TcpStream) + Send + Sync + 'static) {
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handle = handle.clone();
            std::thread::spawn(move || handle(stream));
        }
    });
}

/// Reads one request's head (up to the blank line); empty if the peer closed first.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// `cairn` without the caller's registry credentials or Docker config, and a trusted
/// key for `verify` (never reached: the registry fails first).
struct Scratch {
    dir: tempfile::TempDir,
    public_key: PathBuf,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let (_, public_key, _) = keygen(dir.path(), "trusted");
        Scratch { dir, public_key }
    }

    /// `cairn build RECIPE -o SCRATCH/out`, with a package cache of its own.
    fn build(&self, recipe: &std::path::Path) -> Command {
        let dir = self.dir.path();
        let mut cmd = self.cairn();
        cmd.arg("build")
            .arg(recipe)
            .arg("-o")
            .arg(dir.join("out"))
            .env("XDG_CACHE_HOME", dir.join("cache"));
        cmd
    }

    fn cairn(&self) -> Command {
        let mut cmd = common::cairn();
        cmd.env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env_remove("CAIRN_REGISTRY_USERNAME")
            .env_remove("CAIRN_REGISTRY_PASSWORD");
        cmd
    }

    /// `cairn verify REF --key K`, plus `extra`, with a registry login (user `alice`,
    /// password `s3cret-password`) when `login`; returns stderr and how long it took.
    fn verify_fails(&self, reference: &str, extra: &[&str], login: bool) -> (String, Duration) {
        let mut cmd = self.cairn();
        if login {
            cmd.env("CAIRN_REGISTRY_USERNAME", "alice")
                .env("CAIRN_REGISTRY_PASSWORD", "s3cret-password");
        }
        let started = Instant::now();
        let (_, stderr) = run_err(
            cmd.arg("verify")
                .arg(reference)
                .arg("--key")
                .arg(&self.public_key)
                .args(extra),
        );
        (stderr, started.elapsed())
    }

    /// `cairn verify ADDR/team/app:v1 --insecure` plus `extra` fails soon (the old
    /// behaviour took minutes), naming the registry, the request, the deadline that
    /// `fired` and how to raise it (`hint`).
    fn verify_gives_up(&self, addr: SocketAddr, extra: &[&str], fired: &str, hint: &str) {
        let mut args = vec!["--insecure"];
        args.extend(extra);
        let (stderr, took) = self.verify_fails(&format!("{addr}/team/app:v1"), &args, false);
        let named =
            format!("the registry at {addr} did not answer GET /v2/team/app/manifests/v1 in time");
        assert!(
            stderr.contains(&named) && stderr.contains(fired) && stderr.contains(hint),
            "{stderr}"
        );
        assert!(took < Duration::from_secs(30), "took {took:?}: {stderr}");
    }
}

fn listen(ip: &str) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// Before: 570 s. Each of the four attempts would wait out the stall deadline; the
/// overall deadline ends them all.
#[test]
fn verify_gives_up_on_a_registry_that_accepts_and_never_answers() {
    let scratch = Scratch::new();
    let (listener, addr) = listen("127.0.0.1");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    serve(listener, move |stream| keep.lock().unwrap().push(stream));
    scratch.verify_gives_up(
        addr,
        &["--timeout", "3s"],
        "overall deadline ran out (--timeout 3s)",
        "raise the overall deadline with --timeout",
    );
    assert!(!held.lock().unwrap().is_empty(), "cairn never connected");
}

/// A listener that answers every request with `head`, then a space a second forever.
fn dripping(head: &'static str) -> SocketAddr {
    let (listener, addr) = listen("127.0.0.1");
    serve(listener, move |mut stream| {
        read_head(&mut stream);
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        while stream.write_all(b" ").is_ok() {
            std::thread::sleep(Duration::from_secs(1));
        }
    });
    addr
}

/// Before: 199 s for a byte every 5 s. The body drips a byte a second after the
/// headers (each read is quick, but the transfer is under 1 KiB per stall window), or
/// the headers themselves drip (they must be complete within the window; each of the
/// four attempts fails so).
#[test]
fn verify_gives_up_on_a_registry_that_drips_its_answer() {
    let scratch = Scratch::new();
    let body_drips = "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 100000\r\n\r\n";
    let headers_drip = "HTTP/1.1 200 OK\r\nX-Drip: ";
    for (head, fired) in [
        (
            body_drips,
            "fewer than 1024 bytes moved in 2s (the stall deadline)",
        ),
        (
            headers_drip,
            "no complete answer within 2s (the stall deadline)",
        ),
    ] {
        scratch.verify_gives_up(
            dripping(head),
            &["--stall-timeout", "2s"],
            fired,
            "raise the stall deadline with --stall-timeout",
        );
    }
}

/// What a listener saw: the request heads it was sent.
type Seen = Arc<Mutex<Vec<String>>>;

/// A listener on `ip` that answers each request (by its head) with `answer`.
fn answering(ip: &str, answer: impl Fn(&str) -> String + Send + Sync + 'static) -> SocketAddr {
    let (listener, addr) = listen(ip);
    serve(listener, move |mut stream| loop {
        let head = read_head(&mut stream);
        if head.is_empty() || stream.write_all(answer(&head).as_bytes()).is_err() {
            return;
        }
    });
    addr
}

/// A listener on `ip` that records each request head and answers `answer`.
fn recording(ip: &str, answer: &'static str) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let addr = answering(ip, move |head| {
        record.lock().unwrap().push(head.to_string());
        answer.to_string()
    });
    (addr, seen)
}

fn has_authorization(heads: &[String]) -> bool {
    heads
        .iter()
        .any(|h| h.to_ascii_lowercase().contains("\r\nauthorization:"))
}

/// Asserts that a listener was sent requests, none with credentials; `unreached`
/// says what it means if none came.
fn reached_without_credentials(seen: &Seen, unreached: &str) {
    let heads = seen.lock().unwrap();
    assert!(!heads.is_empty(), "{unreached}");
    assert!(!has_authorization(&heads), "credentials sent: {heads:?}");
}

/// Before: the realm received `Authorization: Basic ...`. 127.0.0.2 is loopback,
/// but another host than the registry's 127.0.0.1.
#[test]
fn credentials_never_go_to_a_plain_http_token_realm_on_another_host() {
    let scratch = Scratch::new();
    let (realm, realm_seen) = recording(
        "127.0.0.2",
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"token\":\"t0k3n\"}",
    );
    let registry = answering("127.0.0.1", move |_| {
        format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{realm}/token\",service=\"reg\"\r\nContent-Length: 0\r\n\r\n"
        )
    });
    let reference = format!("{registry}/team/app:v1");
    let (stderr, took) = scratch.verify_fails(&reference, &["--insecure"], true);
    assert!(took < Duration::from_secs(30), "{stderr}");
    assert!(
        stderr.contains(&format!("authentication to {registry} failed"))
            && stderr.contains(&format!(
                "token realm http://{realm}/token is plain HTTP on another host"
            ))
            && stderr.contains("nothing was sent"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    assert!(
        !has_authorization(&realm_seen.lock().unwrap()),
        "the realm received credentials: {:?}",
        realm_seen.lock().unwrap()
    );

    // Without credentials there is nothing to leak: the anonymous token is fetched.
    scratch.verify_fails(&reference, &["--insecure"], false);
    reached_without_credentials(&realm_seen, "no anonymous token request");
}

/// The registry asks for Basic credentials, then redirects the authenticated request
/// to another host: the credentials stay behind.
#[test]
fn credentials_never_follow_a_redirect_to_another_host() {
    let scratch = Scratch::new();
    let (elsewhere, elsewhere_seen) = recording(
        "127.0.0.2",
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
    );
    let registry = answering("127.0.0.1", move |head| {
        if has_authorization(&[head.to_string()]) {
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{elsewhere}/v2/team/app/manifests/v1\r\nContent-Length: 0\r\n\r\n"
            )
        } else {
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"reg\"\r\nContent-Length: 0\r\n\r\n".to_string()
        }
    });
    scratch.verify_fails(&format!("{registry}/team/app:v1"), &["--insecure"], true);
    reached_without_credentials(&elsewhere_seen, "the redirect was not followed");
}

/// Before: `received corrupt message of type InvalidContentType`.
#[test]
fn https_to_a_plain_http_registry_says_to_pass_insecure() {
    let scratch = Scratch::new();
    let (listener, addr) = listen("127.0.0.1");
    // What an HTTP server answers to a TLS ClientHello.
    serve(listener, |mut stream| {
        let mut hello = [0u8; 512];
        let _ = stream.read(&mut hello);
        let _ = stream.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    });
    let (stderr, _) = scratch.verify_fails(&format!("{addr}/team/app:v1"), &[], false);
    assert!(
        stderr.contains(&format!(
            "the registry at {addr} answered in plain HTTP, not HTTPS"
        )) && stderr.contains("pass --insecure"),
        "{stderr}"
    );
    assert!(!stderr.contains("InvalidContentType"), "{stderr}");
}

/// Before: the registry was blamed ("the registry served a ... that does not match").
#[test]
fn a_push_to_another_digest_is_refused_before_anything_is_sent() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path();
    std::fs::write(dir.join("motd"), "hello\n").unwrap();
    let recipe = write_recipe(
        dir,
        "r.yaml",
        "cairn: 1\nname: t\nsources:\n  motd: { path: motd }\nlayers:\n  - name: l\n    contents:\n      - copy: motd\n        to: /etc/motd\n",
    );
    let report = build_json(&recipe, &dir.join("out"), &["--quiet"]);
    let actual = report["manifest_digest"].as_str().unwrap().to_string();
    let (listener, addr) = listen("127.0.0.1");
    let connected = Arc::new(Mutex::new(false));
    let flag = connected.clone();
    serve(listener, move |_| *flag.lock().unwrap() = true);
    let pinned = format!("{addr}/team/t@sha256:{}", "0".repeat(64));
    let (_, stderr) = run_err(
        scratch
            .cairn()
            .arg("push")
            .arg(dir.join("out/t"))
            .arg(&pinned)
            .arg("--insecure"),
    );
    assert!(
        stderr.contains(&format!("{pinned} pins a digest, but the image in"))
            && stderr.contains(&format!("is {actual}: nothing was pushed"))
            && stderr.contains(&format!("{addr}/team/t@{actual}"))
            && !stderr.contains("the registry served"),
        "{stderr}"
    );
    assert!(!*connected.lock().unwrap(), "cairn talked to the registry");
}

impl Scratch {
    /// A recipe installing `hello` from the Debian mirror at `mirror` (its keyring is
    /// never read: the mirror fails first).
    fn packages_from(&self, mirror: SocketAddr) -> PathBuf {
        let dir = self.dir.path();
        std::fs::write(dir.join("keyring.gpg"), b"never read").unwrap();
        write_recipe(
            dir,
            "pkgs.yaml",
            &format!(
                "cairn: 1\nname: pkgs\nrepositories:\n  test:\n    mirror: http://{mirror}\n    suite: stable\n    components: [main]\n    keyring: keyring.gpg\npackages: [hello]\nlayers:\n  - name: base\n    contents:\n      - dir: /tmp\n"
            ),
        )
    }
}

/// A Debian mirror that accepts and never answers ends the build after the stall
/// deadline (30 s), naming the file, the mirror and the deadline.
#[test]
fn a_debian_mirror_that_never_answers_ends_the_build() {
    let scratch = Scratch::new();
    let (listener, mirror) = listen("127.0.0.1");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    serve(listener, move |stream| keep.lock().unwrap().push(stream));
    let (_, stderr) = run_err(&mut scratch.build(&scratch.packages_from(mirror)));
    assert!(
        stderr.contains(&format!("from http://{mirror}/dists/stable/InRelease"))
            && stderr.contains("the mirror stalled")
            && stderr.contains("(the stall deadline)"),
        "{stderr}"
    );
}

/// A Debian mirror that answers every request `503 Service Unavailable`: the InRelease
/// is asked for three times (1 s, then 2 s apart), and the error names the file, the
/// URL, the answer and the attempts.
#[test]
fn a_debian_mirror_that_keeps_failing_is_asked_three_times_then_named() {
    let scratch = Scratch::new();
    let (listener, mirror) = listen("127.0.0.1");
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    serve(listener, move |mut stream| {
        log.lock().unwrap().push(read_head(&mut stream));
        let _ = stream.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    });
    let (_, stderr) = run_err(&mut scratch.build(&scratch.packages_from(mirror)));
    assert!(
        stderr.contains(&format!(
            "cannot download its InRelease from http://{mirror}/dists/stable/InRelease: http status: 503 (after 3 attempts)"
        )),
        "{stderr}"
    );
    let asked = asked.lock().unwrap();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(
        asked
            .iter()
            .all(|head| head.starts_with("GET /dists/stable/InRelease HTTP/1.1\r\n")),
        "{asked:?}"
    );
}

fn content_length(head: &str) -> u64 {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// A registry that takes the push's first requests, then stops reading the layer's
/// upload: the write stalls once the socket buffers are full, and the push ends after
/// the stall deadline (each of the four attempts), naming the registry and the request,
/// rather than waiting forever.
#[test]
fn a_push_to_a_registry_that_stops_reading_the_upload_gives_up() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path();
    // 24 MiB, stored uncompressed: more than loopback's socket buffers hold.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..24 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(dir.join("noise.bin"), noise).unwrap();
    let recipe = write_recipe(
        dir,
        "noise.yaml",
        "cairn: 1\nname: noise\ncompression: none\nsources:\n  noise: { path: noise.bin }\nlayers:\n  - name: data\n    contents:\n      - copy: noise\n        to: /noise.bin\n",
    );
    let (listener, addr) = listen("127.0.0.1");
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    serve(listener, move |mut stream| loop {
        let head = read_head(&mut stream);
        let answer = match head.split(' ').next().unwrap_or_default() {
            "" => return,
            "GET" => "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
            "HEAD" => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            "POST" => "HTTP/1.1 202 Accepted\r\nLocation: /v2/team/noise/blobs/uploads/1\r\nContent-Length: 0\r\n\r\n",
            // The layer's upload: never read, never answered.
            _ if content_length(&head) > 1 << 20 => {
                keep.lock().unwrap().push(stream);
                return;
            }
            // The config's, and the manifest: taken (unread, as the connection closes).
            _ => "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        };
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    });
    let started = Instant::now();
    let (_, stderr) = run_err(
        scratch
            .build(&recipe)
            .args(["--insecure", "--stall-timeout", "1s", "--push"])
            .arg(format!("{addr}/team/noise:v1")),
    );
    assert!(
        !held.lock().unwrap().is_empty(),
        "no upload reached the registry"
    );
    assert!(
        stderr.contains(&format!("the registry at {addr} did not answer PUT"))
            && stderr
                .contains("the server took nothing of the request for 1s (the stall deadline)"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
