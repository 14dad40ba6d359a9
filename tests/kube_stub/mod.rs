//! An in-process stand-in for the Kubernetes API server: real HTTP on loopback, real list and
//! watch (chunked JSON lines) of pods and SloPolicies, status patches, Events and Leases. Only
//! what `dyce control --kubernetes` uses; everything it is sent is recorded for assertions.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::broadcast;

/// Which collection an object belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    Policy,
    Lease,
}

type Key = (Kind, String, String);

/// A group of API calls that can be made to fail (fault injection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    /// Pod list and watch.
    Pods,
    /// SloPolicy status patches.
    Status,
    /// Event creation and patches.
    Events,
    /// Lease get, create and update.
    Lease,
}

#[derive(Default)]
pub struct Recorded {
    pub status_patches: Vec<Value>,
    pub events: Vec<Value>,
    pub requests: Vec<String>,
}

struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    recorded: Recorded,
    /// Routes answering an error status instead, as an API server under trouble does.
    failing: BTreeMap<Route, u16>,
}

/// The stub's state; clone freely.
#[derive(Clone)]
pub struct Stub {
    inner: Arc<Mutex<Inner>>,
    tx: broadcast::Sender<(Kind, String, Value)>,
    /// Answer 404 for SloPolicies, as a cluster without the CRD does.
    pub crd_missing: bool,
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

impl Stub {
    pub fn new(crd_missing: bool) -> Self {
        let (tx, _) = broadcast::channel(1024);
        let inner = Inner {
            rv: 1,
            objects: BTreeMap::new(),
            recorded: Recorded::default(),
            failing: BTreeMap::new(),
        };
        Self { inner: Arc::new(Mutex::new(inner)), tx, crd_missing }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Creates or replaces an object and tells the watchers.
    pub fn put(&self, kind: Kind, mut obj: Value) {
        let ns = obj["metadata"]["namespace"].as_str().unwrap().to_string();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let mut g = self.lock();
        g.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(g.rv.to_string());
        if obj["metadata"]["uid"].is_null() {
            obj["metadata"]["uid"] = json!(format!("uid-{ns}-{name}"));
        }
        let old = g.objects.insert((kind, ns.clone(), name), obj.clone());
        let ty = if old.is_some() { "MODIFIED" } else { "ADDED" };
        let _ = self.tx.send((kind, ns, json!({"type": ty, "object": obj})));
    }

    /// Deletes an object and tells the watchers.
    pub fn delete(&self, kind: Kind, ns: &str, name: &str) {
        let mut g = self.lock();
        g.rv += 1;
        if let Some(mut obj) = g.objects.remove(&(kind, ns.into(), name.into())) {
            obj["metadata"]["resourceVersion"] = json!(g.rv.to_string());
            let _ = self.tx.send((kind, ns.into(), json!({"type": "DELETED", "object": obj})));
        }
    }

    pub fn object(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        self.lock().objects.get(&(kind, ns.into(), name.into())).cloned()
    }

    /// Makes `route` answer `code` (500, 503, 429...) until called again with `None`.
    pub fn fail(&self, route: Route, code: Option<u16>) {
        match code {
            Some(c) => self.lock().failing.insert(route, c),
            None => self.lock().failing.remove(&route),
        };
    }

    /// The injected error for `route`, if it is failing; counted in the recorded requests.
    fn injected(&self, route: Route) -> Option<Response> {
        let code = *self.lock().failing.get(&route)?;
        note(self, format!("FAIL {route:?} {code}"));
        Some(status(code, "InternalError", "stub: injected fault"))
    }

    pub fn with_recorded<R>(&self, f: impl FnOnce(&Recorded) -> R) -> R {
        f(&self.lock().recorded)
    }

    fn list_or_watch(&self, kind: Kind, ns: Option<String>, q: &BTreeMap<String, String>) -> Response {
        let (api_version, list_kind) = match kind {
            Kind::Pod => ("v1", "PodList"),
            _ => ("dyce.dev/v1alpha1", "SloPolicyList"),
        };
        if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
            let rx = self.tx.subscribe();
            let stream = futures::stream::unfold(rx, move |mut rx| {
                let ns = ns.clone();
                async move {
                    loop {
                        match rx.recv().await {
                            Ok((k, n, ev)) if k == kind && ns.as_ref().is_none_or(|x| *x == n) => {
                                let mut line = serde_json::to_vec(&ev).unwrap();
                                line.push(b'\n');
                                return Some((Ok::<_, Infallible>(Bytes::from(line)), rx));
                            }
                            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            });
            return Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(stream))
                .unwrap();
        }
        let g = self.lock();
        let items: Vec<Value> = g
            .objects
            .iter()
            .filter(|((k, n, _), _)| *k == kind && ns.as_ref().is_none_or(|x| x == n))
            .map(|(_, v)| v.clone())
            .collect();
        let body = json!({"apiVersion": api_version, "kind": list_kind,
                          "metadata": {"resourceVersion": g.rv.to_string()}, "items": items});
        Json(body).into_response()
    }

    /// Serves on `listener` until the process ends.
    pub fn router(self) -> Router {
        Router::new()
            .route("/api/v1/pods", get(pods_all))
            .route("/api/v1/namespaces/{ns}/pods", get(pods_ns))
            .route("/apis/dyce.dev/v1alpha1/slopolicies", get(policies_all))
            .route("/apis/dyce.dev/v1alpha1/namespaces/{ns}/slopolicies", get(policies_ns))
            .route("/apis/dyce.dev/v1alpha1/namespaces/{ns}/slopolicies/{name}/status", patch(policy_status))
            .route("/apis/events.k8s.io/v1/namespaces/{ns}/events", post(event_create))
            .route("/apis/events.k8s.io/v1/namespaces/{ns}/events/{name}", patch(event_patch))
            .route("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", post(lease_create))
            .route(
                "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
                get(lease_get).put(lease_put),
            )
            .fallback(|uri: axum::http::Uri| async move {
                status(404, "NotFound", &format!("stub: no route {uri}"))
            })
            .with_state(self)
    }
}

type Q = Query<BTreeMap<String, String>>;

fn note(s: &Stub, what: String) {
    s.lock().recorded.requests.push(what);
}

async fn pods_all(State(s): State<Stub>, Query(q): Q) -> Response {
    if let Some(r) = s.injected(Route::Pods) {
        return r;
    }
    s.list_or_watch(Kind::Pod, None, &q)
}
async fn pods_ns(State(s): State<Stub>, Path(ns): Path<String>, Query(q): Q) -> Response {
    if let Some(r) = s.injected(Route::Pods) {
        return r;
    }
    s.list_or_watch(Kind::Pod, Some(ns), &q)
}
async fn policies_all(State(s): State<Stub>, Query(q): Q) -> Response {
    if s.crd_missing {
        return status(404, "NotFound", "the server could not find the requested resource");
    }
    s.list_or_watch(Kind::Policy, None, &q)
}
async fn policies_ns(State(s): State<Stub>, Path(ns): Path<String>, Query(q): Q) -> Response {
    if s.crd_missing {
        return status(404, "NotFound", "the server could not find the requested resource");
    }
    s.list_or_watch(Kind::Policy, Some(ns), &q)
}

async fn policy_status(
    State(s): State<Stub>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Q,
    body: Bytes,
) -> Response {
    if let Some(r) = s.injected(Route::Status) {
        return r;
    }
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &e.to_string()),
    };
    note(&s, format!("PATCH status {ns}/{name} {q:?}"));
    let Some(mut obj) = s.object(Kind::Policy, &ns, &name) else {
        return status(404, "NotFound", "no such policy");
    };
    obj["status"] = patch["status"].clone();
    s.lock().recorded.status_patches.push(json!({"query": q, "patch": patch}));
    s.put(Kind::Policy, obj.clone());
    Json(s.object(Kind::Policy, &ns, &name).unwrap()).into_response()
}

async fn event_create(State(s): State<Stub>, Path(ns): Path<String>, Json(ev): Json<Value>) -> Response {
    if let Some(r) = s.injected(Route::Events) {
        return r;
    }
    note(&s, format!("POST event {ns}"));
    s.lock().recorded.events.push(ev.clone());
    (StatusCode::CREATED, Json(ev)).into_response()
}

async fn event_patch(
    State(s): State<Stub>,
    Path((ns, name)): Path<(String, String)>,
    Json(ev): Json<Value>,
) -> Response {
    if let Some(r) = s.injected(Route::Events) {
        return r;
    }
    note(&s, format!("PATCH event {ns}/{name}"));
    s.lock().recorded.events.push(ev.clone());
    Json(ev).into_response()
}

async fn lease_get(State(s): State<Stub>, Path((ns, name)): Path<(String, String)>) -> Response {
    if let Some(r) = s.injected(Route::Lease) {
        return r;
    }
    match s.object(Kind::Lease, &ns, &name) {
        Some(l) => Json(l).into_response(),
        None => status(404, "NotFound", "lease not found"),
    }
}

async fn lease_create(State(s): State<Stub>, Path(ns): Path<String>, Json(mut l): Json<Value>) -> Response {
    if let Some(r) = s.injected(Route::Lease) {
        return r;
    }
    let name = l["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if s.object(Kind::Lease, &ns, &name).is_some() {
        return status(409, "AlreadyExists", "lease exists");
    }
    l["metadata"]["namespace"] = json!(ns);
    s.put(Kind::Lease, l);
    (StatusCode::CREATED, Json(s.object(Kind::Lease, &ns, &name).unwrap())).into_response()
}

async fn lease_put(
    State(s): State<Stub>,
    Path((ns, name)): Path<(String, String)>,
    Json(mut l): Json<Value>,
) -> Response {
    if let Some(r) = s.injected(Route::Lease) {
        return r;
    }
    let Some(cur) = s.object(Kind::Lease, &ns, &name) else {
        return status(404, "NotFound", "lease not found");
    };
    if l["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"] {
        return status(409, "Conflict", "the object has been modified");
    }
    l["metadata"]["namespace"] = json!(ns);
    s.put(Kind::Lease, l);
    Json(s.object(Kind::Lease, &ns, &name).unwrap()).into_response()
}
