//! `POST /v1/feedback` end to end against `dyce serve` (embedded `fmnist-resnet20`): answers
//! carry an id on every protocol, true labels count per config and exit position (every config
//! once a shadow check ran on the image), bad feedback gets a 4xx with a JSON reason and counts
//! nothing, and the store keeps only the newest answers.

mod common;

use std::time::{Duration, Instant};

use common::{get, post};
use dyce_data::fashion_mnist::LABELS;
use serde_json::{json, Value};

fn infer(s: &common::Server, n: usize, seed: u8, id: Option<&str>) -> Value {
    let mut body = common::infer_body(n, seed);
    match id {
        Some(id) => body["id"] = json!(id),
        None => {
            body.as_object_mut().unwrap().remove("id");
        }
    }
    let (status, v) =
        post(&format!("{}/v2/models/fmnist-resnet20/infer", s.data), body.to_string().as_bytes());
    assert_eq!(status, 200, "{v}");
    v
}

fn labels(answer: &Value) -> Vec<u64> {
    let out = answer["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "label").unwrap();
    out["data"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap()).collect()
}

fn feedback(s: &common::Server, body: &Value) -> (u16, Value) {
    post(&format!("{}/v1/feedback", s.data), body.to_string().as_bytes())
}

fn counter(text: &str, name: &str, config: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("config=\"{config}\"")))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn answers_carry_ids_and_true_labels_count_per_config() {
    let s = common::serve_with(
        &["--shadow-rate", "1", "--feedback-capacity", "40", "--max-batch", "8"],
        Duration::from_secs(120),
    );
    // Generated ids, and the request's own id when it has one.
    let a = infer(&s, 4, 1, None);
    let id = a["parameters"]["answer_id"].as_str().expect("an answer id").to_string();
    assert!(id.starts_with("d-"), "{a}");
    let own = infer(&s, 1, 2, Some("order-17"));
    assert_eq!(own["parameters"]["answer_id"], "order-17", "{own}");
    let served = labels(&a);
    // Shadow passes of the 5 images run when the model thread idles.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&format!("{}/v1/accuracy", s.admin)).1["checked_total"].as_u64() < Some(5) {
        assert!(Instant::now() < deadline, "shadow checks did not run");
        std::thread::sleep(Duration::from_millis(10));
    }

    // Bad feedback: a 4xx with a JSON reason, and nothing counted.
    let wrong_class = (served[0] + 1) % 10;
    let bad = [
        (json!({"id": "nope", "label": 1}), 404, "unknown answer id"),
        (json!({"id": id, "label": 10}), 400, "out of range"),
        (json!({"id": id, "label": -1}), 400, "out of range"),
        (json!({"id": id, "label": "Yak"}), 400, "unknown label \"Yak\""),
        (json!({"id": id, "label": 1.5}), 400, "invalid feedback"),
        (json!({"id": id, "index": 4, "label": 1}), 400, "index 4 is past"),
        (json!({"label": 1}), 400, "missing field `id`"),
        (json!({"id": id, "label": 1, "extra": true}), 400, "unknown field"),
        (json!([]), 400, "no feedback items"),
        (json!("x"), 400, "expected a JSON object or list"),
        (json!([{"id": id, "label": 1}, {"id": "nope", "label": 1}]), 404, "item 1: unknown answer id"),
        (json!([{"id": id, "label": 1}, {"id": id, "label": 2}]), 409, "already has its label"),
    ];
    for (body, status, reason) in bad {
        let (got, v) = feedback(&s, &body);
        assert_eq!(got, status, "{body} -> {v}");
        assert!(v["error"].as_str().is_some_and(|e| e.contains(reason)), "{body} -> {v}");
    }
    let (status, v) = post(&format!("{}/v1/feedback", s.data), b"{not json");
    assert_eq!(status, 400, "{v}");
    let (_, report) = get(&format!("{}/v1/accuracy", s.admin));
    assert_eq!(report["feedback"]["accepted_total"], 0, "{report}");

    // Good feedback: image 0 labelled with its answer (right), image 1 with another class
    // (wrong), by name; the request's own id too.
    let body = json!([
        {"id": id, "label": served[0]},
        {"id": id, "index": 1, "label": LABELS[((served[1] + 1) % 10) as usize]},
        {"id": "order-17", "label": wrong_class},
    ]);
    let (status, v) = feedback(&s, &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accepted"], 3);
    assert!(v["correct"].as_u64().unwrap() >= 1, "{v}");
    let (status, v) = feedback(&s, &json!({"id": id, "label": served[0]}));
    assert_eq!((status, v["error"].as_str().is_some()), (409, true), "each image counts once: {v}");

    let (_, report) = get(&format!("{}/v1/accuracy", s.admin));
    assert_eq!(report["feedback"]["accepted_total"], 3, "{report}");
    assert_eq!(report["feedback"]["shadowed_total"], 3, "{report}");
    // Every image was shadow-checked: each config of the table got all three labels.
    let configs = report["configs"].as_object().unwrap();
    for (cid, c) in configs {
        assert_eq!(c["feedback"]["samples_total"], 3, "{cid}: {c}");
        let (lb, acc) =
            (c["feedback"]["lower_bound"].as_f64().unwrap(), c["feedback"]["accuracy"].as_f64().unwrap());
        // Three samples: a loose bound, under the share unless the share is 0.
        assert!(lb < acc || acc == 0.0, "{cid}: {c}");
        assert!(lb < 0.75, "{cid}: {c}");
    }
    let metrics = common::request("GET", &format!("{}/metrics", s.metrics), &[], b"").1;
    let text = metrics.as_str().unwrap();
    assert_eq!(counter(text, "dyce_feedback_samples_total{", "full"), 3.0, "{text}");
    assert!(counter(text, "dyce_feedback_correct_total{", "full") <= 3.0, "{text}");
    assert!(text.contains("dyce_feedback_accuracy_lower_bound{config=\"c00\"}"), "{text}");

    // The store keeps the newest 40 images: 40 more single-image answers push the first out.
    for i in 0..40 {
        infer(&s, 1, i, None);
    }
    let (status, v) = feedback(&s, &json!({"id": id, "index": 2, "label": 1}));
    assert_eq!(status, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("--feedback-capacity"), "{v}");
    let (_, report) = get(&format!("{}/v1/accuracy", s.admin));
    assert!(report["feedback"]["kept"].as_u64().unwrap() <= 40, "{report}");
}

#[test]
fn feedback_off_means_no_ids_and_a_json_404() {
    let s = common::serve_with(&["--feedback-capacity", "0", "--shadow-rate", "0"], Duration::from_secs(120));
    let a = infer(&s, 1, 3, None);
    assert!(a["parameters"].get("answer_id").is_none(), "{a}");
    let (status, v) = feedback(&s, &json!({"id": "d-1", "label": 1}));
    assert_eq!(status, 404, "{v}");
    assert!(v["error"].as_str().unwrap().contains("feedback is off"), "{v}");
    let (status, v) = get(&format!("{}/v1/accuracy", s.admin));
    assert_eq!(status, 404, "{v}");
}
