//! `cairn serve`'s admission webhook over HTTPS (a test CA and a server certificate
//! made by `openssl`), against images in Debian's `docker-registry`: AdmissionReview v1
//! bodies as the Kubernetes API server sends them (no API server can be installed
//! here), the deploy entries they leave (in a file, and in a real PostgreSQL),
//! `ledger show --env --key`, and the server's defences (malformed and oversized
//! bodies, slow clients, a ledger it cannot write, SIGTERM).

use crate::common::tls::TestCa;
use crate::common::{self, registry::Registry, registry::RegistryAuth};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A scratch directory with its own HOME and Docker config, so no test reads the
/// user's credentials or ledger.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cairn(&self) -> Command {
        let mut cmd = common::cairn();
        cmd.env("HOME", self.path("home"))
            .env("DOCKER_CONFIG", self.path("home"))
            .env_remove("CAIRN_LEDGER")
            .env_remove("CAIRN_LEDGER_KEY")
            .env_remove("CAIRN_IDENTITY")
            .env_remove("CAIRN_REGISTRY_USERNAME")
            .env_remove("CAIRN_REGISTRY_PASSWORD");
        cmd
    }
}

/// A `cairn serve` started by the test, stopped by PID when dropped.
struct Service {
    child: Child,
    log: PathBuf,
    /// `127.0.0.1:PORT`
    address: String,
}

impl Service {
    fn start(mut cmd: Command, log: PathBuf) -> Service {
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn cairn serve");
        let mut service = Service {
            child,
            log,
            address: String::new(),
        };
        for _ in 0..600 {
            let text = service.log();
            if let Some(line) = text.lines().find(|l| l.contains(r#""event":"listening""#)) {
                let line: serde_json::Value = serde_json::from_str(line).unwrap();
                service.address = line["address"].as_str().unwrap().to_string();
                return service;
            }
            if let Ok(Some(status)) = service.child.try_wait() {
                panic!("cairn serve exited ({status}): {text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cairn serve did not start: {}", service.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the PID of the child this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGTERM; returns the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        self.sigterm();
        self.child.wait().unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` over HTTPS trusting only the test CA (or plain HTTP); returns the status and
/// the body.
fn post(url: &str, ca: Option<&Path>, body: &Path) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "120", "-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()));
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    let out = cmd.arg(url).output().expect("curl is installed");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap_or(0), body.to_string())
}

/// An AdmissionReview v1 request, as in the Kubernetes API reference.
/// POSTs `review` to the plain-HTTP service's `/admit`; the status, the answer and the
/// file the body was written to.
fn admit_over_http(
    service: &Service,
    scratch: &Scratch,
    review: serde_json::Value,
) -> (u16, String, PathBuf) {
    let body = scratch.path("review.json");
    std::fs::write(&body, review.to_string()).unwrap();
    let (status, text) = post(&format!("http://{}/admit", service.address), None, &body);
    (status, text, body)
}

fn review(uid: &str, kind: &str, object: serde_json::Value, dry_run: bool) -> serde_json::Value {
    let group = match kind {
        "Pod" => "",
        "CronJob" | "Job" => "batch",
        _ => "apps",
    };
    let resource = format!("{}s", kind.to_lowercase());
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "name": object["metadata"]["name"],
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "alice@example.com", "uid": "1001",
                         "groups": ["deployers", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
}

fn deployment(name: &str, image: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "initContainers": [{"name": "migrate", "image": image}],
                    "containers": [{"name": "web", "image": image,
                                    "ports": [{"containerPort": 8080}]}],
                }
            }
        }
    })
}

fn deploy_entries(ledger: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(ledger)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["action"] == "deploy")
        .collect()
}

#[test]
fn admission_over_https_allows_verified_pinned_images_and_records_each_deployment_once() {
    let registry = Registry::start(RegistryAuth::None);
    let scratch = Scratch::new();
    let tls = TestCa::new(scratch.dir.path(), "serve");
    let (key, public, _) = common::keygen(scratch.dir.path(), "ci");
    let ledger = scratch.path("ledger.jsonl");
    let build = |name: &str, signed: bool| -> String {
        let mut cmd = scratch.cairn();
        cmd.arg("build")
            .arg(common::repo_root().join("recipes/hello.yaml"))
            .arg("-o")
            .arg(scratch.path(name))
            .args(["--locked", "--json", "--insecure", "--push"])
            .arg(format!("{}/team/{name}:v1", registry.host));
        if signed {
            cmd.arg("--sign-key").arg(&key).arg("--ledger").arg(&ledger);
        }
        let out = common::run_ok(&mut cmd);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["manifest_digest"].as_str().unwrap().to_string()
    };
    let signed = build("signed", true);
    let unsigned = build("unsigned", false);
    let signed_ref = format!("{}/team/signed@{signed}", registry.host);

    let mut cmd = scratch.cairn();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--insecure"])
        .args([
            "--env",
            "prod",
            "--cluster",
            "eu-1",
            "--request-timeout",
            "2",
        ])
        .arg("--ledger")
        .arg(&ledger)
        .arg("--ledger-key")
        .arg(&key)
        .arg("--key")
        .arg(&public)
        .arg("--tls-cert")
        .arg(&tls.cert)
        .arg("--tls-key")
        .arg(&tls.key);
    let service = Service::start(cmd, scratch.path("serve.log"));
    let url = format!("https://{}/admit", service.address);
    let ca = tls.ca.clone();
    let admit = |name: &str, body: &serde_json::Value| {
        let file = scratch.path(&format!("{name}.json"));
        std::fs::write(&file, body.to_string()).unwrap();
        let (status, text) = post(&url, Some(&ca), &file);
        assert_eq!(status, 200, "{name}: {text}\n{}", service.log());
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        answer["response"].clone()
    };

    // A signed image pinned by digest, as container and init container: allowed, one
    // entry, with who deployed it, where, and in answer to which request.
    let allowed = admit(
        "allowed",
        &review("uid-1", "Deployment", deployment("web", &signed_ref), false),
    );
    assert_eq!(allowed["uid"], "uid-1");
    assert_eq!(allowed["allowed"], true, "{allowed}");
    let entries = deploy_entries(&ledger);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let details = &entries[0]["details"];
    for (key, value) in [
        ("image", serde_json::json!(signed_ref)),
        ("digest", serde_json::json!(signed)),
        ("env", serde_json::json!("prod")),
        ("cluster", serde_json::json!("eu-1")),
        ("namespace", serde_json::json!("shop")),
        ("kind", serde_json::json!("Deployment")),
        ("name", serde_json::json!("web")),
        ("uid", serde_json::json!("uid-1")),
        ("username", serde_json::json!("alice@example.com")),
        (
            "groups",
            serde_json::json!(["deployers", "system:authenticated"]),
        ),
    ] {
        assert_eq!(details[key], value, "{key} in {details}");
    }
    // The same request delivered again: allowed, not recorded twice.
    let again = admit(
        "again",
        &review("uid-1", "Deployment", deployment("web", &signed_ref), false),
    );
    assert_eq!(again["allowed"], true);
    assert_eq!(deploy_entries(&ledger).len(), 1);

    // dryRun: checked (allowed) but not recorded.
    let dry = admit(
        "dry",
        &review("uid-2", "Deployment", deployment("web", &signed_ref), true),
    );
    assert_eq!(
        (dry["uid"].as_str(), dry["allowed"].as_bool()),
        (Some("uid-2"), Some(true))
    );
    assert_eq!(deploy_entries(&ledger).len(), 1);

    // An unsigned image in a bare Pod's ephemeral container: denied, with the failed
    // check in the message.
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "debug", "namespace": "shop"},
        "spec": {
            "containers": [{"name": "app", "image": signed_ref}],
            "ephemeralContainers": [{"name": "shell",
                "image": format!("{}/team/unsigned@{unsigned}", registry.host)}],
        }
    });
    let denied = admit("denied", &review("uid-3", "Pod", pod, false));
    assert_eq!(
        (denied["uid"].as_str(), denied["allowed"].as_bool()),
        (Some("uid-3"), Some(false))
    );
    let message = denied["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not verify") && message.contains("signatures"),
        "{message}"
    );

    // A CronJob naming its image by tag only: denied, the policy requires digests.
    let cron = serde_json::json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "shop"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure",
            "containers": [{"name": "job", "image": format!("{}/team/signed:v1", registry.host)}],
        }}}}}
    });
    let tag_only = admit("tag-only", &review("uid-4", "CronJob", cron, false));
    assert_eq!(tag_only["allowed"], false);
    let message = tag_only["status"]["message"].as_str().unwrap();
    assert!(message.contains("not pinned by digest"), "{message}");
    assert_eq!(
        deploy_entries(&ledger).len(),
        1,
        "denied requests are not recorded"
    );

    // Not an AdmissionReview, or an older version of it: 400.
    std::fs::write(scratch.path("garbage.json"), "{\"request\": [").unwrap();
    let (status, text) = post(&url, Some(&ca), &scratch.path("garbage.json"));
    assert_eq!(status, 400, "{text}");
    let mut old = review("uid-5", "Deployment", deployment("web", &signed_ref), false);
    old["apiVersion"] = "admission.k8s.io/v1beta1".into();
    std::fs::write(scratch.path("v1beta1.json"), old.to_string()).unwrap();
    let (status, text) = post(&url, Some(&ca), &scratch.path("v1beta1.json"));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("admissionReviewVersions"), "{text}");

    // Over 1 MiB: 413.
    std::fs::write(scratch.path("large.json"), vec![b' '; (1 << 20) + 1]).unwrap();
    let (status, _) = post(&url, Some(&ca), &scratch.path("large.json"));
    assert_eq!(status, 413);

    // A client that connects and sends nothing is cut off (the TLS handshake has a
    // deadline), while others are served meanwhile.
    let mut idle = std::net::TcpStream::connect(&service.address).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let out = Command::new("curl")
        .args(["-s", "--max-time", "60", "--cacert"])
        .arg(&ca)
        .arg(format!("https://{}/healthz", service.address))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"{"status":"ok"}"#);
    let mut buf = [0u8; 16];
    assert!(
        matches!(idle.read(&mut buf), Ok(0)),
        "the server kept an idle connection open"
    );
    // The log line follows the close.
    let logged = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        service.log().contains(r#""event":"tls_timeout""#)
    });
    assert!(logged, "{}", service.log());

    // What runs in prod, told only from entries signed by the given key: a deployment
    // recorded by hand with another key is skipped, not shown.
    let (intruder, _, _) = common::keygen(scratch.dir.path(), "intruder");
    common::run_ok(
        scratch
            .cairn()
            .args(["ledger", "--ledger"])
            .arg(&ledger)
            .args(["record", "deploy", "--env", "prod", "--image"])
            .arg(format!("{}/team/unsigned@{unsigned}", registry.host))
            .arg("--key")
            .arg(&intruder),
    );
    let show = |json: bool| {
        let mut cmd = scratch.cairn();
        cmd.args(["ledger", "--ledger"])
            .arg(&ledger)
            .args(["show", "--env", "prod", "--key"])
            .arg(&public);
        if json {
            cmd.arg("--json");
        }
        String::from_utf8(common::run_ok(&mut cmd).stdout).unwrap()
    };
    let running: serde_json::Value = serde_json::from_str(&show(true)).unwrap();
    assert_eq!(running["skipped"], 1, "{running}");
    let images = running["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{running}");
    assert_eq!(images[0]["workload"], "shop/Deployment/web@eu-1");
    assert_eq!(images[0]["digest"], signed.as_str());
    assert_eq!(images[0]["by"], "alice@example.com");
    assert_eq!(images[0]["build"]["recipe"], "hello.yaml");
    let text = show(false);
    assert!(
        text.contains("prod: 1 image running")
            && text.contains("skipped 1 entry not signed by a --key key")
            && text.contains("deployed by alice@example.com")
            && text.contains("recipe hello.yaml sha256:"),
        "{text}"
    );

    // SIGTERM: the service drains and exits 0.
    let status = service.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn admission_is_denied_when_the_ledger_cannot_be_written() {
    let registry = Registry::start(RegistryAuth::None);
    let scratch = Scratch::new();
    let (key, public, _) = common::keygen(scratch.dir.path(), "ci");
    let mut cmd = scratch.cairn();
    cmd.arg("build")
        .arg(common::repo_root().join("recipes/hello.yaml"))
        .arg("-o")
        .arg(scratch.path("out"))
        .args(["--locked", "--json", "--insecure", "--push"])
        .arg(format!("{}/team/app:v1", registry.host))
        .arg("--sign-key")
        .arg(&key);
    let report: serde_json::Value =
        serde_json::from_slice(&common::run_ok(&mut cmd).stdout).unwrap();
    let image = format!(
        "{}/team/app@{}",
        registry.host,
        report["manifest_digest"].as_str().unwrap()
    );
    // A ledger under a regular file: no write can succeed, even as root.
    std::fs::write(scratch.path("not-a-dir"), "").unwrap();
    let ledger = scratch.path("not-a-dir/ledger.jsonl");
    let mut cmd = scratch.cairn();
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--insecure",
        "--env",
        "prod",
    ])
    .arg("--ledger")
    .arg(&ledger)
    .arg("--ledger-key")
    .arg(&key)
    .arg("--key")
    .arg(&public);
    // Plain HTTP: allowed on loopback.
    let service = Service::start(cmd, scratch.path("serve.log"));
    let (status, text, body) = admit_over_http(
        &service,
        &scratch,
        review("uid-9", "Deployment", deployment("web", &image), false),
    );
    assert_eq!(status, 200, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    let response = &answer["response"];
    assert_eq!(
        (response["uid"].as_str(), response["allowed"].as_bool()),
        (Some("uid-9"), Some(false))
    );
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("cannot record the deployment in the ledger")
            && message.contains("not-a-dir"),
        "{message}"
    );

    // SIGTERM while a request is in flight (its body half sent): the listener closes,
    // the request is still answered, then the service exits 0. The service is stopped
    // while the client connects, so the connection is still in the listener's backlog
    // when the signal is handled, and must be served rather than reset.
    let full = std::fs::read(&body).unwrap();
    let (first, rest) = full.split_at(full.len() / 2);
    service.signal(libc::SIGSTOP);
    let mut stream = std::net::TcpStream::connect(&service.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /admit HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        service.address,
        full.len()
    )
    .unwrap();
    stream.write_all(first).unwrap();
    service.sigterm();
    service.signal(libc::SIGCONT);
    let draining = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        service.log().contains(r#""event":"draining""#)
    });
    assert!(draining, "{}", service.log());
    assert!(
        std::net::TcpStream::connect(&service.address).is_err(),
        "the listener is still open while draining"
    );
    let mut answer = String::new();
    stream
        .write_all(rest)
        .and_then(|()| stream.read_to_string(&mut answer).map(drop))
        .unwrap_or_else(|e| panic!("the request in flight was dropped: {e}\n{}", service.log()));
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains(r#""uid":"uid-9""#),
        "{answer}"
    );
    let status = service.terminate();
    assert!(status.success(), "{status}");

    // Not on loopback without a certificate: refused at start.
    let (code, err) = common::run_err(
        scratch
            .cairn()
            .args(["serve", "--listen", "0.0.0.0:0", "--ledger-key"])
            .arg(&key)
            .arg("--key")
            .arg(&public)
            .arg("--ledger")
            .arg(scratch.path("ledger.jsonl")),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("refusing to serve plain HTTP") && err.contains("--tls-cert"),
        "{err}"
    );
}

#[test]
fn tag_admissions_recorded_in_postgresql_answer_what_runs_in_prod() {
    let registry = Registry::start(RegistryAuth::None);
    let db = crate::common::postgres::Cluster::start();
    let scratch = Scratch::new();
    let (key, public, _) = common::keygen(scratch.dir.path(), "ci");
    let mut cmd = scratch.cairn();
    cmd.arg("build")
        .arg(common::repo_root().join("recipes/hello.yaml"))
        .arg("-o")
        .arg(scratch.path("out"))
        .args(["--locked", "--json", "--insecure", "--push"])
        .arg(format!("{}/team/app:v1", registry.host))
        .arg("--sign-key")
        .arg(&key)
        .args(["--ledger", &db.url()]);
    let report: serde_json::Value =
        serde_json::from_slice(&common::run_ok(&mut cmd).stdout).unwrap();
    let digest = report["manifest_digest"].as_str().unwrap();
    // A policy that admits tags: the digest the tag names when it verifies is recorded.
    let tagged = format!("{}/team/app:v1", registry.host);
    std::fs::write(
        scratch.path("policy.yaml"),
        "cairn_policy: 1\nrequire_digest: false\n",
    )
    .unwrap();
    let mut cmd = scratch.cairn();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--insecure"])
        .args(["--env", "prod", "--ledger", &db.url(), "--policy"])
        .arg(scratch.path("policy.yaml"))
        .arg("--ledger-key")
        .arg(&key)
        .arg("--key")
        .arg(&public);
    let service = Service::start(cmd, scratch.path("serve.log"));
    let (status, text, _) = admit_over_http(
        &service,
        &scratch,
        review("uid-pg", "StatefulSet", deployment("db", &tagged), false),
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""allowed":true"#), "{text}");
    let status = service.terminate();
    assert!(status.success(), "{status}");

    let out = common::run_ok(
        scratch
            .cairn()
            .args(["ledger", "--ledger", &db.url()])
            .args(["show", "--env", "prod", "--json", "--key"])
            .arg(&public),
    );
    let running: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let images = running["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{running}");
    assert_eq!(images[0]["workload"], "shop/StatefulSet/db");
    assert_eq!(images[0]["image"], format!("{tagged}@{digest}").as_str());
    assert_eq!(images[0]["digest"], digest);
    assert_eq!(images[0]["by"], "alice@example.com");
    assert_eq!(images[0]["build"]["recipe"], "hello.yaml", "{running}");
    assert_eq!(running["skipped"], 0);
}
