//! Parsing and validation of policies: accepted forms and the exact message of each rejection.

use super::*;
use crate::ladder::AccuracyLimits;

/// A valid policy with `extra` appended under `spec:` (two-space indented lines).
fn with_spec(extra: &str) -> String {
    format!(
        "apiVersion: dyce.dev/v1alpha1\nkind: SloPolicy\nmetadata: {{name: p}}\nspec:\n  \
         runtimes: [\"http://127.0.0.1:1\"]\n  objective: {{latency: {{threshold: 20ms}}}}\n{extra}"
    )
}

#[test]
fn accuracy_bounds_parse_into_limits() {
    let cases: &[(&str, AccuracyLimits)] = &[
        ("", AccuracyLimits::default()),
        ("  accuracyFloor: 0.9\n", AccuracyLimits::absolute(0.9)),
        ("  maxAccuracyDrop: 0.03\n", AccuracyLimits::relative(0.03)),
        ("  maxAccuracyDrop: 0\n", AccuracyLimits::relative(0.0)),
        (
            "  accuracyFloor: 0.7\n  maxAccuracyDrop: 0.05\n",
            AccuracyLimits { min: 0.7, max_drop: Some(0.05) },
        ),
    ];
    for (extra, want) in cases {
        let doc = PolicyDocument::parse(&with_spec(extra)).unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        assert_eq!(doc.spec.accuracy_limits(), *want, "{extra:?}");
        // What `dyce policy check` prints parses back to the same policy.
        let again = PolicyDocument::parse(&serde_norway::to_string(&doc).unwrap()).unwrap();
        assert_eq!(again, doc, "{extra:?}");
    }
}

#[test]
fn accuracy_bounds_out_of_range_name_the_field() {
    let cases = [
        ("  maxAccuracyDrop: 3\n", "spec.maxAccuracyDrop: must be in [0, 1) (a fraction: 0.03 is 3 points below the full model), got 3"),
        ("  maxAccuracyDrop: 1\n", "spec.maxAccuracyDrop: must be in [0, 1) (a fraction: 0.03 is 3 points below the full model), got 1"),
        ("  maxAccuracyDrop: -0.01\n", "spec.maxAccuracyDrop: must be in [0, 1) (a fraction: 0.03 is 3 points below the full model), got -0.01"),
        ("  maxAccuracyDrop: .nan\n", "spec.maxAccuracyDrop: must be in [0, 1) (a fraction: 0.03 is 3 points below the full model), got NaN"),
        ("  maxAccuracyDrop: .inf\n", "spec.maxAccuracyDrop: must be in [0, 1) (a fraction: 0.03 is 3 points below the full model), got inf"),
        ("  accuracyFloor: 90\n", "spec.accuracyFloor: must be in [0, 1] (a fraction, not a percentage), got 90"),
        ("  accuracyFloor: 0.9\n  maxAccuracyDrop: 1.5\n", "spec.maxAccuracyDrop: must be in [0, 1) (a fraction: 0.03 is 3 points below the full model), got 1.5"),
    ];
    for (extra, want) in cases {
        let err = PolicyDocument::parse(&with_spec(extra)).expect_err(extra);
        assert_eq!(err.to_string(), want, "{extra:?}");
    }
}

/// A valid policy with `metadata` as given.
fn with_metadata(metadata: &str) -> String {
    format!(
        "apiVersion: dyce.dev/v1alpha1\nkind: SloPolicy\nmetadata: {metadata}\nspec:\n  \
         runtimes: [\"http://127.0.0.1:1\"]\n  objective: {{latency: {{threshold: 20ms}}}}\n"
    )
}

/// Every rejection, with its whole message: the field once, then what is wrong.
#[test]
fn rejections_print_the_field_once() {
    let cases = [
        (
            with_spec("  control: {interval: 5 parsecs}\n"),
            "spec.control.interval: \"5 parsecs\" is not a duration like 500ms, 5s or 1m (unknown time unit \
             \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few \
             variations)) at line 7 column 12",
        ),
        (
            with_spec("  bogus: 1\n"),
            "spec.bogus: unknown field `bogus`, expected one of `selector`, `runtimes`, `objective`, \
             `accuracyFloor`, `maxAccuracyDrop`, `accuracy`, `control` at line 7 column 3",
        ),
        (with_spec("  accuracyFloor: x\n"), "spec.accuracyFloor: invalid type: string \"x\", expected f64 at line 7 column 18"),
        (
            with_metadata("{name: p, uid: 0f1c}"),
            "metadata.uid: unknown field `uid`, expected one of `name`, `namespace`, `labels`, `annotations` \
             at line 3 column 21",
        ),
        (
            with_metadata("{name: p, namepsace: prod}"),
            "metadata.namepsace: unknown field `namepsace`, expected one of `name`, `namespace`, `labels`, \
             `annotations` at line 3 column 21",
        ),
        (
            with_metadata("{name: p, labels: {a: [1]}}"),
            "metadata.labels.a: invalid type: sequence, expected a string at line 3 column 33",
        ),
        (
            with_spec("  control: {staleAfter: 11m}\n"),
            "spec.control.staleAfter: must be at least the interval (100ms) and at most 10m, got 11m",
        ),
        (
            with_spec("  control: {staleAfter: 50ms}\n"),
            "spec.control.staleAfter: must be at least the interval (100ms) and at most 10m, got 50ms",
        ),
        (
            with_spec("  control: {restore: {after: 2h}}\n"),
            "spec.control.restore.after: must be at least the interval (100ms) and at most 1h, got 2h",
        ),
        (
            with_spec("  control: {restore: {step: 3601s}}\n"),
            "spec.control.restore.step: must be at least the interval (100ms) and at most 1h, got 1h 1s",
        ),
        (
            with_spec("  control: {staleAfter: 1h}\n"),
            "spec.control.staleAfter: must be at least the interval (100ms) and at most 10m, got 1h",
        ),
        (
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            "the policy has 100000 '[' and '{' (strings and comments included), more than 128: a policy needs a \
             handful, and nesting that deep is refused before parsing",
        ),
        (
            with_spec(&format!("  control: {}{}\n", "{a: ".repeat(200), "}".repeat(200))),
            "the policy has 204 '[' and '{' (strings and comments included), more than 128: a policy needs a \
             handful, and nesting that deep is refused before parsing",
        ),
        (
            format!("{}{}", with_spec(""), "#".repeat(MAX_POLICY_BYTES)),
            "the policy is larger than 1 MiB (1048576 bytes); a policy is a few hundred bytes",
        ),
    ];
    for (text, want) in cases {
        let err = PolicyDocument::parse(&text).expect_err(want);
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn within_the_limits() {
    // Ten minutes of staleness, and a policy at the size limit.
    let doc = PolicyDocument::parse(&with_spec(
        "  control: {interval: 60s, staleAfter: 10m, restore: {after: 60s, step: 60s}}\n",
    ))
    .unwrap();
    assert_eq!(doc.spec.control.stale_after().0, MAX_STALE_AFTER);
    let text = with_spec("");
    let padded = format!("{text}{}", "#".repeat(MAX_POLICY_BYTES - text.len()));
    PolicyDocument::parse(&padded).unwrap();
    // Kubernetes-style metadata the file keeps.
    let doc = PolicyDocument::parse(&with_metadata(
        "{name: p, namespace: prod, labels: {app.kubernetes.io/name: dyce}, annotations: {note: x}}",
    ))
    .unwrap();
    assert_eq!(doc.metadata.namespace.as_deref(), Some("prod"));
}

/// 100k-deep flow nesting is refused before the YAML parser sees it: 30-45 s before the check
/// (libyaml's time per token grows with the depth), microseconds now. The bound is loose so a
/// busy machine does not fail it; the quadratic path is three orders of magnitude above it.
#[test]
fn deep_nesting_fails_fast() {
    let text = with_spec(&format!("  control: {}{}\n", "[".repeat(100_000), "]".repeat(100_000)));
    let start = std::time::Instant::now();
    assert!(PolicyDocument::parse(&text).is_err());
    assert!(start.elapsed() < std::time::Duration::from_secs(1), "{:?}", start.elapsed());
}

#[test]
fn load_reads_at_most_the_limit() {
    let dir = std::env::temp_dir().join(format!("dyce-policy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.yaml");
    // Sparse: 200 MB of zeros on disk costs nothing, and reading it whole would be the bug.
    std::fs::File::create(&big).unwrap().set_len(200 << 20).unwrap();
    let err = PolicyDocument::load(&big).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the file is larger than 1 MiB (1048576 bytes); a policy is a few hundred bytes"
    );
    let bad = dir.join("latin1.yaml");
    std::fs::write(&bad, b"kind: \xe9\n").unwrap();
    let err = PolicyDocument::load(&bad).unwrap_err().to_string();
    assert!(err.starts_with("the file is not UTF-8 text"), "{err}");
    let err = PolicyDocument::load(&dir.join("missing.yaml")).unwrap_err().to_string();
    assert!(err.starts_with("cannot read the file: "), "{err}");
    let ok = dir.join("ok.yaml");
    std::fs::write(&ok, with_spec("")).unwrap();
    PolicyDocument::load(&ok).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
