//! `dyce serve` under faults, over real HTTP (issue 19): the reproductions of its runtime
//! defects, each as a test.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Defect 1's trigger: a 90 ms load window and requests 93 ms apart once panicked the model
/// thread (in the window's old bucketed form). Every request must be answered and the runtime
/// stay ready.
#[test]
fn a_tiny_load_window_with_requests_just_outside_it() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &["--load-window", "0.09"]);
    let url = format!("{}/v2/models/tiny/infer", s.data);
    for _ in 0..4 {
        let (status, body) = post(&url, infer_body(1, 3).to_string().as_bytes());
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(93));
    }
    assert_eq!(get(&format!("{}/v2/health/ready", s.data)).0, 200);
    let (status, load) = get(&format!("{}/v1/load", s.admin));
    assert_eq!(status, 200, "{load}");
    assert_eq!(load["arrivals_total"].as_u64(), Some(4), "{load}");
}

/// Defect 1 itself: whatever kills the model thread (a panic injected by a debug-build-only
/// hook here), the process must not stay up answering 503: it becomes unready and exits
/// non-zero, for the orchestrator to restart it.
#[test]
fn a_dead_model_thread_ends_the_process_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let model = dir.path().to_str().unwrap();
    let mut s =
        serve_env(&["--model", model], &[("DYCE_FAULT_PANIC_ON_CONFIG", "c0")], Duration::from_secs(30));
    let (status, body) = put(&format!("{}/v1/config", s.admin), &json!({"id": "c0"}));
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        post(&format!("{}/v2/models/tiny/infer", s.data), infer_body(1, 3).to_string().as_bytes());
    assert_eq!(status, 503, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(code) = s.child.try_wait().unwrap() {
            break code;
        }
        assert!(Instant::now() < deadline, "still running 20 s after its model thread died");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!code.success(), "exit status {code:?}");
}

/// Defect 3's shutdown half: one slow body kept SIGTERM from finishing for 30 s and more. Now
/// the process exits 0 within the drain period whatever its clients do.
#[test]
fn sigterm_finishes_within_the_drain_period_despite_a_slow_body() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    // No drain delay: this is about the drain timeout (tests/serve_drain.rs has the delay).
    let mut s = serve(
        dir.path(),
        &["--drain-delay", "0", "--drain-timeout", "1", "--body-timeout", "60", "--header-timeout", "60"],
    );
    let data = s.data.trim_start_matches("http://").to_string();
    let mut slow = std::net::TcpStream::connect(&data).unwrap();
    slow.write_all(b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"in")
        .unwrap();
    let idle = std::net::TcpStream::connect(&data).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = Instant::now();
    let killed =
        std::process::Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let code = loop {
        if let Some(code) = s.child.try_wait().unwrap() {
            break code;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM (drain period 1 s)"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("exited {code:?} {:?} after SIGTERM (drain period 1 s)", t0.elapsed());
    assert!(code.success(), "{code:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    drop((slow, idle));
}
