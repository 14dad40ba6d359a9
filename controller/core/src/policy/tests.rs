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
