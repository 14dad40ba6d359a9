//! `dyce load`: an open-loop load generator speaking OIP v2, sending labelled Fashion-MNIST
//! test images so that every answer also measures accuracy.
//!
//! Open loop means requests leave when the schedule says, never waiting for earlier answers:
//! a closed-loop client slows down with the server and hides exactly the overload the
//! controller exists to handle. The schedule is computed from the profile alone (`profile`,
//! `schedule`), a scheduler thread starts each request as a task of its own (`driver`,
//! `client`), and a collector task writes the log and the live lines (`record`, `stats`).
//! Described for users in `docs/load.md`.

pub(crate) mod client;
mod drift;
mod driver;
pub(crate) mod images;
pub(crate) mod profile;
pub(crate) mod record;
pub(crate) mod schedule;
pub(crate) mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use clap::Args;
use dyce_data::fashion_mnist as data;
use serde_json::{json, Value};

use client::Encoding;
use images::LabelledImages;
use profile::Profile;
use record::Outcome;
use record::{LogFormat, LogWriter, Record};
use schedule::Arrivals;

/// Arguments of `dyce load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Base URL of the server's data port (OIP v2), http only.
    #[arg(long, env = "DYCE_LOAD_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Model to call (default: the server's only model, as its `GET /v2` or its model
    /// repository index, `POST /v2/repository/index`, lists it; dyce and Triton answer the index).
    #[arg(long, env = "DYCE_LOAD_MODEL")]
    model: Option<String>,
    /// Offered rate in requests/s: `constant:RATE`, `step:LOW,HIGH,AT,UNTIL`, `ramp:FROM,TO`,
    /// `burst:BASE,PEAK,PERIOD,WIDTH` or `trace:FILE` (CSV `second,rate`, piecewise constant).
    #[arg(long, env = "DYCE_LOAD_PROFILE", default_value = "constant:100")]
    profile: String,
    /// Spacing of arrivals at the profile's rate.
    #[arg(long, env = "DYCE_LOAD_ARRIVALS", value_enum, default_value_t = Arrivals::Poisson)]
    arrivals: Arrivals,
    /// Length of the schedule in seconds (answers still outstanding are then awaited).
    #[arg(long, env = "DYCE_LOAD_DURATION", default_value_t = 30.0)]
    duration: f64,
    /// How images travel: `json` (UINT8 numbers in the JSON body) or `binary` (OIP's binary
    /// tensor data extension: a JSON header, then the raw bytes; what tritonclient sends).
    #[arg(long, env = "DYCE_LOAD_ENCODING", value_enum, default_value_t = Encoding::Json)]
    encoding: Encoding,
    /// Images in each request.
    #[arg(long, env = "DYCE_LOAD_IMAGES_PER_REQUEST", default_value_t = 1)]
    images_per_request: usize,
    /// Directory of the Fashion-MNIST IDX files; the 10,000 test images are sent (unless
    /// --images is given).
    #[arg(long, env = "DYCE_DATA", default_value = data::DEFAULT_DIR)]
    data: PathBuf,
    /// An image folder (torchvision `ImageFolder` layout, as `dyce calibrate --images` takes) whose
    /// test split is sent instead of Fashion-MNIST, prepared for --bundle's input.
    #[arg(long, env = "DYCE_LOAD_IMAGES", requires = "bundle")]
    images: Option<PathBuf>,
    /// The bundle the server serves: its manifest's input (shape, resize, crop) prepares --images.
    #[arg(long, env = "DYCE_LOAD_BUNDLE", requires = "images")]
    bundle: Option<PathBuf>,
    /// Train and calibration fractions of an --images folder without split folders, as given to
    /// `dyce calibrate` (the rest, the test split, is sent).
    #[arg(long, env = "DYCE_LOAD_SPLIT", value_delimiter = ',', default_value = "0.6,0.2")]
    split: Vec<f64>,
    /// Seed of that split, as given to `dyce calibrate`.
    #[arg(long, env = "DYCE_LOAD_SPLIT_SEED", default_value_t = 0)]
    split_seed: u64,
    /// Most --images test files to prepare (classes taken in turn); they are decoded before the
    /// run and held in memory.
    #[arg(long, env = "DYCE_LOAD_IMAGE_LIMIT", default_value_t = 2000)]
    image_limit: usize,
    /// Seed of the arrival times and of the order images are sent in.
    #[arg(long, env = "DYCE_LOAD_SEED", default_value_t = 1)]
    seed: u64,
    /// Most requests outstanding at once; a request due beyond this is not sent and counts as
    /// `dropped` (so the schedule never waits).
    #[arg(long, env = "DYCE_LOAD_MAX_IN_FLIGHT", default_value_t = 4096)]
    max_in_flight: usize,
    /// Seconds to wait for a complete answer; later counts as `timeout`.
    #[arg(long, env = "DYCE_LOAD_TIMEOUT", default_value_t = 5.0)]
    timeout: f64,
    /// Per-request log file (one line per scheduled request).
    #[arg(long, env = "DYCE_LOAD_LOG")]
    log: Option<PathBuf>,
    /// Format of --log (default: csv for a `.csv` file, else jsonl). Not `--log-format`, which
    /// is the global flag of the process's own log lines.
    #[arg(long = "log-file-format", env = "DYCE_LOAD_LOG_FORMAT", value_enum)]
    log_file_format: Option<LogFormat>,
    /// Latency SLO in milliseconds: the summary then reports the share of 1-s windows whose
    /// p99 is within it.
    #[arg(long, env = "DYCE_LOAD_SLO_MS")]
    slo_ms: Option<f64>,
    /// Shift the images from this many seconds into the run on (a drift scenario: see --drift).
    #[arg(long, env = "DYCE_LOAD_DRIFT_AT", requires = "drift")]
    drift_at: Option<f64>,
    /// The shift from --drift-at on: KIND[:SHARE], KIND one of contrast (40% contrast), blur
    /// (3×3 box blur twice), noise (Gaussian, σ 40 of 255), invert (negative); SHARE of the
    /// images sent shifted (default 1). The summary reports accuracy before and after.
    #[arg(long, env = "DYCE_LOAD_DRIFT", requires = "drift_at")]
    drift: Option<String>,
    /// Share of answered requests whose true labels are posted to the runtime's
    /// `POST /v1/feedback` right after the answer, as an application that learns them would
    /// (0 = none). The summary counts what was accepted.
    #[arg(long, env = "DYCE_LOAD_FEEDBACK", default_value_t = 0.0)]
    feedback: f64,
}

/// A checked run description (also built directly by `dyce demo`, which runs the generator
/// in-process).
#[derive(Debug, Clone)]
pub(crate) struct LoadConfig {
    pub url: String,
    pub model: Option<String>,
    /// The profile as given, for the summary.
    pub profile_text: String,
    pub profile: Profile,
    pub arrivals: Arrivals,
    pub duration: f64,
    pub images_per_request: usize,
    pub encoding: Encoding,
    pub seed: u64,
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub slo_ms: Option<f64>,
    pub log: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    /// A drift scenario: the images are followed by their shifted copies in the image set.
    pub drift: Option<drift::Drift>,
    /// Share of answered requests given feedback (true labels).
    pub feedback: f64,
}

/// What one run produced: every request's record in schedule order and the summary `dyce load`
/// prints.
pub(crate) struct LoadRun {
    /// Every scheduled request, in schedule order.
    pub records: Vec<Record>,
    /// The summary object (see docs/load.md).
    pub summary: Value,
    /// The instant schedule time 0 refers to, so callers can place their own observations
    /// (controller decisions, config polls) on the run's time axis.
    pub started: Instant,
}

impl LoadArgs {
    fn config(&self) -> Result<LoadConfig> {
        let url = self.url.trim_end_matches('/').to_string();
        if url.starts_with("https://") {
            bail!("--url {url}: https is not supported (dyce's runtime serves plain http)");
        }
        ensure!(url.starts_with("http://"), "--url {url:?} must start with http://");
        ensure!(self.duration.is_finite() && self.duration > 0.0, "--duration must be a positive number");
        ensure!(self.timeout.is_finite() && self.timeout > 0.0, "--timeout must be a positive number");
        ensure!(self.images_per_request >= 1, "--images-per-request must be at least 1");
        ensure!(self.max_in_flight >= 1, "--max-in-flight must be at least 1");
        if let Some(slo) = self.slo_ms {
            ensure!(slo.is_finite() && slo > 0.0, "--slo-ms must be a positive number");
        }
        ensure!((0.0..=1.0).contains(&self.feedback), "--feedback must be a share in [0, 1]");
        Ok(LoadConfig {
            url,
            model: self.model.clone(),
            profile_text: self.profile.clone(),
            profile: Profile::parse(&self.profile)?,
            arrivals: self.arrivals,
            duration: self.duration,
            images_per_request: self.images_per_request,
            encoding: self.encoding,
            seed: self.seed,
            max_in_flight: self.max_in_flight,
            timeout: Duration::from_secs_f64(self.timeout),
            slo_ms: self.slo_ms,
            log: self.log.clone(),
            log_format: self.log_file_format,
            drift: match (&self.drift, self.drift_at) {
                (Some(d), Some(at)) => Some(drift::Drift::parse(d, at)?),
                _ => None,
            },
            feedback: self.feedback,
        })
    }
}

impl LoadArgs {
    /// The labelled images to send: an --images folder's test split prepared for --bundle, or
    /// Fashion-MNIST's test split.
    fn images(&self) -> Result<LabelledImages> {
        let (Some(root), Some(bundle)) = (&self.images, &self.bundle) else {
            let set = data::load(&self.data)?.test;
            ensure!(!set.is_empty(), "{}: the test split is empty", self.data.display());
            return Ok(set.into());
        };
        let [train, calibration] = self.split[..] else {
            bail!("--split takes two fractions: train,calibration")
        };
        ensure!(self.image_limit >= 1, "--image-limit must be at least 1");
        let manifest = dyce_runtime::model::Manifest::read(bundle)?;
        let src = images::FolderSource {
            root,
            fractions: dyce_data::SplitFractions { train, calibration },
            seed: self.split_seed,
            limit: self.image_limit,
        };
        let set = images::from_folder(&src, &manifest.input.preprocess(images::LIMITS))?;
        tracing::info!(images = set.len(), shape = ?set.shape, folder = %root.display(), "test images prepared");
        Ok(set)
    }
}

/// Runs `dyce load`: prints live lines on stderr and the summary JSON on stdout.
pub fn run(args: &LoadArgs) -> Result<()> {
    let cfg = args.config()?;
    // Local inputs first: a typo in --data, --images or --log fails before the server is contacted.
    let mut images = args.images()?;
    if let Some(d) = &cfg.drift {
        images = drift::with_shifted(&images, d.kind);
    }
    let images = Arc::new(images);
    let log = match &cfg.log {
        Some(path) => Some(LogWriter::create(path, cfg.log_format)?),
        None => None,
    };
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let run = tokio.block_on(run_load(&cfg, images, log))?;
    println!("{}", run.summary);
    Ok(())
}

/// One run of the generator on the current tokio runtime: pre-flight check, the schedule, and
/// the summary. Live lines go to stderr as the run goes; `log` gets every record.
pub(crate) async fn run_load(
    cfg: &LoadConfig,
    images: Arc<LabelledImages>,
    log: Option<LogWriter>,
) -> Result<LoadRun> {
    let expected = cfg.profile.curve(cfg.duration).total();
    let http = client::http(cfg.timeout)?;
    let (url, model) =
        client::preflight(&http, &cfg.url, cfg.model.as_deref(), images.shape, cfg.timeout).await?;
    tracing::info!(%url, profile = cfg.profile_text, expected_requests = expected.round(), "load starts");
    let (records, started) = driver::drive(cfg, http, url, images, log).await?;
    let wall_s = started.elapsed().as_secs_f64();
    let mut summary = stats::totals(&records, cfg.duration);
    let lag_p99 = summary["send_lag_ms"]["p99"].as_f64().unwrap_or(0.0);
    if summary["generator_bottleneck"] == true {
        tracing::warn!(
            lag_p99_ms = lag_p99,
            "send lag p99 over 10 ms: the generator, not only the server, shaped this run"
        );
    }
    let run = json!({
        "url": cfg.url,
        "model": model,
        "profile": cfg.profile_text,
        "arrivals": format!("{:?}", cfg.arrivals).to_lowercase(),
        "duration_s": cfg.duration,
        "wall_s": wall_s,
        "images_per_request": cfg.images_per_request,
        "encoding": format!("{:?}", cfg.encoding).to_lowercase(),
        "seed": cfg.seed,
        "expected_requests": expected,
    });
    for (k, v) in run.as_object().expect("an object") {
        summary[k] = v.clone();
    }
    if let Some(d) = &cfg.drift {
        summary["drift"] = drift::phases(&records, d);
    }
    if cfg.feedback > 0.0 {
        let posted: Vec<Option<u16>> =
            records.iter().filter(|r| r.answer_id.is_some()).map(|r| r.feedback_status).collect();
        let sent = posted.iter().filter(|s| s.is_some()).count();
        let accepted = posted.iter().filter(|&&s| s == Some(200)).count();
        let without_id = records.iter().filter(|r| r.outcome == Outcome::Ok && r.answer_id.is_none()).count();
        summary["feedback"] = json!({"share": cfg.feedback, "sent": sent, "accepted": accepted, "refused": sent - accepted, "answers_without_id": without_id});
        if without_id > 0 {
            tracing::warn!(
                without_id,
                "answers without an answer_id: the runtime's feedback is off (--feedback-capacity 0)"
            );
        }
    }
    if let Some(slo_ms) = cfg.slo_ms {
        let (ok, windows) = stats::attainment(&records, slo_ms / 1e3);
        summary["slo_ms"] = json!(slo_ms);
        summary["slo_windows"] = json!(windows);
        summary["slo_attainment"] = json!((windows > 0).then(|| ok as f64 / windows as f64));
    }
    Ok(LoadRun { records, summary, started })
}
