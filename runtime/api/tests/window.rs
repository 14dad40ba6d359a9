//! The load window under arbitrary event streams, tiny windows and gaps around the window's
//! length included: issue 19's zombie pod started with a window of 90 ms and two requests 93 ms
//! apart, which made the window's old bucketed form panic on the model thread (a bucket of
//! 100 ms could be trimmed right after it was chosen). Nothing here may panic, and what a
//! snapshot reports must follow from the events.

use dyce_api::LoadWindow;
use proptest::prelude::*;

/// One event: which kind, seconds after the previous one, images, and a latency or compute.
#[derive(Debug, Clone)]
struct Event {
    kind: u8,
    gap: f64,
    n: usize,
    seconds: f64,
}

fn event() -> impl Strategy<Value = Event> {
    // Gaps cluster around 90–100 ms (and go from 0 to 1 s) so that they straddle tiny windows.
    let gap = prop_oneof![0.0..1.0f64, 0.085..0.105f64, Just(0.0), Just(0.093)];
    (0u8..5, gap, 0usize..40, 0.0..2.0f64).prop_map(|(kind, gap, n, seconds)| Event { kind, gap, n, seconds })
}

/// Feeds `events` into a window of `window` seconds, checking every snapshot on the way.
fn feed(window: f64, max_batch: usize, events: &[Event]) {
    let mut w = LoadWindow::new(window, max_batch, 0.0);
    let mut now = 0.0;
    let mut admitted: Vec<(f64, u64)> = Vec::new();
    let mut total = 0u64;
    for e in events {
        now += e.gap;
        match e.kind {
            0 => {
                w.arrived(now, e.n);
                admitted.push((now, e.n as u64));
                total += e.n as u64;
            }
            1 => w.shed(now, e.n),
            2 => w.completed(now, e.n, e.seconds),
            3 => w.batch(now, "c", e.n, e.seconds),
            _ => {}
        }
        let s = w.snapshot(now);
        let live: u64 = admitted.iter().filter(|(t, _)| now - t <= window).map(|e| e.1).sum();
        approx_eq(s.arrivals * s.seconds, live as f64);
        assert_eq!(s.totals.arrivals, total);
        for v in [s.arrivals, s.shed, s.completions, s.mean_batch, s.seconds] {
            assert!(v.is_finite() && v >= 0.0, "{s:?}");
        }
        if let Some(q) = s.latency {
            assert!(q.p50 <= q.p95 && q.p95 <= q.p99, "{q:?}");
        }
    }
}

fn approx_eq(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-6 * b.max(1.0), "{a} != {b}");
}

#[test]
fn a_90_ms_window_and_requests_93_ms_apart() {
    // The reproduction of issue 19: every kind of event the runtime records for two requests.
    let mut w = LoadWindow::new(0.09, 32, 0.0);
    for t in [1.0, 1.093, 1.186, 1.2] {
        w.arrived(t, 1);
        w.batch(t, "full", 1, 0.001);
        w.completed(t, 1, 0.002);
        let s = w.snapshot(t);
        approx_eq(s.arrivals * s.seconds, if t == 1.2 { 2.0 } else { 1.0 });
    }
    assert_eq!(w.snapshot(5.0).arrivals, 0.0);
    assert_eq!(w.snapshot(5.0).totals.arrivals, 4);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tiny_windows_never_panic_and_count_what_they_hold(
        window in prop_oneof![0.001..0.2f64, Just(0.09), Just(0.1)],
        max_batch in 0usize..40,
        events in proptest::collection::vec(event(), 0..200),
    ) {
        feed(window, max_batch, &events);
    }
}
