//! Policy files: the shipped ones parse; every broken one is rejected naming its field.

use std::path::Path;

use dyce_control_core::api::ConfigTable;
use dyce_control_core::ladder::{AccuracyLimits, Ladder};
use dyce_control_core::policy::PolicyDocument;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_policies_are_valid() {
    let dir = root().join("../policies");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            PolicyDocument::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 1);
}

/// The default policy's relative floor allows, on the shipped Fashion-MNIST table, exactly what
/// its former absolute floor (0.90) allowed: switching to the relative form changed nothing there.
#[test]
fn default_policy_keeps_the_cheapest_fmnist_config() {
    let doc = PolicyDocument::load(&root().join("../policies/default.yaml")).unwrap();
    let text =
        std::fs::read_to_string(root().join("../runtime/models/fmnist-resnet20/configs.json")).unwrap();
    let table: ConfigTable = serde_json::from_str(&text).unwrap();
    let ids = |l: AccuracyLimits| -> Vec<String> {
        Ladder::new(&table, l).unwrap().rungs().iter().map(|r| r.id.clone()).collect()
    };
    // Relative: 3.5 points under the full model's bound (0.9297 since the bound takes the
    // harder of the calibration and test splits), the same as that absolute floor.
    let relative = ids(doc.spec.accuracy_limits());
    let full = table.full().and_then(|f| f.expected_accuracy).unwrap();
    assert_eq!(relative, ids(AccuracyLimits::absolute(full - 0.035 - 1e-9)));
    assert_eq!(relative.first().map(String::as_str), Some("c00"), "the cheapest config stays allowed");
}

#[test]
fn broken_policies_name_the_field() {
    let dir = root().join("tests/policies/bad");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("first line: # expect: FIELD");
        let err = PolicyDocument::parse(&text).expect_err(&format!("{} must be rejected", p.display()));
        let msg = err.to_string();
        assert!(msg.contains(expect), "{}: {msg:?} does not name {expect:?}", p.display());
        assert!(!msg.contains('\n'), "{}: one line, got {msg:?}", p.display());
        // The field once: its message does not start with (a parent of) the field again.
        let f = &err.field;
        let twice = f
            .match_indices(['.', '['])
            .map(|(i, _)| i)
            .chain([f.len()])
            .any(|end| end > 0 && err.message.starts_with(&format!("{}: ", &f[..end])));
        assert!(!twice, "{}: field printed twice: {msg:?}", p.display());
        n += 1;
    }
    assert!(n >= 10, "only {n} broken policies");
}

#[test]
fn defaults_fill_in_and_round_trip() {
    let doc = PolicyDocument::parse(
        "apiVersion: dyce.dev/v1alpha1\nkind: SloPolicy\nmetadata: {name: p}\nspec:\n  runtimes: [\"http://127.0.0.1:1\"]\n  objective: {latency: {threshold: 20ms}}\n",
    )
    .unwrap();
    let c = &doc.spec.control;
    assert_eq!(c.interval.to_string(), "100ms");
    assert_eq!(c.stale_after().to_string(), "1s");
    assert_eq!(c.request_timeout().to_string(), "500ms");
    assert_eq!((c.target_utilization, c.restore.headroom), (0.8, 0.7));
    assert_eq!(doc.spec.objective.latency.quantile, 0.99);
    let again = PolicyDocument::parse(&serde_norway::to_string(&doc).unwrap()).unwrap();
    assert_eq!(again, doc);
}

#[test]
fn schema_describes_the_fields() {
    let s = serde_json::to_string(&PolicyDocument::json_schema()).unwrap();
    for field in [
        "accuracyFloor",
        "maxAccuracyDrop",
        "onMissingSignals",
        "targetUtilization",
        "maxQueueDepth",
        "headroom",
    ] {
        assert!(s.contains(field), "schema lacks {field}");
    }
}
