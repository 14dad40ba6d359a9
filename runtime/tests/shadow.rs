//! Shadow checks: one pass through the whole backbone with every head tells what each
//! configuration answers, exactly as the executor does; the model thread runs those passes only
//! after the answers went out, and drops samples beyond its queue instead of queueing them.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use common::*;
use dyce_runtime::engine::queue::{self, BatchObserver, QueueConfig};
use dyce_runtime::engine::shadow::{needed_heads, shadow_pass};
use dyce_runtime::engine::{
    default_pool, run_batch, simulate, ConfigSwitch, FastBackend, HeadAnswers, ResolvedConfig, SampleResult,
    ShadowConfig,
};
use proptest::prelude::*;

const PER: usize = 12 * 12;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    /// Every configuration's simulated answer (exit and label) is the executor's.
    #[test]
    fn simulated_answers_are_the_executors(n in 1usize..24, seed in 0u64..1000, th in 0.15f32..0.6) {
        let (b, _) = tiny_bundle(5, vec![
            entry("a", &[(0, "mlp1", th)]),
            entry("b", &[(0, "mlp1", th + 0.2), (2, "mlp2x16", th)]),
            entry("c", &[(2, "mlp2x16", th * 0.5)]),
        ]);
        let configs: Vec<ResolvedConfig> =
            b.configs.configs.iter().map(|e| ResolvedConfig::resolve(&b, e, 0).unwrap()).collect();
        let needed = needed_heads(&b, &configs);
        let x = random_input(n, PER, seed);
        let mut be = FastBackend::new(&b.backbone, b.manifest.input.shape, default_pool(None).unwrap()).unwrap();
        let shadow = shadow_pass(&b, &mut be, &needed, &x, n).unwrap();
        let full = run_batch(&b, &mut be, configs.iter().find(|c| c.id == "full").unwrap(), &x, n).unwrap();
        for cfg in &configs {
            let real = run_batch(&b, &mut be, cfg, &x, n).unwrap();
            for i in 0..n {
                prop_assert_eq!(simulate(cfg, &shadow[i]), (real[i].exit, real[i].label), "config {}", cfg.id);
                prop_assert_eq!(shadow[i].label, full[i].label);
            }
        }
    }
}

#[derive(Default)]
struct Shadows {
    answered: Mutex<usize>,
    shadow: Mutex<Vec<HeadAnswers>>,
    answered_before_first_shadow: Mutex<Option<usize>>,
    dropped: Mutex<usize>,
}

impl BatchObserver for Shadows {
    fn batch(&self, _: &str, _: usize, _: f64, _: usize) {}
    fn answered(&self, r: &[SampleResult]) {
        *self.answered.lock().unwrap() += r.len();
    }
    fn shadow(&self, a: &[HeadAnswers]) {
        let mut first = self.answered_before_first_shadow.lock().unwrap();
        first.get_or_insert(*self.answered.lock().unwrap());
        self.shadow.lock().unwrap().extend_from_slice(a);
    }
    fn shadow_dropped(&self, n: usize) {
        *self.dropped.lock().unwrap() += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_thread_checks_when_idle_and_drops_beyond_its_queue() {
    let (b, _) = tiny_bundle(5, vec![entry("c", &[(0, "mlp1", 0.3)])]);
    let b = Arc::new(b);
    let switch = Arc::new(ConfigSwitch::new(b.clone(), "c").unwrap());
    let be = FastBackend::new(&b.backbone, b.manifest.input.shape, default_pool(Some(1)).unwrap()).unwrap();
    let shadow = ShadowConfig { rate: 1.0, capacity: 8, batch: 4, ..ShadowConfig::default() };
    let armed = shadow.armed.clone();
    let qcfg = QueueConfig { max_batch: 32, max_queued: 256, shadow, ..Default::default() };
    let obs = Arc::new(Shadows::default());
    let (q, handle) = queue::spawn(b.clone(), switch, be, qcfg, obs.clone());
    // Not armed (warm-up): nothing sampled.
    q.infer(random_input(4, PER, 1), 4).await.unwrap();
    armed.store(true, Ordering::Relaxed);
    // One batch of 32 at rate 1 with a queue of 8: 8 kept, 24 dropped; the answer comes first.
    let out = q.infer(random_input(32, PER, 2), 32).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while obs.shadow.lock().unwrap().len() < 8 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(obs.shadow.lock().unwrap().len(), 8);
    assert_eq!(*obs.dropped.lock().unwrap(), 24);
    assert_eq!(*obs.answered_before_first_shadow.lock().unwrap(), Some(36));
    // The first 8 images of the batch were kept; their full labels are the full model's.
    let cfg = ResolvedConfig::resolve(&b, b.configs.get("c").unwrap(), 0).unwrap();
    for (i, a) in obs.shadow.lock().unwrap().iter().enumerate() {
        assert_eq!(simulate(&cfg, a), (out.results[i].exit, out.results[i].label));
    }
    drop(q);
    handle.join().unwrap();
}
