//! The push hook end to end: Debian's `docker-registry` sends its notifications to a
//! `cairn serve` the test starts (and stops by PID, with SIGTERM); images pushed with
//! `cairn push` and `skopeo copy` are verified and recorded once; deliveries sent
//! again, before and after a restart of the service, append nothing; and
//! `cairn audit registry` finds the image whose events a registry restart lost.

use crate::common::{self, registry};
use registry::{free_port, Notify, Registry, RegistryAuth};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "hook-secret-7f3a";

/// Everything one test's service uses: keys, the ledger, the secret file, and the
/// port it listens on (fixed, as the registry's configuration names it).
struct Setup {
    dir: tempfile::TempDir,
    /// Signs images and their build entries.
    builder_key: PathBuf,
    builder_pub: PathBuf,
    /// Signs what the service records.
    service_key: PathBuf,
    service_pub: PathBuf,
    ledger: PathBuf,
    port: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (builder_key, builder_pub, _) = common::keygen(dir.path(), "builder");
        let (service_key, service_pub, _) = common::keygen(dir.path(), "service");
        std::fs::write(dir.path().join("secret"), format!("{SECRET}\n")).unwrap();
        std::fs::create_dir_all(dir.path().join("docker")).unwrap();
        Setup {
            ledger: dir.path().join("ledger.jsonl"),
            dir,
            builder_key,
            builder_pub,
            service_key,
            service_pub,
            port: free_port(),
        }
    }

    fn notify(&self) -> Notify {
        Notify {
            url: format!("http://127.0.0.1:{}/registry/events", self.port),
            secret: SECRET.to_string(),
        }
    }

    /// `cairn` without the caller's Docker config or ledger variables.
    fn cairn(&self) -> Command {
        let mut cmd = common::cairn();
        cmd.env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env_remove("CAIRN_REGISTRY_USERNAME")
            .env_remove("CAIRN_REGISTRY_PASSWORD")
            .env_remove("CAIRN_LEDGER")
            .env_remove("CAIRN_LEDGER_KEY");
        cmd
    }

    /// Builds recipes/hello.yaml into `out`, signed, with its build entry in the
    /// ledger; or unsigned and unrecorded, from a copy of the recipe with another
    /// epoch (the same recipe is the same image, whose signatures the registry may
    /// hold). Returns the layout.
    fn build_hello(&self, out: &str, signed: bool) -> PathBuf {
        let recipes = common::repo_root().join("recipes");
        let recipe = if signed {
            recipes.join("hello.yaml")
        } else {
            let copy = self.dir.path().join("recipes");
            std::fs::create_dir_all(&copy).unwrap();
            common::run_ok(
                Command::new("cp")
                    .arg("-r")
                    .arg(recipes.join("hello"))
                    .arg(recipes.join("bin"))
                    .arg(recipes.join("hello.lock"))
                    .arg(&copy),
            );
            let text = std::fs::read_to_string(recipes.join("hello.yaml")).unwrap();
            let text = text.replace("epoch: 1700000000", "epoch: 1800000000");
            std::fs::write(copy.join("hello.yaml"), text).unwrap();
            copy.join("hello.yaml")
        };
        let mut cmd = self.cairn();
        cmd.arg("build")
            .arg(recipe)
            .arg("-o")
            .arg(self.dir.path().join(out))
            .args(["--locked", "-q"]);
        if signed {
            cmd.arg("--sign-key")
                .arg(&self.builder_key)
                .arg("--ledger")
                .arg(&self.ledger);
        }
        common::run_ok(&mut cmd);
        self.dir.path().join(out).join("hello")
    }

    /// Starts `cairn serve` for this setup and waits until it answers `/healthz`.
    fn serve(&self) -> Service {
        self.serve_with(&[])
    }

    /// [`Setup::serve`] with more flags.
    fn serve_with(&self, extra: &[&str]) -> Service {
        let log = self.dir.path().join("serve.log");
        let child = self
            .cairn()
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--ledger")
            .arg(&self.ledger)
            .arg("--ledger-key")
            .arg(&self.service_key)
            .arg("--key")
            .arg(&self.builder_pub)
            .arg("--hook-secret-file")
            .arg(self.dir.path().join("secret"))
            .arg("--insecure")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        let service = Service {
            child,
            port: self.port,
            log,
        };
        service.wait_ready();
        service
    }

    /// The ledger's entries, as JSON.
    fn entries(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.ledger)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The entries of `action` whose reference names `repository:tag`.
    fn entries_for(&self, action: &str, repository_tag: &str) -> Vec<serde_json::Value> {
        self.entries()
            .into_iter()
            .filter(|e| e["action"] == action)
            .filter(|e| {
                e["details"]["reference"]
                    .as_str()
                    .is_some_and(|r| r.contains(&format!("/{repository_tag}@")))
            })
            .collect()
    }

    /// Waits (boundedly) until the service has recorded the verdict on
    /// `repository:tag`; returns its push and verify entries.
    fn recorded(
        &self,
        service: &Service,
        repository_tag: &str,
    ) -> (serde_json::Value, serde_json::Value) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let verdicts = self.entries_for("verify", repository_tag);
            if !verdicts.is_empty() {
                let pushes = self.entries_for("push", repository_tag);
                assert_eq!(pushes.len(), 1, "{pushes:?}");
                assert_eq!(verdicts.len(), 1, "{verdicts:?}");
                return (pushes[0].clone(), verdicts[0].clone());
            }
            assert!(
                Instant::now() < deadline,
                "no verdict on {repository_tag} was recorded; the service said:\n{}",
                service.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `cairn audit registry SCOPE --json`: (exit code, report).
    fn audit(&self, scope: &str) -> (i32, serde_json::Value) {
        let out = self
            .cairn()
            .args([
                "audit",
                "registry",
                scope,
                "--insecure",
                "--json",
                "--ledger",
            ])
            .arg(&self.ledger)
            .arg("--key")
            .arg(&self.builder_pub)
            .arg("--key")
            .arg(&self.service_pub)
            .output()
            .unwrap();
        let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "audit printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap(), report)
    }
}

/// A running `cairn serve`, stopped with SIGTERM by PID (or killed when dropped).
struct Service {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Service {
    fn wait_ready(&self) {
        for _ in 0..600 {
            if let Some((status, _)) = http(self.port, "GET", "/healthz", &[], b"") {
                if status == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cairn serve did not answer /healthz:\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for it to drain and exit 0.
    fn stop(mut self) {
        common::run_ok(
            Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string()),
        );
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "cairn serve exited {status}: {}",
            self.log()
        );
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to the service on loopback: (status, body), or `None` if
/// nothing answers.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.get(9..12)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The delivery docker-registry made for the push recorded in `push`: the same event
/// id, target and request, in the envelope it sends.
fn redelivery(push: &serde_json::Value) -> Vec<u8> {
    let d = &push["details"];
    serde_json::to_vec(&serde_json::json!({"events": [{
        "id": d["event_id"],
        "timestamp": push["time"],
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d["digest"],
            "repository": d["repository"],
            "url": format!("http://{}/v2/{}/manifests/{}", d["registry"].as_str().unwrap(), d["repository"].as_str().unwrap(), d["digest"].as_str().unwrap()),
            "tag": d["tag"],
        },
        "request": {"addr": d["source_address"], "host": d["registry"], "method": "PUT"},
        "actor": {},
    }]}))
    .unwrap()
}

/// Sends `body` to the hook as the registry does; (status, JSON answer).
fn deliver(port: u16, body: &[u8], secret: &str) -> (u16, serde_json::Value) {
    let bearer = format!("Bearer {secret}");
    let (status, answer) = http(
        port,
        "POST",
        "/registry/events",
        &[
            ("Authorization", &bearer),
            (
                "Content-Type",
                "application/vnd.docker.distribution.events.v1+json",
            ),
        ],
        body,
    )
    .expect("cairn serve answers");
    (status, serde_json::from_str(&answer).unwrap())
}

/// `skopeo copy [EXTRA...]` of a layout's image to `target` over plain HTTP.
fn skopeo_copy(layout: &Path, target: &str, extra: &[&str]) {
    common::run_ok(
        Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .args(extra)
            .arg(format!("oci:{}:hello", layout.display()))
            .arg(format!("docker://{target}")),
    );
}

#[test]
fn pushes_are_verified_and_recorded_once_and_deliveries_sent_again_append_nothing() {
    let setup = Setup::new();
    let mut registry = Registry::start_notifying(RegistryAuth::None, Some(setup.notify()));
    let service = setup.serve();
    let signed = setup.build_hello("signed", true);
    let unsigned = setup.build_hello("unsigned", false);

    // Signed, pushed with `cairn push` (referrers, the `sha256-<hex>` index and the
    // cosign tag, then the tag): one push and one passing verdict, for the tag.
    common::run_ok(
        setup
            .cairn()
            .arg("push")
            .arg(&signed)
            .arg(format!("{}/team/signed:v1", registry.host))
            .arg("--insecure"),
    );
    let (push, verdict) = setup.recorded(&service, "team/signed:v1");
    let digest = push["details"]["digest"].as_str().unwrap().to_string();
    assert_eq!(
        push["details"]["reference"],
        format!("{}/team/signed:v1@{digest}", registry.host)
    );
    assert_eq!(push["details"]["repository"], "team/signed");
    assert_eq!(push["details"]["tag"], "v1");
    assert!(
        push["details"]["source_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{push}"
    );
    assert_eq!(verdict["details"]["verified"], true, "{verdict}");
    assert_eq!(verdict["details"]["failed_checks"], serde_json::json!([]));
    assert_eq!(verdict["details"]["image"], digest.as_str());
    assert_eq!(verdict["details"]["event_id"], push["details"]["event_id"]);

    // Unsigned, pushed with skopeo: recorded, and refused by the verdict.
    skopeo_copy(
        &unsigned,
        &format!("{}/team/unsigned:v1", registry.host),
        &[],
    );
    let (_, refused) = setup.recorded(&service, "team/unsigned:v1");
    assert_eq!(refused["details"]["verified"], false, "{refused}");
    let failed = refused["details"]["failed_checks"].as_array().unwrap();
    assert!(failed.contains(&"signatures".into()), "{refused}");

    // Nothing else was recorded: no entries for referrers or blobs.
    let by_service = |setup: &Setup| {
        setup
            .entries()
            .into_iter()
            .filter(|e| e["details"]["event_id"].is_string())
            .count()
    };
    assert_eq!(by_service(&setup), 4);

    // The registry delivers the signed push again: a duplicate, before and after the
    // service restarts.
    let again = redelivery(&push);
    let (status, answer) = deliver(setup.port, &again, SECRET);
    assert_eq!(
        (status, &answer["duplicates"]),
        (202, &1.into()),
        "{answer}"
    );
    let (status, _) = deliver(setup.port, &again, "not-the-secret");
    assert_eq!(status, 401);
    service.stop();
    let service = setup.serve();
    let (status, answer) = deliver(setup.port, &again, SECRET);
    assert_eq!(
        (status, &answer["duplicates"]),
        (202, &1.into()),
        "{answer}"
    );

    // A registry restart: what was delivered stays recorded once, and the next push
    // is recorded once.
    registry.restart();
    common::run_ok(
        setup
            .cairn()
            .arg("push")
            .arg(&signed)
            .arg(format!("{}/team/signed:v2", registry.host))
            .arg("--insecure"),
    );
    let (_, verdict) = setup.recorded(&service, "team/signed:v2");
    assert_eq!(verdict["details"]["verified"], true, "{verdict}");
    assert_eq!(setup.entries_for("push", "team/signed:v1").len(), 1);
    assert_eq!(by_service(&setup), 6);
    service.stop();

    // The ledger, with the service's entries among the builder's, verifies.
    common::run_ok(
        setup
            .cairn()
            .args(["ledger", "verify", "--ledger"])
            .arg(&setup.ledger)
            .arg("--key")
            .arg(&setup.builder_pub)
            .arg("--key")
            .arg(&setup.service_pub),
    );
}

#[test]
fn a_push_while_the_service_is_down_is_delivered_later_or_found_by_the_audit() {
    let setup = Setup::new();
    let mut registry = Registry::start_notifying(RegistryAuth::None, Some(setup.notify()));
    let signed = setup.build_hello("signed", true);
    let unsigned = setup.build_hello("unsigned", false);
    let service = setup.serve();
    common::run_ok(
        setup
            .cairn()
            .arg("push")
            .arg(&signed)
            .arg(format!("{}/team/app:v1", registry.host))
            .arg("--insecure"),
    );
    setup.recorded(&service, "team/app:v1");

    // Everything in the registry is explained: the signed image by its build entry,
    // its referrers and the `sha256-<hex>` and `.att` tags by their subject.
    let (code, report) = setup.audit(&registry.host);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["findings"], serde_json::json!([]));
    assert_eq!(report["tags"], 3, "{report}");

    // Down while an image is pushed: the registry keeps delivering until the
    // service is back, and it is recorded once.
    service.stop();
    skopeo_copy(&unsigned, &format!("{}/team/app:late", registry.host), &[]);
    let service = setup.serve();
    let (_, late) = setup.recorded(&service, "team/app:late");
    assert_eq!(late["details"]["verified"], false);

    // Down while an image is pushed, and the registry restarts before it could
    // deliver: the event is lost, and the audit finds the image (converted by skopeo
    // to a Docker manifest: a digest nothing has recorded).
    service.stop();
    skopeo_copy(
        &unsigned,
        &format!("{}/other/lost:v1", registry.host),
        &["--format", "v2s2"],
    );
    registry.restart();
    let service = setup.serve();
    let (code, report) = setup.audit(&registry.host);
    assert_eq!(code, 1, "{report}");
    let findings: Vec<(String, &str, &str)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                format!(
                    "{}:{}",
                    f["repository"].as_str().unwrap(),
                    f["tag"].as_str().unwrap()
                ),
                f["reason"].as_str().unwrap(),
                f["digest"].as_str().unwrap(),
            )
        })
        .collect();
    let unsigned_digest = late["details"]["image"].as_str().unwrap();
    let lost_digest = findings[0].2;
    assert_ne!(lost_digest, unsigned_digest);
    assert_eq!(
        findings,
        [
            ("other/lost:v1".to_string(), "no_build_entry", lost_digest),
            (
                "team/app:late".to_string(),
                "no_build_entry",
                unsigned_digest
            ),
            (
                "team/app:late".to_string(),
                "failed_verdict",
                unsigned_digest
            ),
        ],
        "{report}"
    );
    assert!(setup.entries_for("push", "other/lost:v1").is_empty());

    // One repository at a time, and the text report for cron mail.
    let (code, report) = setup.audit(&format!("{}/team/app", registry.host));
    assert_eq!((code, report["repositories"].as_u64()), (1, Some(1)));
    let out = setup
        .cairn()
        .args([
            "audit",
            "registry",
            &format!("{}/other/lost", registry.host),
            "--insecure",
            "--ledger",
        ])
        .arg(&setup.ledger)
        .arg("--key")
        .arg(&setup.builder_pub)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!(
            "unexplained: {}/other/lost:v1@{lost_digest}: no signed build entry in the ledger",
            registry.host
        )) && text.contains("NOT explained: 1 finding"),
        "{text}"
    );
    service.stop();
}

#[test]
fn with_on_fail_delete_a_manifest_that_fails_is_deleted_and_the_verdict_says_so() {
    let setup = Setup::new();
    let registry = Registry::start_notifying(RegistryAuth::None, Some(setup.notify()));
    let unsigned = setup.build_hello("unsigned", false);
    let service = setup.serve_with(&["--on-fail", "delete"]);
    let target = format!("{}/team/rogue:v1", registry.host);
    skopeo_copy(&unsigned, &target, &[]);
    let (_, verdict) = setup.recorded(&service, "team/rogue:v1");
    assert_eq!(verdict["details"]["verified"], false, "{verdict}");
    assert_eq!(verdict["details"]["on_fail"], "deleted", "{verdict}");
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{target}"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{target} is still there");
    service.stop();
}
