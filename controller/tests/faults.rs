//! Fault injection for the controller against fake runtimes (`faults/fake.rs`): a runtime that
//! hangs, answers garbage, sends a body that never ends or restarts must not slow, bloat or
//! silence the control of the others.

#[path = "faults/fake.rs"]
mod fake;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dyce_control_core::policy::PolicyDocument;
use dyce_controller::local::{run_local, LocalConfig};
use fake::{Fake, Fault};
use tokio_util::sync::CancellationToken;

const POLICY: &str = "apiVersion: dyce.dev/v1alpha1
kind: SloPolicy
metadata: {name: faults}
spec:
  runtimes: [\"http://127.0.0.1:1\"]
  objective:
    latency: {quantile: 0.99, threshold: 50ms}
  accuracyFloor: 0
  control:
    interval: 100ms
    restore: {after: 100ms, step: 100ms}
";

/// A local controller over `fakes`; its endpoints' base URL and the token that stops it.
pub async fn controller(fakes: &[Arc<Fake>]) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let cfg = LocalConfig {
        policy: PolicyDocument::parse(POLICY).unwrap(),
        runtimes: fakes.iter().map(|f| f.url.clone()).collect(),
        admin_token: None,
        dry_run: false,
        prometheus: None,
    };
    let stop = CancellationToken::new();
    tokio::spawn(run_local(cfg, listener, stop.clone()));
    (url, stop)
}

/// `dyce_controller_ticks_total` as the controller exposes it.
async fn ticks(base: &str) -> u64 {
    let text = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("dyce_controller_ticks_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

/// One hung runtime (its `/v1/load`, or its `PUT`) next to two healthy ones: the policy keeps
/// ticking at its interval (100 ms) and the healthy runtimes keep being pushed to every tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_runtime_does_not_slow_the_others() {
    for hung in [Fault::HangLoad, Fault::HangPut] {
        let healthy = [Fake::start(Fault::Sticky).await, Fake::start(Fault::Sticky).await];
        let bad = Fake::start(hung).await;
        let all = [healthy[0].clone(), healthy[1].clone(), bad.clone()];
        let (base, stop) = controller(&all).await;
        // Past the first decision and the restore to "full" (100 ms dwell).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (t0, p0) = (ticks(&base).await, healthy.iter().map(|f| f.puts.load(Ordering::Relaxed)).min());
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let secs = start.elapsed().as_secs_f64();
        let (t1, p1) = (ticks(&base).await, healthy.iter().map(|f| f.puts.load(Ordering::Relaxed)).min());
        stop.cancel();
        let (rate, puts) = ((t1 - t0) as f64 / secs, (p1.unwrap() - p0.unwrap()) as f64 / secs);
        eprintln!("{hung:?}: {rate:.1} ticks/s, {puts:.1} pushes/s to each healthy runtime");
        // 10/s nominal; a tick that waits for the hung runtime (500 ms timeout) runs at < 2/s.
        assert!(rate >= 6.0, "{hung:?}: {rate:.1} ticks/s");
        assert!(puts >= 4.0, "{hung:?}: {puts:.1} pushes/s to a healthy runtime");
    }
}
