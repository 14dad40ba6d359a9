//! Graceful drain (issue 23): under steady load, SIGTERM to `dyce serve` fails readiness at
//! once, the ports keep serving for `--drain-delay`, in-flight requests are answered, and the
//! process exits 0 within the drain delay plus the drain timeout. No request sent before
//! readiness failed may fail, and every request that got an HTTP answer got a 200.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// One client request: when it was sent and its status (None: no HTTP answer, e.g. refused).
type Sent = (Instant, Option<u16>);

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

#[test]
fn sigterm_drains_under_load_without_failing_a_request() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let (delay, timeout) = (1.5, 5.0);
    let mut s = serve(
        dir.path(),
        &["--drain-delay", &delay.to_string(), "--drain-timeout", &timeout.to_string(), "--max-batch", "4"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let body = infer_body(1, 5).to_string();
    let url = format!("{}/v2/models/tiny/infer", s.data);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, sent, body, url) = (stop.clone(), sent.clone(), body.clone(), url.clone());
            std::thread::spawn(move || {
                let agent = agent();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let status = agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(body.as_bytes())
                        .ok()
                        .map(|r| r.status().as_u16());
                    sent.lock().unwrap().push((at, status));
                    if status.is_none() {
                        // The listener has closed: the same client would go to another pod.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    // Readiness probes, as a kubelet's: the send time of the first one that is not a 200.
    let ready_url = format!("{}/v2/health/ready", s.data);
    let unready = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let agent = agent();
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let status = agent.get(&ready_url).call().ok().map(|r| r.status().as_u16());
                if status != Some(200) {
                    return Some((at, status));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        }
    });
    std::thread::sleep(Duration::from_millis(800));
    let term = Instant::now();
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = term + Duration::from_secs_f64(delay + timeout + 10.0);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "no exit within the drain delay, the drain timeout and 10 s");
        std::thread::sleep(Duration::from_millis(10));
    };
    let exited = term.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (unready_at, probe) = unready.join().unwrap().expect("readiness failed before the exit");
    assert!(status.success(), "exit status {status}");

    let unready_after = unready_at.saturating_duration_since(term).as_secs_f64();
    // At once: one probe interval, with room for a loaded machine.
    assert!(unready_after < 1.0, "readiness failed {unready_after:.3} s after SIGTERM");
    assert_eq!(probe, Some(503), "readiness answers 503 while the port still accepts");
    // The drain delay (the ports kept serving) and at most the drain timeout after it, plus
    // the longest batch (milliseconds here) and a loaded machine's slack.
    assert!(exited >= delay * 0.9, "exited {exited:.2} s after SIGTERM, before the drain delay");
    assert!(exited < delay + timeout + 2.0, "exited {exited:.2} s after SIGTERM");

    let sent = sent.lock().unwrap();
    let before: Vec<_> = sent.iter().filter(|(at, _)| *at < unready_at).collect();
    let during = sent
        .iter()
        .filter(|(at, st)| {
            *at >= unready_at && *at < term + Duration::from_secs_f64(delay * 0.8) && *st == Some(200)
        })
        .count();
    assert!(before.len() >= 20, "{} requests before SIGTERM: no steady load", before.len());
    let failed_before = before.iter().filter(|(_, st)| *st != Some(200)).count();
    assert_eq!(
        failed_before,
        0,
        "{failed_before} of {} requests sent before readiness failed failed",
        before.len()
    );
    assert!(during > 0, "no request answered during the drain delay");
    let answered_not_ok: Vec<_> = sent.iter().filter_map(|(_, st)| st.filter(|&c| c != 200)).collect();
    assert!(answered_not_ok.is_empty(), "answers other than 200: {answered_not_ok:?}");
    eprintln!(
        "drain: {} requests ({} before readiness failed {unready_after:.3} s after SIGTERM, {during} answered in the delay), exit after {exited:.2} s",
        sent.len(),
        before.len()
    );
}
