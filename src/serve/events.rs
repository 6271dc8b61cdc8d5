//! `POST /registry/events`: the registry push hook. It takes the CNCF distribution
//! notification envelope (media type [`EVENTS_MEDIA_TYPE`]) as Debian's
//! `docker-registry` sends it, with the endpoint's `headers:` carrying
//! `Authorization: Bearer <secret>` (else 401).
//!
//! Of the events, only a manifest pushed under a tag is acted on: blob events, pulls,
//! deletes, manifests put by digest alone (referrers, or an image before its tag, whose
//! tag event follows) and the referrer-schema tags (`sha256-<hex>`, cosign's `.att`
//! and `.sig`) are acknowledged and left alone. The answer comes at once: each push
//! goes on a bounded queue (full: 503, so the registry retries), and worker threads
//! verify the pushed digest from the registry exactly as `cairn verify REF` does, then
//! record a `push` entry (reference, repository, tag, digest, the registry's actor,
//! the pushing client's address, the event id) and a `verify` entry (verdict, failed
//! checks, policy digest, event id). With [`OnFail::Delete`] a manifest that fails is
//! deleted from the registry, and its verify entry says so.
//!
//! Deliveries are idempotent by event id, because the registry retries them: an id
//! queued or recorded is answered as a duplicate. The ids come back from the ledger
//! when the service starts (entries signed with its own key that carry an
//! `event_id`), and a push recorded without its verdict (the service was killed in
//! between) is verified again at start, so a retry never appends twice and nothing
//! stays half-recorded. On shutdown the workers finish the queue.

use super::{log, Handler, Request, Response, Settings};
use crate::digest::Sha256Digest;
use crate::keys;
use crate::ledger::{detail_str, Action, Entry, StoreError};
use crate::oci::media_type;
use crate::registry::Reference;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The media type of a notification envelope.
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// What to do with a pushed manifest that fails verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFail {
    /// Record the verdict only.
    Record,
    /// Record the verdict and delete the manifest (the registry must allow deletes).
    Delete,
}

/// How the push hook runs.
#[derive(Debug, Clone, Copy)]
pub struct HookOptions {
    /// Pushes waiting for a worker at most; one more is answered 503.
    pub queue: usize,
    /// Threads verifying and recording, at least 1.
    pub workers: usize,
    pub on_fail: OnFail,
}

/// The envelope: `{"events": [...]}`.
#[derive(Debug, Deserialize)]
struct Envelope {
    events: Vec<Event>,
}

/// One notification event, with the fields the hook reads.
#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    action: String,
    target: Target,
    #[serde(default)]
    request: RequestRecord,
    #[serde(default)]
    actor: ActorRecord,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    repository: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    tag: String,
}

/// The request that caused the event: the pushing client's address, and the host it
/// addressed the registry by.
#[derive(Debug, Default, Deserialize)]
struct RequestRecord {
    #[serde(default)]
    addr: String,
    #[serde(default)]
    host: String,
}

#[derive(Debug, Default, Deserialize)]
struct ActorRecord {
    #[serde(default)]
    name: String,
}

/// A manifest pushed under a tag: what the hook verifies and records.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Push {
    event_id: String,
    /// The registry's `host[:port]`, as the pushing client addressed it.
    registry: String,
    repository: String,
    tag: String,
    digest: Sha256Digest,
    /// The registry's name for who pushed (empty without registry auth).
    actor: String,
    /// The pushing client's address, as the registry saw it.
    source_address: String,
}

impl Push {
    fn reference(&self) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(self.tag.clone()),
            digest: Some(self.digest),
        }
    }

    /// The details of its `push` entry.
    fn details(&self) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("reference".to_string(), self.reference().to_string().into()),
            ("digest".to_string(), self.digest.to_string().into()),
            ("registry".to_string(), self.registry.clone().into()),
            ("repository".to_string(), self.repository.clone().into()),
            ("tag".to_string(), self.tag.clone().into()),
            ("actor".to_string(), self.actor.clone().into()),
            (
                "source_address".to_string(),
                self.source_address.clone().into(),
            ),
            ("event_id".to_string(), self.event_id.clone().into()),
        ])
    }

    /// The push a `push` entry recorded, from its details.
    fn from_entry(entry: &Entry) -> Option<Push> {
        let field = |key| detail_str(entry, key).map(str::to_string);
        Some(Push {
            event_id: field("event_id")?,
            registry: field("registry")?,
            repository: field("repository")?,
            tag: field("tag")?,
            digest: field("digest")?.parse().ok()?,
            actor: field("actor").unwrap_or_default(),
            source_address: field("source_address").unwrap_or_default(),
        })
    }
}

/// What a delivery held: the pushes to act on, and how many events were left alone.
#[derive(Debug)]
struct Sorted {
    pushes: Vec<Push>,
    ignored: usize,
}

/// Why a delivery is refused (400): the envelope does not parse.
#[derive(Debug, thiserror::Error)]
#[error("not a distribution notification envelope: {0}")]
struct BadEnvelope(serde_json::Error);

/// The events of an envelope sorted into manifest pushes under a tag and the rest.
fn sort_events(body: &[u8]) -> Result<Sorted, BadEnvelope> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(BadEnvelope)?;
    let mut sorted = Sorted {
        pushes: Vec::new(),
        ignored: 0,
    };
    for event in envelope.events {
        match push_of(event) {
            Some(push) => sorted.pushes.push(push),
            None => sorted.ignored += 1,
        }
    }
    Ok(sorted)
}

/// The push an event reports, if it is a manifest pushed under an image's tag.
fn push_of(event: Event) -> Option<Push> {
    let target = event.target;
    let is_manifest = media_type::MANIFESTS.contains(&target.media_type.as_str());
    let referrer_tag = target.tag.starts_with("sha256-");
    if event.action != "push" || !is_manifest || target.tag.is_empty() || referrer_tag {
        return None;
    }
    let registry = registry_host(&target.url)
        .or_else(|| Some(event.request.host).filter(|h| !h.is_empty()))?;
    Some(Push {
        event_id: event.id,
        registry,
        repository: target.repository,
        tag: target.tag,
        digest: target.digest.parse().ok()?,
        actor: event.actor.name,
        source_address: event.request.addr,
    })
}

/// `host[:port]` of a URL the registry built (`http://127.0.0.1:5000/v2/...`).
fn registry_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let host = rest.split(['/', '?']).next()?;
    (!host.is_empty()).then(|| host.to_string())
}

/// A push for a worker; `push_recorded` when an earlier run recorded its `push` entry.
struct Job {
    push: Push,
    push_recorded: bool,
}

/// What the workers share with the handler.
struct Shared {
    settings: Arc<Settings>,
    on_fail: OnFail,
    /// Every event id queued or recorded: a delivery naming one is a duplicate.
    known: Mutex<HashSet<String>>,
}

/// The `/registry/events` endpoint with its queue and workers.
pub struct PushHook {
    shared: Arc<Shared>,
    /// Closed on shutdown, so the workers end once the queue is empty.
    queue: Mutex<Option<SyncSender<Job>>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl PushHook {
    /// Reads the event ids recorded in the ledger, starts the workers, and queues
    /// again the pushes recorded without their verdict.
    pub fn start(settings: Arc<Settings>, options: HookOptions) -> Result<PushHook, StoreError> {
        let own_key = keys::key_id(&settings.ledger_key.verifying_key());
        let mut pushed: Vec<Push> = Vec::new();
        let mut verified: HashSet<String> = HashSet::new();
        // Without a secret no delivery is accepted: nothing to deduplicate or resume,
        // and an admission-only service does not need to read the ledger to start.
        let recorded = match settings.hook_secret {
            Some(_) => settings.ledger.entries()?,
            None => Box::new(std::iter::empty()),
        };
        for stored in recorded {
            let entry = stored?.entry;
            if entry.actor.key_id != own_key {
                continue;
            }
            match entry.action {
                Action::Push => pushed.extend(Push::from_entry(&entry)),
                Action::Verify => verified.extend(detail_str(&entry, "event_id").map(String::from)),
                Action::Build | Action::Deploy => {}
            }
        }
        let mut known = verified.clone();
        known.extend(pushed.iter().map(|p| p.event_id.clone()));
        let resumed: Vec<Push> = pushed
            .into_iter()
            .filter(|p| !verified.contains(&p.event_id))
            .collect();
        let (sender, receiver) = mpsc::sync_channel(options.queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let shared = Arc::new(Shared {
            settings,
            on_fail: options.on_fail,
            known: Mutex::new(known),
        });
        let workers = (0..options.workers.max(1))
            .map(|_| {
                let (shared, receiver) = (shared.clone(), receiver.clone());
                std::thread::spawn(move || work(&shared, &receiver))
            })
            .collect();
        for push in resumed {
            log(
                "push_resumed",
                json!({"event_id": push.event_id, "reference": push.reference().to_string()}),
            );
            // Blocking: the workers are running, and these were accepted before.
            let job = Job {
                push,
                push_recorded: true,
            };
            if sender.send(job).is_err() {
                break;
            }
        }
        Ok(PushHook {
            shared,
            queue: Mutex::new(Some(sender)),
            workers: Mutex::new(workers),
        })
    }

    /// Queues the pushes not seen before; 503 (and none of the rest queued) once the
    /// queue is full, so the registry sends the delivery again.
    fn accept(&self, sorted: Sorted) -> Response {
        let queue = self.queue.lock().expect("queue lock");
        let Some(queue) = queue.as_ref() else {
            return Response::new(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "the service is shutting down"}),
            );
        };
        let (mut queued, mut duplicates) = (0, 0);
        for push in sorted.pushes {
            let id = push.event_id.clone();
            if !self
                .shared
                .known
                .lock()
                .expect("ids lock")
                .insert(id.clone())
            {
                duplicates += 1;
                continue;
            }
            let job = Job {
                push,
                push_recorded: false,
            };
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = queue.try_send(job)
            {
                self.shared.known.lock().expect("ids lock").remove(&id);
                log("push_queue_full", json!({"event_id": id, "queued": queued}));
                return Response::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error": "the verification queue is full; deliver again later", "queued": queued}),
                );
            }
            queued += 1;
        }
        Response::new(
            StatusCode::ACCEPTED,
            json!({"queued": queued, "duplicates": duplicates, "ignored": sorted.ignored}),
        )
    }
}

impl Handler for PushHook {
    fn handle(&self, request: Request) -> Response {
        let Some(secret) = &self.shared.settings.hook_secret else {
            return Response::new(
                StatusCode::UNAUTHORIZED,
                json!({"error": "this service takes no registry events: start it with --hook-secret-file"}),
            );
        };
        let presented = request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !same_secret(presented.as_bytes(), secret.as_bytes()) {
            return Response::new(
                StatusCode::UNAUTHORIZED,
                json!({"error": "no valid `Authorization: Bearer <secret>` header"}),
            );
        }
        let content_type = request
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence != EVENTS_MEDIA_TYPE && essence != "application/json" {
            return Response::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"error": format!("expected {EVENTS_MEDIA_TYPE}")}),
            );
        }
        match sort_events(&request.body) {
            Ok(sorted) => self.accept(sorted),
            Err(e) => Response::new(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
        }
    }

    fn shutdown(&self) {
        // Closing the queue ends each worker once it is empty.
        self.queue.lock().expect("queue lock").take();
        let workers = std::mem::take(&mut *self.workers.lock().expect("workers lock"));
        for worker in workers {
            let _ = worker.join();
        }
    }
}

/// Compares secrets in time independent of where they differ.
fn same_secret(presented: &[u8], secret: &[u8]) -> bool {
    presented.len() == secret.len()
        && presented
            .iter()
            .zip(secret)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A worker: takes jobs until the queue is closed and empty.
fn work(shared: &Shared, receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = receiver.lock().expect("receiver lock").recv();
        match job {
            Ok(job) => process(shared, job),
            Err(_) => return,
        }
    }
}

/// Records the push, verifies the digest from the registry, deletes it if asked and
/// it failed, and records the verdict.
fn process(shared: &Shared, job: Job) {
    let settings = &shared.settings;
    let push = job.push;
    let reference = push.reference();
    let record = |action, details| {
        settings.ledger.append(
            Entry::new(action, &settings.identity, settings.now_rfc3339(), details),
            &settings.ledger_key,
            true,
        )
    };
    let failed_to_record = |action: Action, error: StoreError| {
        // Nothing recorded: the id is forgotten, so that a later delivery records the
        // event. A push recorded without its verdict is verified again at start.
        if action == Action::Push {
            shared
                .known
                .lock()
                .expect("ids lock")
                .remove(&push.event_id);
        }
        log(
            "push_not_recorded",
            json!({"event_id": push.event_id, "reference": reference.to_string(), "action": action.to_string(), "error": error.to_string()}),
        );
    };
    if !job.push_recorded {
        if let Err(e) = record(Action::Push, push.details()) {
            return failed_to_record(Action::Push, e);
        }
    }
    let mut details = BTreeMap::from([
        ("reference".to_string(), reference.to_string().into()),
        ("event_id".to_string(), push.event_id.clone().into()),
        (
            "policy_sha256".to_string(),
            settings.policy_sha256.clone().into(),
        ),
    ]);
    // Each push's verification (and delete) gets the whole overall deadline.
    let registry = settings.registry.for_one_operation();
    let verdict = crate::verify::verify_reference(
        &registry,
        &reference,
        &settings.trusted,
        &settings.policy,
        None,
    );
    let verified = match verdict {
        Ok(remote) => {
            let failed: Vec<&str> = remote
                .verdict
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.name)
                .collect();
            let image = remote
                .verdict
                .manifest_digest
                .clone()
                .unwrap_or_else(|| remote.digest.to_string());
            details.insert("image".to_string(), image.into());
            details.insert("failed_checks".to_string(), failed.into());
            remote.verdict.verified
        }
        Err(e) => {
            // No verdict without the image: recorded as failed, with why.
            details.insert("image".to_string(), push.digest.to_string().into());
            details.insert("failed_checks".to_string(), json!(["fetch"]));
            details.insert("error".to_string(), e.to_string().into());
            false
        }
    };
    details.insert("verified".to_string(), verified.into());
    if !verified && shared.on_fail == OnFail::Delete {
        let outcome = match registry.delete_manifest(&reference) {
            Ok(()) => "deleted".to_string(),
            Err(e) => format!("not deleted: {e}"),
        };
        details.insert("on_fail".to_string(), outcome.into());
    }
    let on_fail = details.get("on_fail").cloned();
    match record(Action::Verify, details) {
        Ok(entry) => log(
            "push_verified",
            json!({"event_id": push.event_id, "reference": reference.to_string(), "verified": verified, "seq": entry.seq, "on_fail": on_fail}),
        ),
        Err(e) => failed_to_record(Action::Verify, e),
    }
}

#[cfg(test)]
mod tests;
