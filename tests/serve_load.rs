//! `dyce serve` under concurrent load: admission control and switches while requests run.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn overload_is_refused_at_once_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &["--max-queue", "8", "--max-batch", "8"]);
    let url = format!("{}/v2/models/tiny/infer", s.data);
    let body = infer_body(4, 1).to_string();
    let refused = Arc::new(Mutex::new(Vec::new()));
    let ok = Arc::new(Mutex::new(0usize));
    std::thread::scope(|sc| {
        for _ in 0..16 {
            let (url, body, refused, ok) = (&url, &body, refused.clone(), ok.clone());
            sc.spawn(move || {
                let agent: ureq::Agent =
                    ureq::Agent::config_builder().http_status_as_error(false).build().into();
                for _ in 0..20 {
                    let t = Instant::now();
                    let mut r = agent.post(url).send(body.as_bytes()).unwrap();
                    let elapsed = t.elapsed();
                    match r.status().as_u16() {
                        200 => *ok.lock().unwrap() += 1,
                        429 => {
                            let retry =
                                r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
                            let text = r.body_mut().read_to_string().unwrap();
                            refused.lock().unwrap().push((elapsed, retry, text));
                        }
                        other => panic!("unexpected status {other}"),
                    }
                }
            });
        }
    });
    let refused = refused.lock().unwrap();
    assert!(!refused.is_empty(), "16 clients × 4 images against a queue of 8 must overflow");
    assert!(*ok.lock().unwrap() > 0);
    for (elapsed, retry, text) in refused.iter() {
        assert_eq!(retry.as_deref(), Some("1"));
        assert!(text.contains("overloaded"), "{text}");
        assert!(*elapsed < Duration::from_millis(500), "refusal took {elapsed:?}");
    }
    let metrics = get(&format!("{}/metrics", s.admin)).1;
    assert!(metrics.as_str().unwrap().contains("dyce_requests_total{model=\"tiny\",outcome=\"shed\"}"));
}

#[test]
fn switches_under_load_never_fail_a_request() {
    let dir = tempfile::tempdir().unwrap();
    tiny_bundle(dir.path());
    let s = serve(dir.path(), &["--max-queue", "1024"]);
    let url = format!("{}/v2/models/tiny/infer", s.data);
    let cfg_url = format!("{}/v1/config", s.admin);
    // Per switch: (PUT sent, PUT answered), so the swap happened in between; per response:
    // (sent, received, generation, id).
    let switches = Arc::new(Mutex::new(vec![(Instant::now(), Instant::now())]));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::scope(|sc| {
        for t in 0..3 {
            let (url, answers, done) = (&url, answers.clone(), done.clone());
            sc.spawn(move || {
                let body = infer_body(1 + t, t as u8).to_string();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = Instant::now();
                    let (status, resp) = post(url, body.as_bytes());
                    assert_eq!(status, 200, "{resp}");
                    assert_eq!(resp["outputs"][0]["shape"], json!([1 + t, 10]), "malformed answer: {resp}");
                    let generation = resp["parameters"]["config_generation"].as_u64().unwrap();
                    answers.lock().unwrap().push((
                        sent,
                        Instant::now(),
                        generation,
                        resp["parameters"]["config_id"].clone(),
                    ));
                }
            });
        }
        let ids = ["c0", "c1", "full"];
        for g in 1..=1000u64 {
            let put_sent = Instant::now();
            let (status, _) = put(&cfg_url, &json!({"id": ids[g as usize % 3], "generation": g}));
            assert_eq!(status, 200);
            switches.lock().unwrap().push((put_sent, Instant::now()));
            // Spread the switches over a few seconds of load rather than a burst.
            std::thread::sleep(Duration::from_millis(3));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let switches = switches.lock().unwrap();
    let answers = answers.lock().unwrap();
    assert!(answers.len() >= 50, "only {} answers", answers.len());
    let ids = ["c0", "c1", "full"];
    for (sent, received, generation, id) in answers.iter() {
        let want = if *generation == 0 { "full" } else { ids[*generation as usize % 3] };
        assert_eq!(id, want, "config id and generation disagree");
        // The generation was active at some moment between send and receipt. Its swap happened
        // after its PUT was sent, so that PUT must have been sent before the answer came back;
        // the next swap happened before the next PUT was answered, so that answer must not
        // precede the request.
        let (put_sent, _) = switches[*generation as usize];
        assert!(put_sent <= *received, "answer names a generation switched to after it");
        if let Some((_, next_answered)) = switches.get(*generation as usize + 1) {
            assert!(*next_answered >= *sent, "answer names a generation replaced before it was sent");
        }
    }
}
