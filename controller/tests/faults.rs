//! Fault injection for the controller against fake runtimes (`faults/fake.rs`): a runtime that
//! hangs, answers garbage, sends a body that never ends or restarts must not slow, bloat or
//! silence the control of the others.

#[path = "faults/fake.rs"]
mod fake;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dyce_controller::actuate::{push_one, PushError, PushTarget, Retry, MAX_GENERATION};
use dyce_controller::body::{LARGE_ANSWER_CAP, SMALL_ANSWER_CAP};
use dyce_controller::client::{AdminClient, CallError};
use dyce_controller::prom::{PromConfig, PromSource};
use fake::{start_controller, ticks, Fake, Fault};
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
    start_controller(POLICY, fakes, None).await
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

/// Whether an error is of the expected kind.
type IsKind = fn(&CallError) -> bool;

/// Each broken answer to `/v1/load` is a typed error naming the runtime, in bounded time and
/// memory: a hang times out, garbage is a decode error, a body that never ends stops at the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_answers_are_bounded_errors_naming_the_runtime() {
    let timeout = Duration::from_millis(500);
    let client = AdminClient::new(timeout, None);
    let cases: [(Fault, IsKind, &str); 3] = [
        (Fault::HangLoad, |e| matches!(e, CallError::Timeout { .. }), "no answer within"),
        (Fault::Garbage, |e| matches!(e, CallError::Decode { .. }), "unexpected answer"),
        (
            Fault::Endless,
            |e| matches!(e, CallError::TooLarge { cap: SMALL_ANSWER_CAP, .. }),
            "cap of 1048576 bytes",
        ),
    ];
    for (fault, kind, text) in cases {
        let f = Fake::start(fault).await;
        let start = Instant::now();
        let e = client.load(&f.url).await.expect_err("a broken answer is an error");
        let (took, msg) = (start.elapsed(), e.to_string());
        assert!(kind(&e), "{fault:?}: {e:?}");
        assert!(msg.contains(&f.url) && msg.contains(text), "{fault:?}: {msg}");
        assert!(took < timeout + Duration::from_millis(500), "{fault:?} took {took:?}");
    }
}

/// A refused connection says why, not only reqwest's "error sending request".
#[tokio::test]
async fn a_transport_error_keeps_its_cause() {
    let e = AdminClient::new(Duration::from_millis(500), None).load("http://127.0.0.1:1").await.unwrap_err();
    assert!(matches!(e, CallError::Transport { .. }), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("refused"), "{e}");
}

/// A Prometheus whose answer never ends is an error at the cap, not the controller's memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_prometheus_answer_stops_at_the_cap() {
    use axum::body::{Body, Bytes};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let endless = || async {
        let chunk = Bytes::from(vec![b' '; 64 * 1024]);
        Body::from_stream(futures::stream::repeat_with(move || {
            Ok::<_, std::convert::Infallible>(chunk.clone())
        }))
    };
    let app = axum::Router::new().route("/api/v1/query", axum::routing::get(endless));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let src = PromSource::new(PromConfig {
        url,
        selector: "job=\"x\"".into(),
        window: Duration::from_secs(10),
        timeout: Duration::from_secs(5),
    });
    let e = src.observe(0.99, &Default::default(), "full").await.unwrap_err();
    assert!(e.to_string().contains(&format!("cap of {LARGE_ANSWER_CAP} bytes")), "{e}");
}

/// Generations near the runtimes' ceiling (2^63 - 1): the last one is pushed, past it the push
/// stops before calling with an error that says what to do; nothing wraps.
#[tokio::test]
async fn pushes_stop_at_the_generation_ceiling() {
    let client = AdminClient::new(Duration::from_millis(500), None);
    let cases = [(MAX_GENERATION - 1, Some(MAX_GENERATION)), (MAX_GENERATION, None), (u64::MAX, None)];
    for (reported, pushed) in cases {
        let f = Fake::start(Fault::None).await;
        let target = PushTarget { index: 0, url: f.url.clone(), generation: reported };
        let o = push_one(client.clone(), target, "full".into(), Retry::default()).await;
        match pushed {
            Some(g) => assert_eq!(o.result.unwrap().generation, g),
            None => {
                let e = o.result.unwrap_err();
                assert!(
                    matches!(e, PushError::GenerationCeiling { generation, .. } if generation == reported)
                );
                assert!(e.to_string().contains("restart the runtime"), "{e}");
                assert_eq!(f.puts.load(Ordering::Relaxed), 0, "no call past the ceiling");
            }
        }
    }
}

/// Everything the tests' controllers log at info and above (one subscriber per test binary).
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

fn logs() -> &'static Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let l = Logs::default();
        tracing_subscriber::fmt().with_writer(l.clone()).with_ansi(false).init();
        l
    })
}

/// The log lines that mention `url` and `what`.
fn logged(url: &str, what: &str) -> bool {
    let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).to_string();
    text.lines().any(|l| l.contains(url) && l.contains(what))
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "not within 5 s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A runtime that restarts (back on its default config at generation 0) is seen restarting,
/// re-steered, and both are logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_runtime_is_re_pushed_and_logged() {
    logs();
    let f = Fake::start(Fault::None).await;
    let (_, stop) = controller(std::slice::from_ref(&f)).await;
    eventually("first push", || f.active().id == "full").await;
    f.restart();
    eventually("re-push after the restart", || f.active().id == "full").await;
    stop.cancel();
    assert!(logged(&f.url, "runtime restarted"), "restart not logged");
    assert!(logged(&f.url, "re-pushing the config to a restarted runtime"), "re-push not logged");
}

/// `/readyz` is 503 with a JSON reason while none of the policy's runtimes answers within
/// `staleAfter`, and 200 again once one does; the comeback is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_whether_any_runtime_answers() {
    logs();
    let f = Fake::start(Fault::None).await;
    let (base, stop) = controller(std::slice::from_ref(&f)).await;
    let ready = || async { reqwest::get(format!("{base}/readyz")).await.unwrap() };
    let deadline = Instant::now() + Duration::from_secs(5);
    while ready().await.status() != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.down.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    let body: serde_json::Value = loop {
        let r = ready().await;
        if r.status() == 503 {
            break r.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "still ready with no runtime answering");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("staleAfter") && error.contains(&f.url), "{error}");
    f.down.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while ready().await.status() != 200 {
        assert!(Instant::now() < deadline, "not ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    assert!(logged(&f.url, "runtime answering again"), "comeback not logged");
}
