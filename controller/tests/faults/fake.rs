//! Fake runtimes for the controller's fault-injection tests: axum on port 0 speaking the admin
//! contract (`/v1/load`, `/v1/configs`, `PUT /v1/config`), each with a fault to inject.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dyce_controller::api::{ActiveConfig, ConfigEntry, ConfigsView, ExitChoice, LoadReport, SwitchRequest};

/// How a fake runtime misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers everything; a PUT switches it.
    None,
    /// Answers everything, but keeps reporting its default config whatever is pushed: the
    /// controller pushes to it every tick, which makes each tick visible as a PUT.
    Sticky,
    /// `/v1/load` never answers.
    HangLoad,
    /// `PUT /v1/config` never answers (and the runtime stays on its default config).
    HangPut,
    /// `/v1/load` answers 200 with a body that is not JSON.
    Garbage,
    /// `/v1/load` answers 200 with a body that never ends.
    Endless,
}

/// One fake runtime.
pub struct Fake {
    pub fault: Fault,
    pub active: Mutex<ActiveConfig>,
    pub loads: AtomicU64,
    pub puts: AtomicU64,
    pub url: String,
    /// While set, `/v1/load` hangs (a runtime that stops answering for a while).
    pub down: AtomicBool,
}

impl Fake {
    /// Starts one on loopback port 0, on its default config `cheap` at generation 0.
    pub async fn start(fault: Fault) -> Arc<Fake> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fake = Arc::new(Fake {
            fault,
            active: Mutex::new(ActiveConfig { id: "cheap".into(), generation: 0 }),
            loads: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            url,
            down: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/v1/load", get(load))
            .route("/v1/configs", get(configs))
            .route("/v1/config", get(active).put(switch))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        fake
    }

    /// What a restart does: back on the default config, generation 0.
    pub fn restart(&self) {
        *self.active.lock().unwrap() = ActiveConfig { id: "cheap".into(), generation: 0 };
    }

    pub fn active(&self) -> ActiveConfig {
        self.active.lock().unwrap().clone()
    }
}

pub fn table() -> Vec<ConfigEntry> {
    let exit = ExitChoice { position: 0, exit_type: "mlp1".into(), threshold: 0.5 };
    vec![
        ConfigEntry {
            id: "cheap".into(),
            exits: vec![exit],
            expected_accuracy: Some(0.85),
            macs_ratio: Some(0.5),
            latency_ratio: None,
            expected_disagreement: None,
        },
        ConfigEntry {
            id: "full".into(),
            exits: vec![],
            expected_accuracy: Some(0.9),
            macs_ratio: Some(1.0),
            latency_ratio: None,
            expected_disagreement: None,
        },
    ]
}

fn report(active: ActiveConfig, n: u64) -> LoadReport {
    LoadReport {
        window_seconds: 1.0,
        arrivals_per_second: 0.0,
        completions_per_second: 0.0,
        shed_per_second: 0.0,
        queue_depth: 0,
        in_flight: 0,
        latency_seconds: None,
        mean_batch_size: 0.0,
        active,
        compute_seconds_per_request: BTreeMap::new(),
        saturated_seconds_per_request: BTreeMap::new(),
        arrivals_total: n,
        shed_total: 0,
        completions_total: n,
        max_batch_size: 8,
        live_accuracy: None,
    }
}

async fn load(State(f): State<Arc<Fake>>) -> Response {
    f.loads.fetch_add(1, Ordering::Relaxed);
    if f.down.load(Ordering::Relaxed) {
        return std::future::pending().await;
    }
    match f.fault {
        Fault::HangLoad => std::future::pending().await,
        Fault::Garbage => "<html>not json</html>".into_response(),
        Fault::Endless => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let s = futures::stream::repeat_with(move || Ok::<_, Infallible>(chunk.clone()));
            ([("content-type", "application/json")], Body::from_stream(s)).into_response()
        }
        _ => Json(report(f.active(), 0)).into_response(),
    }
}

async fn configs(State(f): State<Arc<Fake>>) -> Json<ConfigsView> {
    Json(ConfigsView { model: "fake".into(), active: f.active(), configs: table() })
}

async fn active(State(f): State<Arc<Fake>>) -> Json<ActiveConfig> {
    Json(f.active())
}

async fn switch(State(f): State<Arc<Fake>>, Json(req): Json<SwitchRequest>) -> Json<ActiveConfig> {
    f.puts.fetch_add(1, Ordering::Relaxed);
    if f.fault == Fault::HangPut {
        std::future::pending::<()>().await;
    }
    let generation = req.generation.unwrap_or(f.active().generation + 1);
    let next = ActiveConfig { id: req.id, generation };
    if f.fault != Fault::Sticky {
        *f.active.lock().unwrap() = next.clone();
    }
    Json(next)
}

/// A local controller running `policy` over `fakes` (reading signals from Prometheus when
/// `prometheus` is given): its endpoints' base URL and the token that stops it.
pub async fn start_controller(
    policy: &str,
    fakes: &[Arc<Fake>],
    prometheus: Option<dyce_controller::prom::PromConfig>,
) -> (String, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let cfg = dyce_controller::local::LocalConfig {
        policy: dyce_control_core::policy::PolicyDocument::parse(policy).unwrap(),
        runtimes: fakes.iter().map(|f| f.url.clone()).collect(),
        admin_token: None,
        dry_run: false,
        prometheus,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(dyce_controller::local::run_local(cfg, listener, stop.clone()));
    (url, stop)
}

/// `dyce_controller_ticks_total` as the controller at `base` exposes it.
pub async fn ticks(base: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("dyce_controller_ticks_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}
