//! Answers at the exit: the executor tells its sink about every sample exactly once, with the
//! answer it returns; the queue replies to a job whose images exited before the deeper images of
//! its batch are done, and with the switch off, when the batch ends.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use dyce_runtime::engine::queue::{self, BatchObserver, JobOutput, QueueConfig};
use dyce_runtime::engine::{
    default_pool, run_batch, run_batch_answering, AnswerSink, ConfigSwitch, FastBackend, ResolvedConfig,
    SampleResult,
};
use dyce_runtime::model::Bundle;
use proptest::prelude::*;

const PER: usize = 12 * 12;

#[derive(Default)]
struct Recorder(Mutex<Vec<(usize, SampleResult)>>);

impl AnswerSink for Recorder {
    fn answered(&self, index: usize, result: &SampleResult) {
        self.0.lock().unwrap().push((index, result.clone()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    /// Every sample is told once, with the answer the batch returns, sharded or not.
    #[test]
    fn the_sink_hears_every_answer_once(n in 1usize..40, seed in 0u64..1000, th in 0.2f32..0.7) {
        let (b, _) = tiny_bundle(5, vec![entry("c", &[(0, "mlp1", th), (2, "mlp2x16", th)])]);
        let cfg = ResolvedConfig::resolve(&b, b.configs.get("c").unwrap(), 0).unwrap();
        let x = random_input(n, PER, seed);
        let mut be = FastBackend::new(&b.backbone, b.manifest.input.shape, default_pool(None).unwrap()).unwrap();
        let sink = Recorder::default();
        let got = run_batch_answering(&b, &mut be, &cfg, &x, n, &sink).unwrap();
        prop_assert_eq!(&got, &run_batch(&b, &mut be, &cfg, &x, n).unwrap());
        let mut heard = sink.0.into_inner().unwrap();
        heard.sort_by_key(|(i, _)| *i);
        prop_assert_eq!(heard.len(), n);
        for (i, (index, r)) in heard.iter().enumerate() {
            prop_assert_eq!(*index, i);
            prop_assert_eq!(r, &got[i]);
        }
    }
}

struct Quiet;

impl BatchObserver for Quiet {
    fn batch(&self, _: &str, _: usize, _: f64, _: usize) {}
    fn answered(&self, _: &[SampleResult]) {}
}

/// Two images of the tiny model: one that leaves at the exit after block 0 under `threshold`,
/// one that does not, and that threshold.
fn early_and_late(b: &Bundle) -> (Vec<f32>, Vec<f32>, f32) {
    let mut be =
        FastBackend::new(&b.backbone, b.manifest.input.shape, default_pool(Some(1)).unwrap()).unwrap();
    let cfg = ResolvedConfig::resolve(b, b.configs.get("probe").unwrap(), 0).unwrap();
    let x = random_input(64, PER, 9);
    let conf: Vec<f32> = run_batch(b, &mut be, &cfg, &x, 64).unwrap().iter().map(|r| r.confidence).collect();
    let hi = (0..64).max_by(|&i, &j| conf[i].total_cmp(&conf[j])).unwrap();
    let lo = (0..64).min_by(|&i, &j| conf[i].total_cmp(&conf[j])).unwrap();
    assert!(conf[hi] > conf[lo], "random images with equal confidence");
    let img = |i: usize| x[i * PER..(i + 1) * PER].to_vec();
    (img(hi), img(lo), (conf[hi] + conf[lo]) / 2.0)
}

/// The early image's job and the late image's job, answered from one batch (a blocker batch
/// keeps the model thread busy while both are queued); `None` if they landed in two batches.
async fn one_batch(q: &queue::ModelQueue, early: &[f32], late: &[f32]) -> Option<(JobOutput, JobOutput)> {
    let blocker = q.submit(random_input(32, PER, 3), 32).unwrap();
    let (a, z) = (q.submit(early.to_vec(), 1).unwrap(), q.submit(late.to_vec(), 1).unwrap());
    blocker.await.unwrap().unwrap();
    let (a, z) = (a.await.unwrap().unwrap(), z.await.unwrap().unwrap());
    (a.batch_size == 2 && z.batch_size == 2).then_some((a, z))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_exits_is_answered_before_its_batch_ends() {
    let (probe, _) = tiny_bundle(5, vec![entry("probe", &[(0, "mlp1", 0.0)])]);
    let (early, late, th) = early_and_late(&probe);
    for answer_at_exit in [true, false] {
        let (b, _) = tiny_bundle(5, vec![entry("split", &[(0, "mlp1", th)])]);
        let b = Arc::new(b);
        let switch = Arc::new(ConfigSwitch::new(b.clone(), "split").unwrap());
        let be =
            FastBackend::new(&b.backbone, b.manifest.input.shape, default_pool(Some(1)).unwrap()).unwrap();
        let qcfg = QueueConfig { max_batch: 32, max_queued: 256, answer_at_exit, ..Default::default() };
        let (q, _thread) = queue::spawn(b.clone(), switch, be, qcfg, Arc::new(Quiet));
        let mut pair = None;
        for _ in 0..20 {
            pair = one_batch(&q, &early, &late).await;
            if pair.is_some() {
                break;
            }
        }
        let (a, z) = pair.expect("the two jobs shared a batch at least once in 20 tries");
        assert_eq!((a.results[0].exit, z.results[0].exit), (Some(0), None));
        if answer_at_exit {
            assert!(a.batch_seconds < z.batch_seconds, "{} vs {}", a.batch_seconds, z.batch_seconds);
        } else {
            assert_eq!(a.batch_seconds, z.batch_seconds, "answered together at the end of the batch");
        }
        q.close();
    }
}
