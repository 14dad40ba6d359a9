//! Shadow checks: a sampled share of answered images runs again, off the request path, through
//! the whole backbone with every exit head any configuration uses. From one such pass the answer
//! of *every* configuration of the table follows (the first enabled exit whose confidence reaches
//! its threshold, else the final head), so each configuration's agreement with the full model is
//! measured on the traffic now, served or not: a configuration kept out for a low bound can
//! come back when the traffic recovers.
//!
//! Sampling is uniform over answered images (not only those that left early): a configuration
//! other than the served one may exit an image the served one ran to the end. The sampled
//! inputs wait in a small bounded queue that the model thread works off only when no request is
//! waiting; when it is full, samples are dropped and counted, never queued without bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::active::ResolvedConfig;
use super::backend::Backend;
use super::EngineError;
use crate::model::linear::{argmax, softmax_rows};
use crate::model::Bundle;

/// Most sampled images waiting for their shadow pass: a few batches' worth, so bursts of
/// sampling while busy are absorbed, while memory stays a few hundred KiB.
pub const DEFAULT_CAPACITY: usize = 64;

/// Most images in one shadow pass. A real request arriving during a pass waits for it, so the
/// pass is kept short: 4 images of the small ResNets take well under a millisecond.
pub const DEFAULT_BATCH: usize = 4;

/// Settings of shadow checks.
#[derive(Debug, Clone, Default)]
pub struct ShadowConfig {
    /// Share of answered images sampled, in [0, 1]; 0 turns shadow checks off.
    pub rate: f64,
    /// Most sampled images waiting (more are dropped).
    pub capacity: usize,
    /// Most images per shadow pass.
    pub batch: usize,
    /// Set once warm-up is over: warm-up images are zeros, not traffic.
    pub armed: Arc<AtomicBool>,
}

impl ShadowConfig {
    /// Shadow checks at `rate` with the default queue and pass sizes, armed later.
    pub fn with_rate(rate: f64) -> Self {
        Self { rate, capacity: DEFAULT_CAPACITY, batch: DEFAULT_BATCH, armed: Arc::default() }
    }

    /// Whether shadow checks are on at all.
    pub fn enabled(&self) -> bool {
        self.rate > 0.0 && self.capacity > 0
    }
}

/// One image's shadow pass: the top-1 of every computed head and of the final head.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadAnswers {
    /// `(label, confidence)` per index of `Bundle::exits`; `None` for heads not computed.
    pub heads: Vec<Option<(usize, f32)>>,
    /// The full model's label.
    pub label: usize,
    /// The answered image this pass checked: its job's tag (`ModelQueue::submit_tagged`) and
    /// its index in the job; `None` for untagged jobs. Links the pass to user feedback.
    pub source: Option<(u64, u32)>,
}

/// What `cfg` answers for an image, from its shadow pass: `(exit position, label)`, position
/// `None` for the final head. The same rule as the executor's: the first enabled exit whose
/// confidence reaches its threshold.
pub fn simulate(cfg: &ResolvedConfig, a: &HeadAnswers) -> (Option<usize>, usize) {
    for (p, slot) in cfg.exits.iter().enumerate() {
        let Some(slot) = slot else { continue };
        if let Some(Some((label, confidence))) = a.heads.get(slot.head) {
            if *confidence >= slot.threshold {
                return (Some(p), *label);
            }
        }
    }
    (None, a.label)
}

/// Runs `n` normalised images through the whole backbone, computing the heads marked in
/// `needed` (indexed like `Bundle::exits`) at their positions and the final head. Runs like a
/// batch of the executor (shards, or whole inside the team's session), so the numbers are the
/// serving path's.
pub fn shadow_pass<B: Backend>(
    bundle: &Bundle,
    backend: &mut B,
    needed: &[bool],
    input: &[f32],
    n: usize,
) -> Result<Vec<HeadAnswers>, EngineError> {
    if n == 0 {
        return Ok(vec![]);
    }
    let per = input.len() / n;
    let run = |b: &mut B, r: std::ops::Range<usize>| {
        shadow_rows(bundle, b, needed, &input[r.start * per..r.end * per], r.len())
    };
    let mut out = Vec::with_capacity(n);
    for part in backend.sharded_or_whole(n, &run) {
        out.extend(part?);
    }
    Ok(out)
}

fn shadow_rows<B: Backend>(
    bundle: &Bundle,
    backend: &mut B,
    needed: &[bool],
    input: &[f32],
    n: usize,
) -> Result<Vec<HeadAnswers>, EngineError> {
    let classes = bundle.backbone.num_classes();
    let mut out: Vec<HeadAnswers> = (0..n)
        .map(|_| HeadAnswers { heads: vec![None; bundle.exits.len()], label: 0, source: None })
        .collect();
    if n == 0 {
        return Ok(out);
    }
    let mut x = backend.stem(input, n)?;
    for p in 0..bundle.backbone.positions() {
        x = backend.block(p, x)?;
        let heads: Vec<usize> = (0..bundle.exits.len())
            .filter(|&h| bundle.exits[h].position == p && needed.get(h).copied().unwrap_or(false))
            .collect();
        if heads.is_empty() {
            continue;
        }
        let pooled = backend.pool(&x)?;
        for h in heads {
            let mut probs = bundle.exits[h].forward(&pooled, n);
            softmax_rows(&mut probs, classes);
            for (i, row) in probs.chunks_exact(classes).enumerate() {
                out[i].heads[h] = Some(argmax(row));
            }
        }
    }
    let pooled = backend.pool(&x)?;
    backend.recycle(x);
    let mut probs = bundle.backbone.head(&pooled, n);
    softmax_rows(&mut probs, classes);
    for (i, row) in probs.chunks_exact(classes).enumerate() {
        out[i].label = argmax(row).0;
    }
    Ok(out)
}

/// Where a sampled image came from: its job's tag and its index in the job.
pub type Source = Option<(u64, u32)>;

/// The model thread's side: samples answered images and holds them until it is idle.
pub(super) struct Sampler {
    cfg: ShadowConfig,
    rng: u64,
    waiting: VecDeque<(Vec<f32>, Source)>,
}

impl Sampler {
    pub fn new(cfg: ShadowConfig) -> Self {
        Self { cfg, rng: 0x9E37_79B9_7F4A_7C15, waiting: VecDeque::new() }
    }

    /// A uniform draw in [0, 1) (xorshift64*: a few instructions, no lock, no syscall).
    fn draw(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether a batch starting now may be sampled: on, and warm-up over. Read when the batch
    /// starts, not after its answers went out: by then the last warm-up batch's caller may
    /// already have armed the sampler.
    pub fn armed(&self) -> bool {
        self.cfg.enabled() && self.cfg.armed.load(Ordering::Relaxed)
    }

    /// Samples among the `n` images of an answered batch that started [`Sampler::armed`];
    /// `source(i)` says which answered image row `i` is. Returns how many were dropped for a
    /// full queue. One draw per image.
    pub fn offer(&mut self, input: &[f32], n: usize, source: impl Fn(usize) -> Source) -> usize {
        if !self.cfg.enabled() || n == 0 {
            return 0;
        }
        let per = input.len() / n;
        let mut dropped = 0;
        for i in 0..n {
            if self.draw() >= self.cfg.rate {
                continue;
            }
            if self.waiting.len() >= self.cfg.capacity {
                dropped += 1;
            } else {
                self.waiting.push_back((input[i * per..(i + 1) * per].to_vec(), source(i)));
            }
        }
        dropped
    }

    /// Whether sampled images wait for a pass.
    pub fn pending(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Up to one pass's worth of waiting images, concatenated, and where each came from.
    pub fn take(&mut self) -> (Vec<f32>, Vec<Source>) {
        let n = self.waiting.len().min(self.cfg.batch.max(1));
        let mut input = Vec::new();
        let mut sources = Vec::with_capacity(n);
        for (x, source) in self.waiting.drain(..n) {
            input.extend_from_slice(&x);
            sources.push(source);
        }
        (input, sources)
    }
}

/// Which heads some configuration of `configs` uses: the shadow pass computes only those.
pub fn needed_heads(bundle: &Bundle, configs: &[ResolvedConfig]) -> Vec<bool> {
    let mut needed = vec![false; bundle.exits.len()];
    for slot in configs.iter().flat_map(|c| c.exits.iter().flatten()) {
        needed[slot.head] = true;
    }
    needed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_at_the_rate_and_drops_beyond_capacity() {
        let cfg =
            ShadowConfig { rate: 0.25, capacity: 10_000, batch: 4, armed: Arc::new(AtomicBool::new(true)) };
        let mut s = Sampler::new(cfg);
        assert!(s.armed());
        let input = vec![0.5f32; 2 * 4000];
        assert_eq!(s.offer(&input, 4000, |i| Some((7, i as u32))), 0);
        let taken = s.waiting.len();
        assert!((800..1200).contains(&taken), "{taken}");
        let sources = s.take().1;
        assert_eq!(sources.len(), 4);
        assert!(sources.iter().all(|s| s.is_some_and(|(tag, _)| tag == 7)));
        let full = ShadowConfig { rate: 1.0, capacity: 3, batch: 2, armed: Arc::new(AtomicBool::new(true)) };
        let mut s = Sampler::new(full);
        assert_eq!(s.offer(&[1.0, 2.0, 3.0, 4.0, 5.0], 5, |i| Some((1, i as u32))), 2);
        let (x, sources) = s.take();
        assert_eq!((x, sources), (vec![1.0, 2.0], vec![Some((1, 0)), Some((1, 1))]));
    }

    #[test]
    fn off_or_unarmed_samples_nothing() {
        assert!(!Sampler::new(ShadowConfig::with_rate(1.0)).armed());
        let mut s =
            Sampler::new(ShadowConfig { armed: Arc::new(AtomicBool::new(true)), ..Default::default() });
        assert_eq!(s.offer(&[1.0; 8], 8, |_| None), 0);
        assert!(!s.pending());
    }
}
