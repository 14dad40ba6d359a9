//! Kubernetes calls of the controller against kube-rs `tower-test` mock scenarios: each test
//! scripts the API server's side request by request and checks what the controller sends.

use std::time::Duration;

use dyce_control_core::law::{Decision, Direction, Reason};
use dyce_controller::kube::lease::{Elector, LeaseConfig};
use dyce_controller::kube::resource::{SloPolicy, SloPolicyResourceSpec as SloPolicySpec, SloPolicyStatus};
use dyce_controller::kube::status::{apply_status, events_for, publish};
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::coordination::v1::Lease;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use serde_json::{json, Value};
use tower_test::mock::{self, Handle};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn mock_client() -> (Client, ApiHandle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "ml"), handle)
}

/// The next request: method, path and query, parsed JSON body, and the channel to answer on.
async fn next(h: &mut ApiHandle) -> (Method, String, Value, mock::SendResponse<Response<Body>>) {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), h.next_request())
        .await
        .expect("a request within 5 s")
        .expect("the client is alive");
    let method = req.method().clone();
    let uri = req.uri().to_string();
    let ct = req.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    let body = match ct {
        Some(ct) => json!({"content-type": ct, "json": body}),
        None => json!({"json": body}),
    };
    (method, uri, body, send)
}

fn reply(send: mock::SendResponse<Response<Body>>, code: u16, body: Value) {
    let resp = Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    send.send_response(resp);
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

fn conflict() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "modified"})
}

fn policy() -> SloPolicy {
    let spec: SloPolicySpec = serde_json::from_value(json!({
        "selector": {"matchLabels": {"app": "dyce-runtime"}},
        "objective": {"latency": {"threshold": "50ms"}}
    }))
    .unwrap();
    let mut p = SloPolicy::new("fmnist", spec);
    p.metadata.namespace = Some("ml".into());
    p.metadata.uid = Some("uid-1".into());
    p
}

#[tokio::test]
async fn status_is_written_by_server_side_apply_on_the_status_subresource() {
    let (client, mut h) = mock_client();
    let api: Api<SloPolicy> = Api::namespaced(client, "ml");
    let status = SloPolicyStatus {
        state: Some("Degraded".into()),
        config: Some("c03".into()),
        runtimes: Some(2),
        ..Default::default()
    };
    let server = tokio::spawn(async move {
        let (method, uri, body, send) = next(&mut h).await;
        assert_eq!(method, Method::PATCH);
        assert!(uri.starts_with("/apis/dyce.dev/v1alpha1/namespaces/ml/slopolicies/fmnist/status?"), "{uri}");
        assert!(uri.contains("fieldManager=dyce-controller") && uri.contains("force=true"), "{uri}");
        assert_eq!(body["content-type"], "application/apply-patch+yaml");
        let patch = &body["json"];
        assert_eq!(patch["apiVersion"], "dyce.dev/v1alpha1");
        assert_eq!(patch["kind"], "SloPolicy");
        assert_eq!(patch["status"], json!({"state": "Degraded", "config": "c03", "runtimes": 2}));
        // Apply touches nothing but status: no spec, no metadata beyond what SSA needs.
        assert!(patch.get("spec").is_none(), "{patch}");
        let mut obj = serde_json::to_value(policy()).unwrap();
        obj["status"] = patch["status"].clone();
        reply(send, 200, obj);
    });
    apply_status(&api, "fmnist", &status).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn status_write_errors_surface() {
    let (client, mut h) = mock_client();
    let api: Api<SloPolicy> = Api::namespaced(client, "ml");
    let server = tokio::spawn(async move {
        let (_, _, _, send) = next(&mut h).await;
        reply(send, 404, not_found());
    });
    let err = apply_status(&api, "gone", &SloPolicyStatus::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404), "{err}");
    server.await.unwrap();
}

fn decision(direction: Direction, saturated: bool) -> Decision {
    Decision {
        rank: 0,
        direction,
        reason: Reason::Latency { observed: 0.08 },
        saturated,
        desired_replicas: Some(3),
        utilization: Some(1.2),
    }
}

#[test]
fn events_follow_degrades_restores_and_the_start_of_saturation() {
    let names =
        |evs: Vec<kube::runtime::events::Event>| evs.into_iter().map(|e| e.reason).collect::<Vec<_>>();
    assert_eq!(names(events_for(&decision(Direction::Hold, false), "full", false)), Vec::<String>::new());
    assert_eq!(names(events_for(&decision(Direction::Degrade, false), "c03", false)), ["Degraded"]);
    assert_eq!(names(events_for(&decision(Direction::Restore, false), "c05", false)), ["Restored"]);
    assert_eq!(
        names(events_for(&decision(Direction::Degrade, true), "c00", false)),
        ["Degraded", "Saturated"]
    );
    // Saturation is announced once, not every tick it lasts.
    assert_eq!(names(events_for(&decision(Direction::Hold, true), "c00", true)), Vec::<String>::new());
}

#[tokio::test]
async fn events_are_created_on_the_policy_then_a_repeat_becomes_a_series() {
    let (client, mut h) = mock_client();
    let recorder = Recorder::new(
        client,
        Reporter { controller: "dyce-controller".into(), instance: Some("pod-a".into()) },
    );
    let p = policy();
    let evs = events_for(&decision(Direction::Degrade, false), "c03", false);
    let server = tokio::spawn(async move {
        let (method, uri, body, send) = next(&mut h).await;
        assert_eq!(method, Method::POST);
        assert!(uri.starts_with("/apis/events.k8s.io/v1/namespaces/ml/events"), "{uri}");
        let ev = body["json"].clone();
        assert_eq!(ev["reason"], "Degraded");
        assert_eq!(ev["type"], "Normal");
        assert_eq!(ev["action"], "SwitchConfig");
        assert_eq!(ev["reportingController"], "dyce-controller");
        assert_eq!(ev["reportingInstance"], "pod-a");
        assert_eq!(ev["regarding"]["kind"], "SloPolicy");
        assert_eq!(ev["regarding"]["name"], "fmnist");
        assert_eq!(ev["regarding"]["apiVersion"], "dyce.dev/v1alpha1");
        assert!(ev["note"].as_str().unwrap().starts_with("switched to c03"), "{ev}");
        let name = ev["metadata"]["name"].as_str().unwrap().to_string();
        reply(send, 201, ev);
        // The same event again is folded into a series (a PATCH), not a new object.
        let (method, uri, body, send) = next(&mut h).await;
        assert_eq!(method, Method::PATCH);
        assert!(uri.contains(&format!("/events/{name}")), "{uri}");
        assert_eq!(body["json"]["series"]["count"], 2);
        reply(send, 200, body["json"].clone());
    });
    publish(&recorder, &p, &evs).await;
    publish(&recorder, &p, &evs).await;
    server.await.unwrap();
}

fn elector(client: Client, identity: &str) -> Elector {
    let cfg = LeaseConfig {
        name: "dyce-controller".into(),
        identity: identity.into(),
        duration: Duration::from_secs(1),
    };
    Elector::new(Api::<Lease>::namespaced(client, "ml"), cfg)
}

fn lease(holder: Option<&str>, rv: &str, renew: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "dyce-controller", "namespace": "ml", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 1, "renewTime": renew,
                 "acquireTime": "2026-11-29T10:00:00.000000Z", "leaseTransitions": transitions}
    })
}

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ml/leases/dyce-controller";

#[tokio::test]
async fn lease_is_created_when_absent_and_renewed_while_held() {
    let (client, mut h) = mock_client();
    let e = elector(client, "pod-a");
    let server = tokio::spawn(async move {
        let (method, uri, _, send) = next(&mut h).await;
        assert_eq!((method, uri.as_str()), (Method::GET, LEASE_PATH));
        reply(send, 404, not_found());
        let (method, uri, body, send) = next(&mut h).await;
        assert_eq!(method, Method::POST);
        assert!(uri.starts_with("/apis/coordination.k8s.io/v1/namespaces/ml/leases"), "{uri}");
        let spec = &body["json"]["spec"];
        assert_eq!(spec["holderIdentity"], "pod-a");
        assert_eq!(spec["leaseDurationSeconds"], 1);
        assert_eq!(spec["leaseTransitions"], 0);
        assert!(spec["renewTime"].is_string() && spec["acquireTime"].is_string(), "{spec}");
        reply(send, 201, lease(Some("pod-a"), "10", "2026-11-29T12:00:00.000000Z", 0));
        // Renewal: read, then update carrying the resourceVersion that was read.
        let (_, _, _, send) = next(&mut h).await;
        reply(send, 200, lease(Some("pod-a"), "10", "2026-11-29T12:00:00.000000Z", 0));
        let (method, uri, body, send) = next(&mut h).await;
        assert_eq!((method, uri.trim_end_matches('?')), (Method::PUT, LEASE_PATH));
        assert_eq!(body["json"]["metadata"]["resourceVersion"], "10");
        assert_eq!(body["json"]["spec"]["holderIdentity"], "pod-a");
        assert_eq!(body["json"]["spec"]["leaseTransitions"], 0, "a renewal is not a transition");
        assert_ne!(body["json"]["spec"]["renewTime"], "2026-11-29T12:00:00.000000Z");
        reply(send, 200, lease(Some("pod-a"), "11", "2026-11-29T12:00:01.000000Z", 0));
    });
    assert!(e.try_acquire_or_renew().await.unwrap(), "created");
    assert!(e.try_acquire_or_renew().await.unwrap(), "renewed");
    server.await.unwrap();
}

#[tokio::test]
async fn a_held_lease_is_taken_over_only_after_it_stops_changing_for_its_duration() {
    let (client, mut h) = mock_client();
    let e = elector(client, "pod-b");
    let server = tokio::spawn(async move {
        // Held by pod-a: pod-b waits, and writes nothing.
        let (_, _, _, send) = next(&mut h).await;
        reply(send, 200, lease(Some("pod-a"), "20", "2026-11-29T12:00:00.000000Z", 4));
        // pod-a renewed in the meantime (a new renewTime): still held.
        let (_, _, _, send) = next(&mut h).await;
        reply(send, 200, lease(Some("pod-a"), "21", "2026-11-29T12:00:00.900000Z", 4));
        // The same record for longer than the lease duration: pod-a is gone, take over.
        let (_, _, _, send) = next(&mut h).await;
        reply(send, 200, lease(Some("pod-a"), "21", "2026-11-29T12:00:00.900000Z", 4));
        let (method, _, body, send) = next(&mut h).await;
        assert_eq!(method, Method::PUT);
        assert_eq!(body["json"]["metadata"]["resourceVersion"], "21");
        assert_eq!(body["json"]["spec"]["holderIdentity"], "pod-b");
        assert_eq!(body["json"]["spec"]["leaseTransitions"], 5);
        reply(send, 200, lease(Some("pod-b"), "22", "2026-11-29T12:00:02.000000Z", 5));
    });
    assert!(!e.try_acquire_or_renew().await.unwrap(), "held by pod-a");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!e.try_acquire_or_renew().await.unwrap(), "pod-a renewed");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(e.try_acquire_or_renew().await.unwrap(), "taken over");
    server.await.unwrap();
}

#[tokio::test]
async fn losing_the_race_for_a_lease_is_not_an_error() {
    let (client, mut h) = mock_client();
    let e = elector(client, "pod-b");
    let server = tokio::spawn(async move {
        // Free lease (no holder): both candidates update; the other one's write landed first.
        let (_, _, _, send) = next(&mut h).await;
        reply(send, 200, lease(None, "30", "2026-11-29T12:00:00.000000Z", 1));
        let (method, _, _, send) = next(&mut h).await;
        assert_eq!(method, Method::PUT);
        reply(send, 409, conflict());
        // Absent lease, but someone creates it first.
        let (_, _, _, send) = next(&mut h).await;
        reply(send, 404, not_found());
        let (method, _, _, send) = next(&mut h).await;
        assert_eq!(method, Method::POST);
        reply(send, 409, conflict());
    });
    assert!(!e.try_acquire_or_renew().await.unwrap());
    assert!(!e.try_acquire_or_renew().await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn release_clears_the_holder_only_when_held_by_us() {
    let (client, mut h) = mock_client();
    let e = elector(client, "pod-a");
    let server = tokio::spawn(async move {
        let (_, _, _, send) = next(&mut h).await;
        reply(send, 200, lease(Some("pod-a"), "40", "2026-11-29T12:00:00.000000Z", 2));
        let (method, _, body, send) = next(&mut h).await;
        assert_eq!(method, Method::PUT);
        assert!(body["json"]["spec"].get("holderIdentity").is_none_or(Value::is_null), "{body}");
        assert_eq!(body["json"]["metadata"]["resourceVersion"], "40");
        reply(send, 200, lease(None, "41", "2026-11-29T12:00:00.000000Z", 2));
        // Someone else's lease is left alone: a GET and no write.
        let (_, _, _, send) = next(&mut h).await;
        reply(send, 200, lease(Some("pod-z"), "50", "2026-11-29T12:00:00.000000Z", 3));
    });
    e.release().await.unwrap();
    e.release().await.unwrap();
    server.await.unwrap();
}
