//! `POST /admit`: a Kubernetes validating admission webhook (`admission.k8s.io/v1`
//! AdmissionReview) that lets a workload run only if every image it names is pinned by
//! digest and verifies, and records who deployed what.
//!
//! It reads the pod spec of a Pod and the pod template of a Deployment, ReplicaSet,
//! StatefulSet, DaemonSet, Job, CronJob or ReplicationController, and checks every
//! container, init container and ephemeral container image: pinned by digest (policy
//! `require_digest`, default true), then verified as `cairn verify REF` does, with the
//! verdict cached by repository and digest for a TTL. On allow it records one `deploy`
//! entry per distinct image (digest, namespace, kind, name, request uid, username and
//! groups, env, cluster); if it cannot record them, it denies (fail closed), the reason
//! in `status.message`. Entries are written by one writer thread in groups (one lock,
//! one write and one fsync for a file ledger), so concurrent admissions do not queue
//! behind each other's append; a request is answered only once its entries are durable. A `dryRun` request is checked
//! but not recorded. The response
//! echoes the request's uid. A malformed review gets 400: the API server then applies
//! the webhook's `failurePolicy`.

use super::{Handler, Request, Response, Settings};
use crate::ledger::Action;
use crate::ledger::Entry;
use crate::registry::Reference;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Mutex};

/// The most requests whose entries share one fsync.
const MAX_GROUP: usize = 512;

const API_VERSION: &str = "admission.k8s.io/v1";

/// The part of an AdmissionReview request the webhook reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Review {
    api_version: String,
    kind: String,
    request: ReviewRequest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewRequest {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    user_info: UserInfo,
    #[serde(default)]
    object: Option<serde_json::Value>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
struct GroupVersionKind {
    kind: String,
}

#[derive(Deserialize, Default)]
struct UserInfo {
    #[serde(default)]
    username: String,
    #[serde(default)]
    groups: Vec<String>,
}

/// A cached verdict: whether the image verified, why not, and when it was decided.
#[derive(Clone)]
struct Cached {
    refusal: Option<String>,
    decided: u64,
}

/// The admission webhook, with its verdict cache.
pub struct Admit {
    settings: Arc<Settings>,
    /// Seconds a verdict is reused.
    ttl: u64,
    /// By `registry/repository@digest`; each slot locked while its image verifies, so
    /// concurrent requests for one image verify it once.
    verdicts: Mutex<HashMap<String, Arc<Mutex<Option<Cached>>>>>,
    /// Request uids already recorded, and when: a repeated delivery of one request is
    /// answered again without a second record.
    recorded: Mutex<HashMap<String, u64>>,
    /// To the writer thread; taken (closed) at shutdown.
    writer: Mutex<Option<mpsc::Sender<Deployment>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// One admitted request's deploy entries (details each), and where to say whether
/// they were recorded.
struct Deployment {
    entries: Vec<BTreeMap<String, serde_json::Value>>,
    time: String,
    done: mpsc::Sender<Result<(), String>>,
}

/// Appends the deployments queued, as many as are waiting at once, in one durable
/// group append, then answers each: all were recorded, or (for a file, where a group is
/// all or nothing) none was.
fn write_deployments(settings: Arc<Settings>, queue: mpsc::Receiver<Deployment>) {
    let s = &*settings;
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        group.extend(queue.try_iter().take(MAX_GROUP - 1));
        let entries: Vec<Entry> = group
            .iter()
            .flat_map(|deployment| {
                deployment.entries.iter().map(|details| {
                    Entry::new(
                        Action::Deploy,
                        &s.identity,
                        deployment.time.clone(),
                        details.clone(),
                    )
                })
            })
            .collect();
        let result = s
            .ledger
            .append_group(entries, &s.ledger_key)
            .map_err(|e| e.to_string());
        for deployment in group {
            let _ = deployment.done.send(result.clone());
        }
    }
}

impl Admit {
    pub fn new(settings: Arc<Settings>, ttl: u64) -> Admit {
        let (writer, queue) = mpsc::channel();
        let writer_settings = settings.clone();
        let thread = std::thread::Builder::new()
            .name("admit-ledger".to_string())
            .spawn(move || write_deployments(writer_settings, queue))
            .expect("start the ledger writer thread");
        Admit {
            settings,
            ttl,
            verdicts: Mutex::new(HashMap::new()),
            recorded: Mutex::new(HashMap::new()),
            writer: Mutex::new(Some(writer)),
            writer_thread: Mutex::new(Some(thread)),
        }
    }

    /// The verdict on `image`, with the digest to record for it: the one it names, or
    /// the one its tag named when it verified.
    fn check(&self, image: &str) -> Result<Checked, String> {
        let reference: Reference = image.parse().map_err(|e| format!("{e}"))?;
        let Some(digest) = reference.digest else {
            if self.settings.policy.require_digest {
                return Err(format!(
                    "{image} is not pinned by digest: name it as {image}@sha256:<digest> (the policy requires digests)"
                ));
            }
            // What the tag names now is what will run: verified each time, not cached.
            let (digest, refusal) = self.verify_fresh(&reference)?;
            return Ok(Checked {
                named: reference.with_digest(digest).to_string(),
                digest: digest.to_string(),
                refusal,
            });
        };
        let key = format!("{}/{}@{}", reference.registry, reference.repository, digest);
        let slot = self
            .verdicts
            .lock()
            .expect("verdict cache lock")
            .entry(key)
            .or_default()
            .clone();
        let mut slot = slot.lock().expect("verdict slot lock");
        let now = (self.settings.clock)();
        let fresh = slot
            .as_ref()
            .filter(|c| now.saturating_sub(c.decided) < self.ttl)
            .cloned();
        let cached = match fresh {
            Some(cached) => cached,
            None => {
                let (_, refusal) = self.verify_fresh(&reference)?;
                let cached = Cached {
                    refusal,
                    decided: now,
                };
                *slot = Some(cached.clone());
                cached
            }
        };
        Ok(Checked {
            named: image.to_string(),
            digest: digest.to_string(),
            refusal: cached.refusal,
        })
    }

    /// Pulls and verifies `reference`: its digest, and why it does not verify, if it
    /// does not. A registry that cannot be read is an error (not cached).
    fn verify_fresh(
        &self,
        reference: &Reference,
    ) -> Result<(crate::digest::Sha256Digest, Option<String>), String> {
        let s = &self.settings;
        // Each verification gets the whole overall deadline.
        let registry = s.registry.for_one_operation();
        let remote =
            crate::verify::verify_reference(&registry, reference, &s.trusted, &s.policy, None)
                .map_err(|e| format!("cannot verify {reference}: {e}"))?;
        let failed: Vec<String> = remote
            .verdict
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        let refusal = (!remote.verdict.verified).then(|| {
            format!(
                "{reference} does not verify: {}",
                if failed.is_empty() {
                    "no check passed".to_string()
                } else {
                    failed.join("; ")
                }
            )
        });
        Ok((remote.digest, refusal))
    }

    /// Decides on one review: allowed, or the reason it is not.
    fn decide(&self, request: &ReviewRequest) -> Result<Decision, String> {
        let Some(object) = request
            .object
            .as_ref()
            .filter(|_| matches!(request.operation.as_str(), "CREATE" | "UPDATE"))
        else {
            // DELETE and CONNECT start nothing.
            return Ok(Decision::Allow { recorded: 0 });
        };
        let Some(spec) = pod_spec(&request.kind.kind, object) else {
            return Ok(Decision::NotAWorkload);
        };
        let mut checked = Vec::new();
        for image in images(spec) {
            let image = self.check(&image)?;
            if let Some(refusal) = image.refusal {
                return Err(refusal);
            }
            checked.push(image);
        }
        if request.dry_run || checked.is_empty() {
            return Ok(Decision::Allow { recorded: 0 });
        }
        if self.already_recorded(&request.uid) {
            return Ok(Decision::Allow { recorded: 0 });
        }
        let Some(env) = &self.settings.env else {
            return Err(
                "cairn serve was started without --env: the deployment cannot be recorded"
                    .to_string(),
            );
        };
        let name = if request.name.is_empty() {
            object["metadata"]["name"]
                .as_str()
                .or_else(|| object["metadata"]["generateName"].as_str())
                .unwrap_or_default()
                .to_string()
        } else {
            request.name.clone()
        };
        let entries: Vec<_> = checked
            .into_iter()
            .map(|image| self.details(request, env, &name, image))
            .collect();
        let recorded = entries.len();
        self.record(entries).map_err(|e| {
            format!(
                "cannot record the deployment in the ledger {}: {e}",
                self.settings.ledger.location()
            )
        })?;
        self.remember(&request.uid);
        Ok(Decision::Allow { recorded })
    }

    /// A deploy entry's details for one image of `request`.
    fn details(
        &self,
        request: &ReviewRequest,
        env: &str,
        name: &str,
        image: Checked,
    ) -> BTreeMap<String, serde_json::Value> {
        let mut details = BTreeMap::from([
            ("image".to_string(), image.named.into()),
            ("digest".to_string(), image.digest.into()),
            ("env".to_string(), env.into()),
            ("namespace".to_string(), request.namespace.clone().into()),
            ("kind".to_string(), request.kind.kind.clone().into()),
            ("name".to_string(), name.into()),
            ("uid".to_string(), request.uid.clone().into()),
            (
                "username".to_string(),
                request.user_info.username.clone().into(),
            ),
            (
                "groups".to_string(),
                request.user_info.groups.clone().into(),
            ),
        ]);
        if let Some(cluster) = &self.settings.cluster {
            details.insert("cluster".to_string(), cluster.clone().into());
        }
        details
    }

    /// Hands the entries to the writer thread and waits until they are durable.
    fn record(&self, entries: Vec<BTreeMap<String, serde_json::Value>>) -> Result<(), String> {
        let (done, answer) = mpsc::channel();
        let deployment = Deployment {
            entries,
            time: self.settings.now_rfc3339(),
            done,
        };
        let sent = match &*self.writer.lock().expect("ledger writer lock") {
            Some(writer) => writer.send(deployment).is_ok(),
            None => false,
        };
        if !sent {
            return Err("the service is shutting down".to_string());
        }
        answer
            .recv()
            .unwrap_or_else(|_| Err("the ledger writer stopped".to_string()))
    }

    fn already_recorded(&self, uid: &str) -> bool {
        self.recorded
            .lock()
            .expect("recorded uids lock")
            .contains_key(uid)
    }

    /// Keeps `uid` for a TTL (the API server does not deliver one request later than
    /// its own webhook timeout).
    fn remember(&self, uid: &str) {
        let now = (self.settings.clock)();
        let mut recorded = self.recorded.lock().expect("recorded uids lock");
        recorded.retain(|_, at| now.saturating_sub(*at) < self.ttl.max(60));
        recorded.insert(uid.to_string(), now);
    }
}

/// An image that was checked: as it will be recorded, and why it may not run, if not.
struct Checked {
    named: String,
    digest: String,
    refusal: Option<String>,
}

enum Decision {
    Allow {
        recorded: usize,
    },
    /// A kind without a pod template: nothing to check.
    NotAWorkload,
}

impl Handler for Admit {
    /// Closes the writer's queue and waits for it to finish what it holds.
    fn shutdown(&self) {
        drop(self.writer.lock().expect("ledger writer lock").take());
        if let Some(thread) = self
            .writer_thread
            .lock()
            .expect("writer thread lock")
            .take()
        {
            let _ = thread.join();
        }
    }

    fn handle(&self, request: Request) -> Response {
        let review: Review = match serde_json::from_slice(&request.body) {
            Ok(review) => review,
            Err(e) => {
                return Response::new(
                    http::StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": format!("not an AdmissionReview: {e}")}),
                )
            }
        };
        if review.api_version != API_VERSION || review.kind != "AdmissionReview" {
            return Response::new(
                http::StatusCode::BAD_REQUEST,
                serde_json::json!({"error": format!(
                    "expected an {API_VERSION} AdmissionReview, got {} {} (set admissionReviewVersions: [v1])",
                    review.api_version, review.kind
                )}),
            );
        }
        let r = &review.request;
        let decision = self.decide(r);
        let fields = serde_json::json!({
            "uid": r.uid,
            "namespace": r.namespace,
            "kind": r.kind.kind,
            "name": r.name,
            "username": r.user_info.username,
            "dry_run": r.dry_run,
        });
        let response = match &decision {
            Ok(Decision::Allow { recorded }) => {
                super::log(
                    "admitted",
                    merge(fields, serde_json::json!({"recorded": recorded})),
                );
                serde_json::json!({"uid": r.uid, "allowed": true})
            }
            Ok(Decision::NotAWorkload) => {
                let warning = format!(
                    "cairn: {} has no pod template; nothing was checked",
                    r.kind.kind
                );
                super::log(
                    "admitted",
                    merge(fields, serde_json::json!({"warning": warning})),
                );
                serde_json::json!({"uid": r.uid, "allowed": true, "warnings": [warning]})
            }
            Err(reason) => {
                super::log(
                    "denied",
                    merge(fields, serde_json::json!({"reason": reason})),
                );
                serde_json::json!({
                    "uid": r.uid,
                    "allowed": false,
                    "status": {"code": 403, "reason": "Forbidden", "message": reason},
                })
            }
        };
        Response::new(
            http::StatusCode::OK,
            serde_json::json!({
                "apiVersion": API_VERSION,
                "kind": "AdmissionReview",
                "response": response,
            }),
        )
    }
}

fn merge(mut fields: serde_json::Value, more: serde_json::Value) -> serde_json::Value {
    if let (Some(fields), serde_json::Value::Object(more)) = (fields.as_object_mut(), more) {
        fields.extend(more);
    }
    fields
}

/// The pod spec inside `object` of `kind`: a Pod's own, a controller's pod template's,
/// a CronJob's job template's.
fn pod_spec<'a>(kind: &str, object: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
    let spec = &object["spec"];
    let pod = match kind {
        "Pod" => spec,
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => &spec["template"]["spec"],
        "CronJob" => &spec["jobTemplate"]["spec"]["template"]["spec"],
        _ => return None,
    };
    Some(pod)
}

/// Every container, init container and ephemeral container image, each once, in the
/// order they appear.
fn images(pod: &serde_json::Value) -> Vec<String> {
    let mut images: Vec<String> = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in pod[list].as_array().into_iter().flatten() {
            if let Some(image) = container["image"].as_str() {
                if !images.iter().any(|i| i == image) {
                    images.push(image.to_string());
                }
            }
        }
    }
    images
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pod_template_kind_and_container_list_is_read() {
        let pod = serde_json::json!({
            "containers": [{"name": "a", "image": "r.example/a@sha256:1"},
                           {"name": "b", "image": "r.example/b:1"}],
            "initContainers": [{"name": "i", "image": "r.example/init:1"}],
            "ephemeralContainers": [{"name": "d", "image": "r.example/a@sha256:1"},
                                    {"name": "e", "image": "r.example/debug:1"}],
        });
        let template = serde_json::json!({"spec": {"template": {"spec": pod}}});
        for kind in [
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
        ] {
            assert_eq!(
                images(pod_spec(kind, &template).unwrap()),
                [
                    "r.example/init:1",
                    "r.example/a@sha256:1",
                    "r.example/b:1",
                    "r.example/debug:1"
                ],
                "{kind}"
            );
        }
        let cron =
            serde_json::json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod}}}}});
        assert_eq!(images(pod_spec("CronJob", &cron).unwrap()).len(), 4);
        let bare = serde_json::json!({"spec": pod});
        assert_eq!(images(pod_spec("Pod", &bare).unwrap()).len(), 4);
        assert!(pod_spec("ConfigMap", &bare).is_none());
    }
}
