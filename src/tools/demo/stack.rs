//! The demo's view of a stack (`crate::cmd::stack`, what `dyce up` runs) on loopback ports:
//! started and waited for, its controller's status read, its config switched by hand, and the
//! poller that watches the runtime's active config.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dyce_control_core::policy::PolicyDocument;
use dyce_runtime::model::Bundle;
use dyce_runtime::service::ServeConfig;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cmd::serve::bind;
use crate::cmd::stack::{Listeners, Stack};

/// How long a fresh runtime may take to load and warm up.
const READY_WAIT: Duration = Duration::from_secs(60);

/// A short-timeout HTTP client without proxies (a proxy would be measured as the server).
pub fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .context("building the HTTP client")
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<(u16, Value)> {
    let resp = http.get(url).send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// Polls `url` until it answers 200.
async fn wait_ok(http: &reqwest::Client, url: &str) -> Result<()> {
    let deadline = Instant::now() + READY_WAIT;
    while get_json(http, url).await.map(|(s, _)| s).unwrap_or(0) != 200 {
        if Instant::now() > deadline {
            bail!("{url} not ready after {READY_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Starts a runtime on `bundle` and, with a policy, a controller steering it, on loopback
/// ports; returns once the runtime is warm and the controller has made its first decision.
pub async fn start(bundle: Bundle, serve: ServeConfig, policy: Option<PolicyDocument>) -> Result<Stack> {
    let loopback = || bind("127.0.0.1:0".parse().expect("an address"));
    let controller = match &policy {
        Some(_) => Some(loopback().await?),
        None => None,
    };
    let listeners = Listeners { data: loopback().await?, admin: loopback().await?, grpc: None, controller };
    let stack = Stack::start(bundle, &serve, policy, listeners, CancellationToken::new())?;
    let ready = async {
        let http = http()?;
        wait_ok(&http, &format!("{}/v2/health/ready", stack.data_url)).await?;
        if let Some((url, _)) = &stack.controller {
            wait_ok(&http, &format!("{url}/readyz")).await?;
        }
        anyhow::Ok(())
    };
    match ready.await {
        Ok(()) => Ok(stack),
        Err(e) => {
            // Never leave a half-started stack serving behind an error.
            let _ = stack.stop().await;
            Err(e)
        }
    }
}

/// The controller's `/v1/status` (`None` without a controller).
pub async fn status(stack: &Stack) -> Result<Option<Value>> {
    let Some((url, _)) = &stack.controller else { return Ok(None) };
    let (code, v) = get_json(&http()?, &format!("{url}/v1/status")).await?;
    anyhow::ensure!(code == 200, "{url}/v1/status answered HTTP {code}");
    Ok(Some(v))
}

/// Switches the runtime to config `id` (PUT /v1/config).
pub async fn put_config(stack: &Stack, id: &str) -> Result<()> {
    let url = format!("{}/v1/config", stack.admin_url);
    let resp = http()?.put(&url).json(&serde_json::json!({ "id": id })).send().await?;
    anyhow::ensure!(resp.status().is_success(), "PUT {url} {id}: HTTP {}", resp.status());
    Ok(())
}

/// One observation of the runtime's active config.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigSample {
    /// Seconds on the caller's clock (see [`poll_config`]).
    pub t: f64,
    /// Active config id.
    pub id: String,
    /// Its generation.
    pub generation: u64,
}

impl ConfigSample {
    /// For report.json.
    pub fn json(&self) -> Value {
        serde_json::json!({"t": self.t, "id": self.id, "generation": self.generation})
    }
}

/// Polls `GET {admin}/v1/config` every `every` until `stop` is cancelled; keeps the first
/// sample and every change, timed in seconds from `origin`. This is the ground truth of when a
/// switch was applied, independent of what the controller says it decided.
pub async fn poll_config(
    admin: String,
    origin: Instant,
    every: Duration,
    stop: CancellationToken,
) -> Vec<ConfigSample> {
    let Ok(http) = http() else { return vec![] };
    let mut samples: Vec<ConfigSample> = Vec::new();
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => break,
        }
        let Ok((200, v)) = get_json(&http, &format!("{admin}/v1/config")).await else { continue };
        let (Some(id), Some(generation)) = (v["id"].as_str(), v["generation"].as_u64()) else { continue };
        if samples.last().is_none_or(|s| s.id != id || s.generation != generation) {
            let t = Instant::now().saturating_duration_since(origin).as_secs_f64();
            samples.push(ConfigSample { t, id: id.to_string(), generation });
        }
    }
    samples
}
