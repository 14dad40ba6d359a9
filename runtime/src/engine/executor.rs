//! Runs a batch stage by stage, answers samples at the first exit that is confident enough,
//! and compacts the batch so that later blocks only see the samples still running.

use std::time::{Duration, Instant};

use super::active::ResolvedConfig;
use super::backend::Backend;
use super::EngineError;
use crate::model::linear::{argmax, softmax_rows};
use crate::model::Bundle;

/// The answer for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleResult {
    /// Class probabilities.
    pub probs: Vec<f32>,
    /// Predicted class.
    pub label: usize,
    /// Probability of the predicted class.
    pub confidence: f32,
    /// Position of the exit that answered; `None` for the final head.
    pub exit: Option<usize>,
    /// MACs spent on this sample (backbone up to the exit plus every enabled exit passed).
    pub macs: u64,
}

/// A stage of a batch, as a [`Profiler`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Backbone work: the stem with block 0, a residual block, or the final pool and `fc`.
    Backbone,
    /// An enabled exit: pooling, the head (index into `Bundle::exits`), the confidence test and
    /// the compaction of the batch. All of it is what enabling the exit costs.
    Exit(usize),
}

/// Receives the wall time, rows and MACs of every stage of a batch (`dyce bench --profile`).
pub trait Profiler {
    /// `false` compiles the clock reads out of the serving path.
    const ON: bool;
    /// One stage ran on `rows` images, took `took` and did `macs` multiply-accumulates.
    fn stage(&mut self, stage: Stage, rows: usize, macs: u64, took: Duration);
}

/// Told about each sample as soon as it is answered (at its exit or at the final head), while
/// the rest of its batch may still be running: what lets the queue reply to a request whose
/// images have all exited without waiting for the deepest image of the batch.
pub trait AnswerSink: Sync {
    /// Sample `index` of the batch is answered with `result`. Called once per sample, from the
    /// thread running its shard.
    fn answered(&self, index: usize, result: &SampleResult);
}

/// No one to tell: answers are only returned at the end.
struct NoSink;

impl AnswerSink for NoSink {
    fn answered(&self, _: usize, _: &SampleResult) {}
}

/// The profiler of the serving path: no clock reads.
struct Off;

impl Profiler for Off {
    const ON: bool = false;
    fn stage(&mut self, _: Stage, _: usize, _: u64, _: Duration) {}
}

/// Runs `n` images whole (never sharded) on the calling thread's backend and reports every
/// stage's time to `prof`. Answers are those of [`run_batch`].
pub fn run_profiled<B: Backend, P: Profiler>(
    bundle: &Bundle,
    backend: &mut B,
    cfg: &ResolvedConfig,
    input: &[f32],
    n: usize,
    prof: &mut P,
) -> Result<Vec<SampleResult>, EngineError> {
    check_input(bundle, input, n)?;
    run_whole(bundle, backend, cfg, Rows { input, n, first: 0 }, prof, &NoSink)
}

/// Runs `n` normalised NCHW images under `cfg`; results are in input order.
///
/// Small batches may run as shards on the backend's threads (each shard through the whole
/// executor, exits and compaction included): samples are independent, so the answers are the
/// same as for the whole batch.
pub fn run_batch<B: Backend>(
    bundle: &Bundle,
    backend: &mut B,
    cfg: &ResolvedConfig,
    input: &[f32],
    n: usize,
) -> Result<Vec<SampleResult>, EngineError> {
    run_batch_answering(bundle, backend, cfg, input, n, &NoSink)
}

/// [`run_batch`], telling `sink` about every sample the moment it is answered.
pub fn run_batch_answering<B: Backend>(
    bundle: &Bundle,
    backend: &mut B,
    cfg: &ResolvedConfig,
    input: &[f32],
    n: usize,
    sink: &dyn AnswerSink,
) -> Result<Vec<SampleResult>, EngineError> {
    let per = check_input(bundle, input, n)?;
    let run = |b: &mut B, r: std::ops::Range<usize>| {
        let rows = Rows { input: &input[r.start * per..r.end * per], n: r.len(), first: r.start };
        run_whole(bundle, b, cfg, rows, &mut Off, sink)
    };
    let mut out = Vec::with_capacity(n);
    for part in backend.sharded_or_whole(n, &run) {
        out.extend(part?);
    }
    Ok(out)
}

/// Values per image, once `input` is checked to hold exactly `n` images.
fn check_input(bundle: &Bundle, input: &[f32], n: usize) -> Result<usize, EngineError> {
    let per: usize = bundle.manifest.input.shape.iter().product();
    if input.len() != n * per {
        return Err(EngineError::InputSize { got: input.len(), expected: n * per, n, per });
    }
    Ok(per)
}

/// A contiguous part of a batch: `n` images starting at batch index `first`.
struct Rows<'a> {
    input: &'a [f32],
    n: usize,
    first: usize,
}

fn run_whole<B: Backend, P: Profiler>(
    bundle: &Bundle,
    backend: &mut B,
    cfg: &ResolvedConfig,
    rows_in: Rows<'_>,
    prof: &mut P,
    sink: &dyn AnswerSink,
) -> Result<Vec<SampleResult>, EngineError> {
    let Rows { input, n, first } = rows_in;
    let mut clock = P::ON.then(Instant::now);
    let mut lap = |prof: &mut P, stage: Stage, rows: usize, macs: u64| {
        if let Some(c) = clock.as_mut() {
            let now = Instant::now();
            prof.stage(stage, rows, macs, now - *c);
            *c = now;
        }
    };
    let classes = bundle.backbone.num_classes();
    let mut results: Vec<Option<SampleResult>> = vec![None; n];
    if n == 0 {
        return Ok(vec![]);
    }
    // `alive[j]` is the original index of batch row j.
    let mut alive: Vec<usize> = (0..n).collect();
    let mut exit_macs = 0u64;
    let mut x = backend.stem(input, n)?;
    for p in 0..bundle.backbone.positions() {
        x = backend.block(p, x)?;
        let block_macs =
            bundle.macs.cumulative[p] - p.checked_sub(1).map_or(0, |q| bundle.macs.cumulative[q]);
        lap(prof, Stage::Backbone, alive.len(), block_macs * alive.len() as u64);
        let Some(slot) = cfg.exits.get(p).copied().flatten() else { continue };
        let head = &bundle.exits[slot.head];
        exit_macs += bundle.manifest.exits[slot.head].macs;
        let rows = alive.len();
        let pooled = backend.pool(&x)?;
        // Heads are a few small matrix products: on the calling thread, no hand-off to a pool.
        let mut probs = head.forward(&pooled, rows);
        softmax_rows(&mut probs, classes);
        let mut keep = Vec::with_capacity(rows);
        for (j, row) in probs.chunks_exact(classes).enumerate() {
            let (label, confidence) = argmax(row);
            if confidence >= slot.threshold {
                let macs = bundle.macs.cumulative[p] + exit_macs;
                let r = SampleResult { probs: row.to_vec(), label, confidence, exit: Some(p), macs };
                sink.answered(first + alive[j], &r);
                results[alive[j]] = Some(r);
            } else {
                keep.push(j);
            }
        }
        let done = keep.is_empty();
        if done {
            alive.clear();
        } else if keep.len() < rows {
            x = backend.select(x, &keep)?;
            alive = keep.iter().map(|&j| alive[j]).collect();
        }
        lap(prof, Stage::Exit(slot.head), rows, bundle.manifest.exits[slot.head].macs * rows as u64);
        if done {
            break;
        }
    }
    if alive.is_empty() {
        backend.recycle(x);
    } else {
        let pooled = backend.pool(&x)?;
        backend.recycle(x);
        let mut probs = bundle.backbone.head(&pooled, alive.len());
        softmax_rows(&mut probs, classes);
        for (j, row) in probs.chunks_exact(classes).enumerate() {
            let (label, confidence) = argmax(row);
            let macs = bundle.macs.total + exit_macs;
            let r = SampleResult { probs: row.to_vec(), label, confidence, exit: None, macs };
            sink.answered(first + alive[j], &r);
            results[alive[j]] = Some(r);
        }
        lap(prof, Stage::Backbone, alive.len(), bundle.macs.head * alive.len() as u64);
    }
    Ok(results.into_iter().map(|r| r.expect("every sample is answered exactly once")).collect())
}
