//! Replies to the jobs of a running batch. With answers at the exit, a job is answered the
//! moment its last image is answered (the executor tells [`Replies`] sample by sample), while the
//! rest of the batch runs on: an image that exits after the first block no longer waits for the
//! deepest image of its batch. Without, every job is answered when the batch ends.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::executor::{AnswerSink, SampleResult};
use super::shadow::HeadAnswers;
use super::EngineError;

/// What a job gets back.
#[derive(Debug, Clone)]
pub struct JobOutput {
    /// One result per image, in order.
    pub results: Vec<SampleResult>,
    /// Config the batch ran on.
    pub config_id: String,
    /// Its generation.
    pub generation: u64,
    /// Seconds from enqueue to the start of compute.
    pub queue_seconds: f64,
    /// Seconds from the start of the batch's compute to this answer: the whole batch, or less
    /// when the job was answered at its images' exits.
    pub batch_seconds: f64,
    /// Images in that batch.
    pub batch_size: usize,
    /// The id `POST /v1/feedback` quotes for this answer; set by the runtime when feedback is on.
    pub answer_id: Option<String>,
}

/// Observer of the model thread's work, for metrics and load reports.
pub trait BatchObserver: Send + Sync {
    /// A batch of `images` ran on `config_id` in `seconds`; `dropped` jobs were abandoned by
    /// their clients before compute.
    fn batch(&self, config_id: &str, images: usize, seconds: f64, dropped: usize);

    /// A job's images were answered; called just before its reply is sent (so its exits are
    /// counted before the client sees the answer), at its exit or at the end of the batch.
    fn answered(&self, results: &[SampleResult]);

    /// Shadow passes answered these sampled images (off the request path, when idle).
    fn shadow(&self, _answers: &[HeadAnswers]) {}

    /// `n` sampled images were dropped: the shadow queue was full.
    fn shadow_dropped(&self, _n: usize) {}
}

/// A request's images waiting in the queue.
pub(super) struct Job {
    pub input: Vec<f32>,
    pub n: usize,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<Result<JobOutput, EngineError>>,
    /// The submitter's tag (0: none), carried to shadow checks of its images.
    pub tag: u64,
    /// Its place in the queue: released when the job is answered.
    pub permit: OwnedSemaphorePermit,
}

/// One job of the batch being run.
struct Slot {
    results: Vec<Option<SampleResult>>,
    left: usize,
    enqueued: Instant,
    /// `None` once answered.
    reply: Option<(oneshot::Sender<Result<JobOutput, EngineError>>, OwnedSemaphorePermit)>,
}

/// What the batch's jobs are owed, and how to answer them.
pub(super) struct Replies {
    /// Batch index of each job's first image, ascending.
    starts: Vec<usize>,
    slots: Mutex<Vec<Slot>>,
    early: bool,
    observer: Arc<dyn BatchObserver>,
    config_id: String,
    generation: u64,
    start: Instant,
    batch_size: usize,
}

impl Replies {
    /// The jobs of a batch of `batch_size` images on config `config_id` (generation), whose
    /// compute starts at `start`; `early` answers each job as soon as its images are. The
    /// `observer` sees each job's results just before its reply goes out.
    pub fn new(
        jobs: Vec<Job>,
        config: (&str, u64),
        start: Instant,
        early: bool,
        observer: Arc<dyn BatchObserver>,
    ) -> Self {
        let (mut starts, mut slots, mut at) = (Vec::with_capacity(jobs.len()), Vec::new(), 0);
        for j in jobs {
            starts.push(at);
            at += j.n;
            let reply = Some((j.reply, j.permit));
            slots.push(Slot { results: vec![None; j.n], left: j.n, enqueued: j.enqueued, reply });
        }
        Self {
            starts,
            slots: Mutex::new(slots),
            early,
            observer,
            config_id: config.0.to_string(),
            generation: config.1,
            start,
            batch_size: at,
        }
    }

    fn output(&self, slot: &Slot, results: Vec<SampleResult>, batch_seconds: f64) -> JobOutput {
        JobOutput {
            results,
            config_id: self.config_id.clone(),
            generation: self.generation,
            queue_seconds: self.start.duration_since(slot.enqueued).as_secs_f64(),
            batch_seconds,
            batch_size: self.batch_size,
            answer_id: None,
        }
    }

    /// The batch ended: every job not yet answered gets its results, or the batch's error.
    pub fn finish(self, out: &Result<Vec<SampleResult>, EngineError>) {
        let secs = self.start.elapsed().as_secs_f64();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for (slot, &first) in slots.iter_mut().zip(&self.starts) {
            let Some((reply, permit)) = slot.reply.take() else { continue };
            drop(permit);
            let answer = match out {
                Ok(all) => {
                    let mine = &all[first..first + slot.results.len()];
                    self.observer.answered(mine);
                    Ok(self.output(slot, mine.to_vec(), secs))
                }
                Err(e) => Err(EngineError::Tensor(e.to_string())),
            };
            let _ = reply.send(answer);
        }
    }
}

impl AnswerSink for Replies {
    fn answered(&self, index: usize, result: &SampleResult) {
        if !self.early {
            return;
        }
        let job = self.starts.partition_point(|&s| s <= index) - 1;
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = &mut slots[job];
        slot.results[index - self.starts[job]] = Some(result.clone());
        slot.left -= 1;
        if slot.left > 0 {
            return;
        }
        if let Some((reply, permit)) = slot.reply.take() {
            drop(permit);
            let results: Vec<SampleResult> =
                slot.results.iter_mut().map(|r| r.take().expect("all answered")).collect();
            self.observer.answered(&results);
            let secs = self.start.elapsed().as_secs_f64();
            let _ = reply.send(Ok(self.output(slot, results, secs)));
        }
    }
}
