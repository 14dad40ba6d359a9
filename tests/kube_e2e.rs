//! `dyce control --kubernetes` end to end: the unmodified binary, pointed by a kubeconfig at an
//! in-process API stub (real HTTP list/watch), discovers two real runtime processes as pods,
//! pushes a config to them, writes status, follows pods and policies coming and going, and
//! gives up its Lease on SIGTERM.

mod common;
mod kube_stub;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{get, serve_with, Server};
use kube_stub::{Kind, Route, Stub};
use serde_json::{json, Value};

struct Api {
    stub: Stub,
    url: String,
    _rt: tokio::runtime::Runtime,
}

fn start_api(crd_missing: bool) -> Api {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stub = Stub::new(crd_missing);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = stub.clone().router();
    rt.spawn(async move { axum::serve(listener, router).await.unwrap() });
    Api { stub, url, _rt: rt }
}

fn kubeconfig(dir: &Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: stub\n  cluster: {{server: \"{server}\"}}\n\
         users:\n- name: stub\n  user: {{}}\ncontexts:\n- name: stub\n  context: {{cluster: stub, user: stub, namespace: ml}}\n\
         current-context: stub\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn pod(name: &str, admin_port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "ml", "labels": {"app": "dyce-runtime"}},
        "spec": {"containers": [{"name": "dyce", "ports": [
            {"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": admin_port}]}]},
        "status": {"phase": "Running", "podIP": "127.0.0.1",
                   "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn policy(name: &str, floor: f64) -> Value {
    json!({
        "apiVersion": "dyce.dev/v1alpha1", "kind": "SloPolicy",
        "metadata": {"name": name, "namespace": "ml", "generation": 1},
        "spec": {
            "selector": {"matchLabels": {"app": "dyce-runtime"}},
            "objective": {"latency": {"threshold": "50ms"}},
            "accuracyFloor": floor,
            "control": {"interval": "200ms"}
        }
    })
}

struct Controller {
    child: Child,
    addr: String,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn controller(kubeconfig: &Path, log: &Path) -> Controller {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args(["control", "--kubernetes", "--listen", "127.0.0.1:0", "--identity", "test-controller"])
        .args(["--lease-namespace", "ml", "--lease-seconds", "3", "--status-refresh", "1"])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("dyce control starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!("first line names the address, got {line:?}; log:\n{}", std::fs::read_to_string(log).unwrap())
    });
    Controller { child, addr: format!("http://{}", v["controller"].as_str().unwrap()) }
}

fn wait_for<T>(what: &str, within: Duration, log: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; controller log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn active(rt: &Server) -> String {
    get(&format!("{}/v1/config", rt.admin)).1["id"].as_str().unwrap_or_default().to_string()
}

#[test]
fn steers_runtime_pods_writes_status_and_follows_changes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("controller.log");
    let api = start_api(false);
    // Both runtimes start on the cheapest config; the policy's floor forbids it, so the controller
    // must move them to the richest allowed one.
    let rts: Vec<Server> =
        (0..2).map(|_| serve_with(&["--initial-config", "c00"], Duration::from_secs(120))).collect();
    assert!(rts.iter().all(|r| active(r) == "c00"));
    for (i, r) in rts.iter().enumerate() {
        api.stub.put(Kind::Pod, pod(&format!("rt-{i}"), port_of(&r.admin)));
    }
    // A pod that matches but is not ready, and one that is ready but not selected: neither counts.
    let mut unready = pod("rt-unready", 1);
    unready["status"]["conditions"][0]["status"] = json!("False");
    api.stub.put(Kind::Pod, unready);
    let mut other = pod("other-app", 2);
    other["metadata"]["labels"]["app"] = json!("something-else");
    api.stub.put(Kind::Pod, other);
    api.stub.put(Kind::Policy, policy("fmnist", 0.92));
    let mut bad = policy("broken", 1.5);
    bad["metadata"]["generation"] = json!(3);
    api.stub.put(Kind::Policy, bad);

    let c = controller(&kubeconfig(dir.path(), &api.url), &log);
    wait_for("both runtimes on the full model", Duration::from_secs(30), &log, || {
        rts.iter().all(|r| active(r) == "full").then_some(())
    });
    let st = wait_for("status: Steady on full with 2 runtimes", Duration::from_secs(30), &log, || {
        let s = api.stub.object(Kind::Policy, "ml", "fmnist")?["status"].clone();
        (s["config"] == "full" && s["runtimes"] == 2 && s["state"] == "Steady").then_some(s)
    });
    let ready = st["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(ready["status"], "True", "{st}");
    assert_eq!(st["runtimesAnswering"], 2, "{st}");
    // Status is written with server-side apply under dyce's field manager.
    api.stub.with_recorded(|r| {
        let p = &r.status_patches[0];
        assert_eq!(p["query"]["fieldManager"], "dyce-controller", "{p}");
        assert_eq!(p["query"]["force"], "true", "{p}");
        assert_eq!(p["patch"]["apiVersion"], "dyce.dev/v1alpha1");
        assert_eq!(p["patch"]["kind"], "SloPolicy");
    });
    // The invalid policy is reported, not steered.
    let bad = wait_for("status of the invalid policy", Duration::from_secs(10), &log, || {
        let s = api.stub.object(Kind::Policy, "ml", "broken")?["status"].clone();
        (s["state"] == "Invalid").then_some(s)
    });
    let cond = &bad["conditions"][0];
    assert_eq!(
        (cond["type"].as_str(), cond["reason"].as_str()),
        (Some("Ready"), Some("InvalidPolicy")),
        "{bad}"
    );
    assert!(cond["message"].as_str().unwrap().contains("spec.accuracyFloor"), "{bad}");
    assert_eq!(bad["observedGeneration"], 3);
    // The Lease names this replica.
    let lease = api.stub.object(Kind::Lease, "ml", "dyce-controller").expect("lease created");
    assert_eq!(lease["spec"]["holderIdentity"], "test-controller");
    let (code, status) = get(&format!("{}/v1/status", c.addr));
    assert_eq!(code, 200);
    assert_eq!(status["leader"], true);

    // A pod goes away: the status follows.
    api.stub.delete(Kind::Pod, "ml", "rt-1");
    wait_for("status with 1 runtime", Duration::from_secs(15), &log, || {
        let s = api.stub.object(Kind::Policy, "ml", "fmnist")?["status"].clone();
        (s["runtimes"] == 1).then_some(())
    });
    // A new pod on the cheap config appears: it is brought onto the decided config.
    get(&format!("{}/v1/config", rts[1].admin));
    let (code, _) = common::put(&format!("{}/v1/config", rts[1].admin), &json!({"id": "c00"}));
    assert_eq!(code, 200);
    api.stub.put(Kind::Pod, pod("rt-1b", port_of(&rts[1].admin)));
    wait_for("the new pod on full", Duration::from_secs(15), &log, || {
        (active(&rts[1]) == "full").then_some(())
    });

    // The policy is deleted: its loop stops.
    api.stub.delete(Kind::Policy, "ml", "fmnist");
    api.stub.delete(Kind::Policy, "ml", "broken");
    wait_for("no policies in /v1/status", Duration::from_secs(10), &log, || {
        let (_, s) = get(&format!("{}/v1/status", c.addr));
        s["policies"].as_array().is_some_and(|p| p.is_empty()).then_some(())
    });

    // SIGTERM: exit 0 and hand the Lease back.
    let mut c = c;
    Command::new("kill").args(["-TERM", &c.child.id().to_string()]).status().unwrap();
    let code = wait_for("controller exit", Duration::from_secs(10), &log, || c.child.try_wait().unwrap());
    assert!(code.success(), "exit {code:?}");
    let lease = api.stub.object(Kind::Lease, "ml", "dyce-controller").unwrap();
    assert!(lease["spec"]["holderIdentity"].is_null(), "lease released: {lease}");
}

#[test]
fn missing_crd_exits_with_an_install_hint() {
    let dir = tempfile::tempdir().unwrap();
    let api = start_api(true);
    let out = Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args(["control", "--kubernetes", "--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig(dir.path(), &api.url))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SloPolicy CRD") && err.contains("dyce crd | kubectl apply"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// Kubernetes API errors injected in the stub: pods that cannot be listed and a Lease that cannot
/// be read delay steering but do not end the process; status and Event writes that fail do not
/// stop steering, and the status is written once the API takes it; a leader that cannot renew
/// its Lease stops acting, and leads again when the API is back.
#[test]
fn api_errors_delay_steering_but_do_not_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("controller.log");
    let api = start_api(false);
    let rt = serve_with(&["--initial-config", "c00"], Duration::from_secs(120));
    api.stub.put(Kind::Pod, pod("rt-0", port_of(&rt.admin)));
    api.stub.put(Kind::Policy, policy("fmnist", 0.92));
    for route in [Route::Pods, Route::Lease, Route::Status, Route::Events] {
        // 500, not 503: kube's client retries 503 and 429 itself before the controller sees them.
        api.stub.fail(route, Some(500));
    }
    let c = controller(&kubeconfig(dir.path(), &api.url), &log);
    let log_text = || std::fs::read_to_string(&log).unwrap();
    wait_for("the failing watch and Lease logged", Duration::from_secs(10), &log, || {
        let t = log_text();
        (t.contains("watch failed; retrying") && t.contains("lease renewal failed")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(active(&rt), "c00", "steered without seeing pods or holding the Lease");
    let (code, _) = get(&format!("{}/healthz", c.addr));
    assert_eq!(code, 200, "alive while the API fails");

    // Pods and the Lease come back; status and Event writes still fail: steering goes on.
    api.stub.fail(Route::Pods, None);
    api.stub.fail(Route::Lease, None);
    wait_for("runtime on full while status writes fail", Duration::from_secs(30), &log, || {
        (active(&rt) == "full").then_some(())
    });
    wait_for("the failed status write logged", Duration::from_secs(10), &log, || {
        log_text().contains("could not write status").then_some(())
    });
    assert!(api.stub.object(Kind::Policy, "ml", "fmnist").unwrap()["status"].is_null());

    // The API takes status writes again: the status is written.
    api.stub.fail(Route::Status, None);
    api.stub.fail(Route::Events, None);
    wait_for("status: Steady on full", Duration::from_secs(15), &log, || {
        let s = api.stub.object(Kind::Policy, "ml", "fmnist")?["status"].clone();
        (s["config"] == "full" && s["state"] == "Steady").then_some(())
    });

    // The Lease cannot be renewed (3 s lease): leadership is given up, then taken back.
    api.stub.fail(Route::Lease, Some(500));
    wait_for("leadership lost", Duration::from_secs(10), &log, || {
        let (_, s) = get(&format!("{}/v1/status", c.addr));
        (s["leader"] == false).then_some(())
    });
    api.stub.fail(Route::Lease, None);
    wait_for("leader again", Duration::from_secs(15), &log, || {
        let (_, s) = get(&format!("{}/v1/status", c.addr));
        (s["leader"] == true).then_some(())
    });
}
