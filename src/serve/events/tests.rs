//! The push hook without a server: deliveries handed to the handler as the server
//! would, a file ledger in a temporary directory, and a registry address where
//! nothing listens (every fetch fails at once, which the verify entry records).
//! The end-to-end tests with a real registry are in `tests/it/tools/push_hook.rs`.

use super::*;
use crate::ledger;
use crate::registry::{Client, ClientOptions};
use crate::verify::Policy;
use bytes::Bytes;

const SECRET: &str = "s3cret-of-the-registry";

struct Fixture {
    dir: tempfile::TempDir,
    key: crate::keys::SigningKey,
    /// `127.0.0.1:PORT` where nothing listens.
    registry: String,
}

impl Fixture {
    fn new() -> Fixture {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            key: crate::keys::generate(),
            registry: format!("127.0.0.1:{port}"),
        }
    }

    fn ledger_path(&self) -> String {
        self.dir.path().join("ledger.jsonl").display().to_string()
    }

    fn settings(&self, secret: Option<&str>) -> Arc<Settings> {
        Arc::new(Settings {
            ledger: ledger::open(&self.ledger_path()).unwrap(),
            ledger_key: self.key.clone(),
            identity: "cairn-serve".to_string(),
            trusted: Vec::new(),
            policy: Policy {
                cairn_policy: 1,
                require_sbom: true,
                require_digest: true,
                ..Default::default()
            },
            policy_sha256: None,
            env: None,
            cluster: None,
            registry: Client::new(ClientOptions {
                insecure: true,
                max_attempts: 1,
                ..Default::default()
            }),
            hook_secret: secret.map(str::to_string),
            clock: Arc::new(|| 1_796_000_000),
        })
    }

    fn hook(&self) -> PushHook {
        PushHook::start(
            self.settings(Some(SECRET)),
            HookOptions {
                queue: 8,
                workers: 2,
                on_fail: OnFail::Record,
            },
        )
        .unwrap()
    }

    /// The ledger's entries as stored.
    fn entries(&self) -> Vec<Entry> {
        ledger::open(&self.ledger_path())
            .unwrap()
            .read()
            .map(|c| c.entries.into_iter().map(|s| s.entry).collect())
            .unwrap_or_default()
    }

    /// A manifest push event as docker-registry sends it.
    fn event(&self, id: &str, media_type: &str, tag: Option<&str>) -> Value {
        let digest = Sha256Digest::of(id.as_bytes());
        let mut target = json!({
            "mediaType": media_type,
            "size": 512,
            "digest": digest.to_string(),
            "length": 512,
            "repository": "team/app",
            "url": format!("http://{}/v2/team/app/manifests/{digest}", self.registry),
        });
        if let Some(tag) = tag {
            target["tag"] = tag.into();
        }
        json!({
            "id": id,
            "timestamp": "2026-12-06T10:00:00.000000000Z",
            "action": "push",
            "target": target,
            "request": {"id": "r1", "addr": "192.0.2.7:40112", "host": self.registry, "method": "PUT", "useragent": "skopeo"},
            "actor": {"name": "alice"},
            "source": {"addr": "registry:5000", "instanceID": "i1"},
        })
    }
}

fn delivery(events: Vec<Value>, authorization: Option<&str>) -> Request {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        EVENTS_MEDIA_TYPE.parse().unwrap(),
    );
    if let Some(value) = authorization {
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
    }
    Request {
        method: http::Method::POST,
        path: "/registry/events".to_string(),
        headers,
        body: Bytes::from(serde_json::to_vec(&json!({ "events": events })).unwrap()),
        peer: "127.0.0.1:50000".parse().unwrap(),
    }
}

fn bearer() -> Option<&'static str> {
    Some("Bearer s3cret-of-the-registry")
}

#[test]
fn a_delivery_without_the_secret_is_401_and_records_nothing() {
    let fx = Fixture::new();
    let hook = fx.hook();
    let event = || vec![fx.event("e1", media_type::OCI_MANIFEST, Some("v1"))];
    for authorization in [None, Some("Bearer wrong"), Some(SECRET)] {
        let response = hook.handle(delivery(event(), authorization));
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
    }
    hook.shutdown();
    assert!(fx.entries().is_empty());

    // A service started without --hook-secret-file takes no events at all.
    let open = PushHook::start(
        fx.settings(None),
        HookOptions {
            queue: 1,
            workers: 1,
            on_fail: OnFail::Record,
        },
    )
    .unwrap();
    let response = open.handle(delivery(event(), bearer()));
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert!(response.body["error"]
        .as_str()
        .unwrap()
        .contains("--hook-secret-file"));
    open.shutdown();
}

#[test]
fn only_a_manifest_pushed_under_an_image_tag_is_verified_and_recorded() {
    let fx = Fixture::new();
    let hook = fx.hook();
    let mut pull = fx.event("pull", media_type::OCI_MANIFEST, Some("v1"));
    pull["action"] = "pull".into();
    let events = vec![
        fx.event("blob", "application/octet-stream", None),
        fx.event("by-digest", media_type::OCI_MANIFEST, None),
        fx.event(
            "referrers",
            media_type::OCI_INDEX,
            Some(&format!("sha256-{}", Sha256Digest::of(b"x").hex())),
        ),
        pull,
        fx.event("tagged", media_type::DOCKER_MANIFEST, Some("v1")),
    ];
    let response = hook.handle(delivery(events, bearer()));
    assert_eq!(response.status, StatusCode::ACCEPTED);
    assert_eq!(
        response.body,
        json!({"queued": 1, "duplicates": 0, "ignored": 4})
    );
    hook.shutdown();

    let entries = fx.entries();
    let actions: Vec<Action> = entries.iter().map(|e| e.action).collect();
    assert_eq!(actions, [Action::Push, Action::Verify]);
    let digest = Sha256Digest::of(b"tagged").to_string();
    let reference = format!("{}/team/app:v1@{digest}", fx.registry);
    let push = &entries[0].details;
    assert_eq!(push["reference"], reference.as_str());
    assert_eq!(push["digest"], digest.as_str());
    assert_eq!(push["repository"], "team/app");
    assert_eq!(push["tag"], "v1");
    assert_eq!(push["actor"], "alice");
    assert_eq!(push["source_address"], "192.0.2.7:40112");
    assert_eq!(push["event_id"], "tagged");
    // The registry is not there: no verdict on the image, recorded as a failure.
    let verify = &entries[1].details;
    assert_eq!(verify["verified"], false);
    assert_eq!(verify["failed_checks"], json!(["fetch"]));
    assert_eq!(verify["image"], digest.as_str());
    assert_eq!(verify["event_id"], "tagged");
    assert!(verify["error"]
        .as_str()
        .unwrap()
        .contains("cannot reach the registry"));
    assert_eq!(entries[1].time, "2026-11-30T00:53:20Z");
}

#[test]
fn a_delivery_sent_again_appends_nothing_also_after_a_restart() {
    let fx = Fixture::new();
    let events = || vec![fx.event("e1", media_type::OCI_MANIFEST, Some("v1"))];
    let hook = fx.hook();
    assert_eq!(hook.handle(delivery(events(), bearer())).body["queued"], 1);
    let again = hook.handle(delivery(events(), bearer()));
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.body["duplicates"], 1);
    hook.shutdown();
    assert_eq!(fx.entries().len(), 2);

    let restarted = fx.hook();
    let again = restarted.handle(delivery(events(), bearer()));
    assert_eq!(
        again.body,
        json!({"queued": 0, "duplicates": 1, "ignored": 0})
    );
    restarted.shutdown();
    assert_eq!(fx.entries().len(), 2);
}

#[test]
fn a_full_queue_answers_503_and_the_delivery_sent_again_records_each_push_once() {
    let fx = Fixture::new();
    let events = || {
        (0..6)
            .map(|i| fx.event(&format!("burst-{i}"), media_type::OCI_MANIFEST, Some("v1")))
            .collect::<Vec<_>>()
    };
    let options = || HookOptions {
        queue: 1,
        workers: 1,
        on_fail: OnFail::Record,
    };
    // One job in the queue and one being verified: six pushes cannot all be taken
    // before the worker has fetched even one.
    let hook = PushHook::start(fx.settings(Some(SECRET)), options()).unwrap();
    let busy = hook.handle(delivery(events(), bearer()));
    assert_eq!(
        busy.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        busy.body
    );
    let queued = busy.body["queued"].as_u64().unwrap();
    assert!((1..6).contains(&queued), "{}", busy.body);
    hook.shutdown();

    // The registry delivers the whole envelope again: what was queued is a duplicate.
    let hook = PushHook::start(fx.settings(Some(SECRET)), options()).unwrap();
    let mut answer = hook.handle(delivery(events(), bearer()));
    while answer.status == StatusCode::SERVICE_UNAVAILABLE {
        std::thread::sleep(std::time::Duration::from_millis(20));
        answer = hook.handle(delivery(events(), bearer()));
    }
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    hook.shutdown();
    let entries = fx.entries();
    for i in 0..6 {
        let id = format!("burst-{i}");
        let pushes = entries
            .iter()
            .filter(|e| e.action == Action::Push && detail_str(e, "event_id") == Some(&id))
            .count();
        assert_eq!(pushes, 1, "{id}");
    }
}

#[test]
fn a_push_recorded_without_its_verdict_is_verified_at_start() {
    let fx = Fixture::new();
    let push = push_of(
        serde_json::from_value(fx.event("e9", media_type::OCI_MANIFEST, Some("v2"))).unwrap(),
    )
    .unwrap();
    let ledger = ledger::open(&fx.ledger_path()).unwrap();
    ledger
        .append(
            Entry::new(
                Action::Push,
                "cairn-serve",
                "2026-12-06T10:00:00Z".into(),
                push.details(),
            ),
            &fx.key,
            true,
        )
        .unwrap();
    let hook = fx.hook();
    hook.shutdown();
    let entries = fx.entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].action, Action::Verify);
    assert_eq!(entries[1].details["event_id"], "e9");
    // And a delivery of it now is a duplicate.
    let hook = fx.hook();
    let again = hook.handle(delivery(
        vec![fx.event("e9", media_type::OCI_MANIFEST, Some("v2"))],
        bearer(),
    ));
    assert_eq!(again.body["duplicates"], 1);
    hook.shutdown();
    assert_eq!(fx.entries().len(), 2);
}

#[test]
fn a_body_that_is_not_an_envelope_is_400_and_another_media_type_415() {
    let fx = Fixture::new();
    let hook = fx.hook();
    let mut request = delivery(Vec::new(), bearer());
    request.body = Bytes::from_static(b"{\"events\": 7}");
    let response = hook.handle(request);
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(response.body["error"]
        .as_str()
        .unwrap()
        .contains("not a distribution notification envelope"));
    let mut request = delivery(Vec::new(), bearer());
    request
        .headers
        .insert(http::header::CONTENT_TYPE, "text/plain".parse().unwrap());
    assert_eq!(
        hook.handle(request).status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    hook.shutdown();
    assert!(fx.entries().is_empty());
}
