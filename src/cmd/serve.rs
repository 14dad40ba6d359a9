//! `dyce serve`: the runtime sidecar.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use dyce_runtime::model::Bundle;
use dyce_runtime::server::Server;
use dyce_runtime::service::ServeConfig;
use tokio_util::sync::CancellationToken;

/// Arguments of `dyce serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Model bundle directory (manifest.json, weights.safetensors, configs.json).
    #[arg(long, env = "DYCE_MODEL")]
    pub model: Option<PathBuf>,
    /// Address of the data port (OIP v2 inference).
    #[arg(long, env = "DYCE_DATA_ADDR", default_value = "0.0.0.0:8080")]
    pub data_addr: SocketAddr,
    /// Address of the admin port (configs, switches, load, metrics). Without a token it must
    /// be a loopback address.
    #[arg(long, env = "DYCE_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    pub admin_addr: SocketAddr,
    /// Address of the gRPC port (KServe v2 `inference.GRPCInferenceService`, what
    /// `tritonclient.grpc` speaks); `off` or an empty value serves no gRPC.
    #[arg(long, env = "DYCE_GRPC_ADDR", default_value = "0.0.0.0:8081", value_parser = OptionalAddr::parse)]
    pub grpc_addr: OptionalAddr,
    /// File holding the bearer token the admin port requires.
    #[arg(long, env = "DYCE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Address of the read-only metrics port: `GET /metrics` only, so a scraper needs no
    /// credential that can switch configurations (the admin port keeps `/metrics` too).
    #[arg(long, env = "DYCE_METRICS_ADDR", default_value = "0.0.0.0:9091")]
    pub metrics_addr: SocketAddr,
    /// File holding a bearer token the metrics port requires (default: none). The admin port
    /// accepts it for `GET /metrics` only and refuses it (403) everywhere else.
    #[arg(long, env = "DYCE_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineFlags,
    /// Window of the /v1/load statistics, in seconds.
    #[arg(long, env = "DYCE_LOAD_WINDOW", default_value_t = 2.0)]
    pub load_window: f64,
    /// Largest accepted request body, in bytes; a compressed body (`Content-Encoding: gzip` or
    /// `deflate`) is held to it both as sent and once decompressed.
    #[arg(long, env = "DYCE_MAX_BODY_BYTES", default_value_t = 8 << 20, value_parser = at_least_one)]
    pub max_body_bytes: usize,
    /// Configuration to start on (default: the full model).
    #[arg(long, env = "DYCE_INITIAL_CONFIG")]
    pub initial_config: Option<String>,
    /// Longest an inference request may take, body and queue included, in seconds; beyond it
    /// the answer is 503 (default: no limit).
    #[arg(long, env = "DYCE_REQUEST_TIMEOUT")]
    pub request_timeout: Option<f64>,
    /// Most images decoded at once (`/v1/classify`); more wait for a turn. A decode may take up
    /// to 192 MiB (a 4096×4096 16-bit RGBA image), so this bounds what images add to memory
    /// (default: --threads, else the CPUs available).
    #[arg(long, env = "DYCE_DECODE_CONCURRENCY", value_parser = clap::value_parser!(u64).range(1..))]
    pub decode_concurrency: Option<u64>,
    /// Longest a connection may take to send a whole request head, in seconds, counted from its
    /// opening or from its previous answer: the header timeout and the keep-alive idle timeout
    /// in one (hyper has one timer for both); the connection is closed after it. Both ports.
    #[arg(long, env = "DYCE_HEADER_TIMEOUT", default_value_t = 30.0)]
    pub header_timeout: f64,
    /// Longest a request body may take to arrive, in seconds from the end of its head; after
    /// it the answer is 408 and the connection is closed. Both ports.
    #[arg(long, env = "DYCE_BODY_TIMEOUT", default_value_t = 30.0)]
    pub body_timeout: f64,
    /// Longest shutdown (SIGTERM, Ctrl-C) waits for open connections to finish, in seconds;
    /// connections still open after it are closed. Keep it below the orchestrator's grace period.
    #[arg(long, env = "DYCE_DRAIN_TIMEOUT", default_value_t = 20.0)]
    pub drain_timeout: f64,
    /// On SIGTERM or Ctrl-C, seconds to keep accepting and serving with readiness already
    /// failing, so that load balancers take the pod out before its listeners close; then the
    /// listeners close and in-flight work gets --drain-timeout. 0 closes them at once.
    #[arg(long, env = "DYCE_DRAIN_DELAY", default_value_t = 5.0)]
    pub drain_delay: f64,
}

/// Parses a count that must be at least 1 (a batch, queue, thread or byte limit of 0 would
/// refuse or stall every request).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// An address, or none (`off` or empty): for ports that can be turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl OptionalAddr {
    /// `off` or empty → none; else a socket address.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "off" => Ok(Self(None)),
            a => a.parse().map(|a| Self(Some(a))).map_err(|e| format!("{e}: give HOST:PORT, or off")),
        }
    }

    /// Binds the address, when there is one.
    pub async fn bind(self) -> Result<Option<tokio::net::TcpListener>> {
        match self.0 {
            Some(a) => bind(a).await.map(Some),
            None => Ok(None),
        }
    }
}

/// Batching, admission and threads: the runtime flags `serve`, `up` and `demo` share.
#[derive(Args, Debug, Clone)]
pub struct EngineFlags {
    /// Most images per batch.
    #[arg(long, env = "DYCE_MAX_BATCH", default_value_t = 32, value_parser = at_least_one)]
    pub max_batch: usize,
    /// Most images admitted at once; more get 429 with Retry-After.
    #[arg(long, env = "DYCE_MAX_QUEUE", default_value_t = 256, value_parser = at_least_one)]
    pub max_queue: usize,
    /// Kernel threads (default: the CPUs available to this process, cgroup quota included).
    #[arg(long, env = "DYCE_THREADS", value_parser = at_least_one)]
    pub threads: Option<usize>,
    /// Answer each request as soon as its images exit (`true`, the default), or only when
    /// the whole batch it ran in ends (`false`, for side-by-side comparisons).
    #[arg(long, env = "DYCE_ANSWER_AT_EXIT", default_value_t = true, action = clap::ArgAction::Set)]
    pub answer_at_exit: bool,
    /// Share of answered images also run through the full model when the model thread would
    /// otherwise idle (shadow checks: live accuracy per config, `GET /v1/accuracy`); 0 turns
    /// them off. Sampled images wait in a queue of 64 and are dropped when it is full.
    #[arg(long, env = "DYCE_SHADOW_RATE", default_value_t = 0.02, value_parser = share)]
    pub shadow_rate: f64,
    /// Half-life in seconds of the live accuracy's decayed counts: how fast old samples fade.
    #[arg(long, env = "DYCE_SHADOW_HALF_LIFE", default_value_t = dyce_api::live::DEFAULT_HALF_LIFE, value_parser = positive_seconds)]
    pub shadow_half_life: f64,
    /// Most recently answered images kept for `POST /v1/feedback` (true labels, quoted by the
    /// `answer_id` each answer carries); about 100 bytes each. 0 turns feedback off.
    #[arg(long, env = "DYCE_FEEDBACK_CAPACITY", default_value_t = 100_000)]
    pub feedback_capacity: usize,
}

/// A share in [0, 1].
fn share(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}: give a number in [0, 1]"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not in [0, 1]"))
    }
}

/// Seconds above 0 and at most a day.
fn positive_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|e| format!("{e}: give seconds, e.g. 120"))?;
    if v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not in (0, 86400] seconds"))
    }
}

impl EngineFlags {
    /// Runtime settings with these flags and every other setting at its default.
    pub fn serve_config(&self) -> ServeConfig {
        ServeConfig {
            max_batch: self.max_batch,
            max_queued: self.max_queue,
            threads: self.threads,
            answer_at_exit: self.answer_at_exit,
            shadow_rate: self.shadow_rate,
            shadow_half_life: self.shadow_half_life,
            feedback_capacity: self.feedback_capacity,
            ..ServeConfig::default()
        }
    }
}

/// A token cancelled on SIGTERM or Ctrl-C: what stops every server and loop of the process.
/// Call it inside a tokio runtime.
pub fn cancel_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        cancel.cancel();
    });
    token
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// The bundle at `dir`, or the embedded default model.
pub fn load_bundle(dir: Option<&Path>) -> Result<Bundle> {
    match dir {
        Some(dir) => Bundle::load(dir).with_context(|| format!("loading bundle {}", dir.display())),
        None => Bundle::embedded().context("loading the embedded default model"),
    }
}

/// Reads a bearer token file (trimmed; empty is an error).
pub fn read_token(path: Option<&Path>) -> Result<Option<String>> {
    let Some(p) = path else { return Ok(None) };
    let t =
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?.trim().to_string();
    if t.is_empty() {
        bail!("{} is empty", p.display());
    }
    Ok(Some(t))
}

impl ServeArgs {
    /// The runtime settings these flags describe, checked.
    pub fn config(&self) -> Result<ServeConfig> {
        let token = read_token(self.admin_token_file.as_deref())?;
        if token.is_none() && !self.admin_addr.ip().is_loopback() {
            bail!("the admin port {} is not loopback: give --admin-token-file to expose it", self.admin_addr);
        }
        let metrics_token = read_token(self.metrics_token_file.as_deref())?;
        if metrics_token.is_some() && metrics_token == token {
            bail!("--metrics-token-file holds the admin token: the scraper's token must differ, or it could switch configurations");
        }
        if !(self.drain_delay >= 0.0 && self.drain_delay.is_finite()) {
            bail!("--drain-delay must be 0 or a positive number of seconds");
        }
        if !(self.load_window > 0.0 && self.load_window.is_finite()) {
            bail!("--load-window must be a positive number of seconds");
        }
        if self.request_timeout.is_some_and(|t| !(t > 0.0 && t.is_finite())) {
            bail!("--request-timeout must be a positive number of seconds");
        }
        let seconds = |flag: &str, t: f64| {
            if t > 0.0 && t.is_finite() {
                Ok(Duration::from_secs_f64(t))
            } else {
                Err(anyhow::anyhow!("--{flag} must be a positive number of seconds"))
            }
        };
        Ok(ServeConfig {
            admin_token: token,
            metrics_token,
            drain_delay: Duration::from_secs_f64(self.drain_delay),
            load_window: Duration::from_secs_f64(self.load_window),
            max_body_bytes: self.max_body_bytes,
            initial_config: self.initial_config.clone(),
            request_timeout: self.request_timeout.map(Duration::from_secs_f64),
            panic_on_config: fault_panic_on_config(),
            decode_concurrency: self.decode_concurrency.map(|n| n as usize),
            header_timeout: seconds("header-timeout", self.header_timeout)?,
            body_timeout: seconds("body-timeout", self.body_timeout)?,
            drain_timeout: seconds("drain-timeout", self.drain_timeout)?,
            ..self.engine.serve_config()
        })
    }
}

/// Fault injection for the end-to-end test of a dead model thread: `DYCE_FAULT_PANIC_ON_CONFIG`
/// names a config whose first batch panics the model thread. Read in debug builds only (what
/// the tests run), so a release binary cannot be made to crash by its environment.
fn fault_panic_on_config() -> Option<String> {
    if cfg!(debug_assertions) {
        std::env::var("DYCE_FAULT_PANIC_ON_CONFIG").ok()
    } else {
        None
    }
}

/// Binds an address, naming it on failure.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))
}

/// Runs `dyce serve` until SIGTERM or Ctrl-C.
pub fn run(args: &ServeArgs) -> Result<()> {
    let bundle = load_bundle(args.model.as_deref())?;
    let cfg = args.config()?;
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    tokio.block_on(async move {
        let data = bind(args.data_addr).await?;
        let admin = bind(args.admin_addr).await?;
        let metrics = bind(args.metrics_addr).await?;
        let mut server = Server::new(bundle, &cfg, data, admin)?.with_metrics(metrics);
        if let Some(grpc) = args.grpc_addr.bind().await? {
            server = server.with_grpc(grpc);
        }
        // One JSON line with the bound addresses (gRPC: null when off): tests and scripts bind
        // port 0.
        let (d, a) = server.local_addrs()?;
        let g = server.grpc_addr()?.map(|g| g.to_string());
        let m = server.metrics_addr()?.map(|m| m.to_string());
        println!(
            "{}",
            serde_json::json!({"data": d.to_string(), "admin": a.to_string(), "grpc": g, "metrics": m})
        );
        server.run(cancel_on_signal()).await?;
        Ok(())
    })
}
