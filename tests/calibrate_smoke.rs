//! A reduced `dyce train` + `dyce calibrate` end to end on the real Fashion-MNIST files, and
//! the reproducibility of `configs.json` for a fixed seed.

use std::path::Path;
use std::process::Command;

use dyce_calibrate::exit_train::Recipe;

fn dyce(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("dyce runs");
    assert!(out.status.success(), "dyce {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
#[ignore = "needs Debian's dataset-fashion-mnist (scripts/ci/setup.sh); run by scripts/test.sh"]
fn reduced_train_and_calibrate_write_a_loadable_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (train, b1, b2) = (dir.path().join("train"), dir.path().join("b1"), dir.path().join("b2"));
    let common = ["--depths", "1,1,1", "--widths", "8,16,16"];
    let mut args =
        vec!["train", "--out", path(&train), "--limit", "512", "--epochs", "1", "--batch-size", "64"];
    args.extend(common);
    dyce(&args);
    for out in [&b1, &b2] {
        dyce(&[
            "calibrate",
            "--train-dir",
            path(&train),
            "--out",
            path(out),
            "--limit",
            "300",
            "--exit-types",
            "mlp1",
            "--exit-epochs",
            "2",
            // Measured exit costs differ run to run; the same-table check needs MACs.
            "--exit-cost-model",
            "off",
        ]);
    }
    for f in ["manifest.json", "weights.safetensors", "configs.json", "REPORT.md", "accuracy_vs_macs.svg"] {
        assert!(b1.join(f).exists(), "{f} missing");
    }
    let configs = std::fs::read_to_string(b1.join("configs.json")).unwrap();
    assert_eq!(configs, std::fs::read_to_string(b2.join("configs.json")).unwrap(), "same seed, same table");
    let table: serde_json::Value = serde_json::from_str(&configs).unwrap();
    let n = table["configs"].as_array().unwrap().len();
    assert!((2..=16).contains(&n), "{n} configs");
    assert_eq!(table["configs"][n - 1]["id"], "full");
    dyce(&["inspect", "--model", path(&b1)]);

    // Re-searching with the heads of b1 instead of training them: the same table. With an
    // exit cost, the search changes but the reported MACs stay true MACs (those of the
    // calibration split, on which configurations are chosen).
    let (b3, b4) = (dir.path().join("b3"), dir.path().join("b4"));
    let reuse = [
        "calibrate",
        "--train-dir",
        path(&train),
        "--limit",
        "300",
        "--exit-types",
        "mlp1",
        "--exit-cost-model",
        "off",
    ];
    dyce(&[&reuse[..], &["--out", path(&b3), "--exits-from", path(&b1)]].concat());
    assert_eq!(
        configs,
        std::fs::read_to_string(b3.join("configs.json")).unwrap(),
        "reused heads, same table"
    );
    dyce(&[&reuse[..], &["--out", path(&b4), "--exits-from", path(&b1), "--exit-cost", "mlp1=40"]].concat());
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b4.join("calibration.json")).unwrap()).unwrap();
    assert_eq!(rep["config"]["exit_cost"]["mlp1"], 40.0);
    let t4: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b4.join("configs.json")).unwrap()).unwrap();
    for (c, p) in t4["configs"].as_array().unwrap().iter().zip(rep["shipped"].as_array().unwrap()) {
        // Chosen and estimated on the calibration split; the test split is only reported.
        assert_eq!(c["macs_ratio"], p["calibration_macs_ratio"], "{c}");
        assert!(c["macs_ratio"].as_f64().unwrap() <= 1.0 + 1e-12, "{c}");
    }

    // Three recipes by default, compared in the report, the best shipped.
    let rep1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b1.join("calibration.json")).unwrap()).unwrap();
    let recipes = rep1["recipes"].as_array().unwrap();
    assert_eq!(recipes.len(), 3, "{recipes:?}");
    assert_eq!(recipes.iter().filter(|r| r["chosen"] == true).count(), 1);
    let chosen = recipes.iter().find(|r| r["chosen"] == true).unwrap()["recipe"].as_str().unwrap();
    assert_eq!(
        rep1["config"]["exits"]["recipe"],
        serde_json::to_value(chosen.parse::<Recipe>().unwrap()).unwrap()
    );
    assert!(std::fs::read_to_string(b1.join("REPORT.md")).unwrap().contains("## Exit-training recipes"));
    // Reused heads bring their recipe and its comparison.
    let rep3: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b3.join("calibration.json")).unwrap()).unwrap();
    assert_eq!(rep3["recipes"], rep1["recipes"]);
    assert_eq!(rep3["config"]["exits"]["recipe"], rep1["config"]["exits"]["recipe"]);

    // Measured exit costs (the default): written beside the bundle, and a re-search with that
    // file instead of a new measurement gives the same table.
    let (b5, b6) = (dir.path().join("b5"), dir.path().join("b6"));
    let auto = ["calibrate", "--train-dir", path(&train), "--limit", "300", "--exit-types", "mlp1,mlp2x16"];
    dyce(&[&auto[..], &["--out", path(&b5), "--exit-recipes", "ce", "--exit-epochs", "1"]].concat());
    let costs = b5.join("exit_cost.json");
    let model: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&costs).unwrap()).unwrap();
    assert_eq!(model["heads"].as_array().unwrap().len(), 2 * 3, "two types at three positions: {model}");
    assert!(model["backbone_ns_per_mac"].as_f64().unwrap() > 0.0);
    assert!(model["machine"]["isa"].is_string());
    dyce(
        &[&auto[..], &["--out", path(&b6), "--exits-from", path(&b5), "--exit-cost-model", path(&costs)]]
            .concat(),
    );
    assert_eq!(
        std::fs::read_to_string(b5.join("configs.json")).unwrap(),
        std::fs::read_to_string(b6.join("configs.json")).unwrap(),
        "same heads and costs, same table"
    );
}

/// ConvNeXt-V2 through the same commands: `dyce train --arch convnextv2_atto_s` (AdamW), stopped
/// and resumed across invocations to the same bits as an uninterrupted run, then calibrated into
/// a bundle that inspects as a ConvNeXt-V2.
#[test]
#[ignore = "needs Debian's dataset-fashion-mnist (scripts/ci/setup.sh); run by scripts/test.sh"]
fn convnext_trains_resumes_and_calibrates() {
    let dir = tempfile::tempdir().unwrap();
    let (once, split, bundle) =
        (dir.path().join("once"), dir.path().join("split"), dir.path().join("bundle"));
    let train = |out: &Path, extra: &[&str]| {
        let mut a = vec!["train", "--arch", "convnextv2_atto_s", "--out", path(out), "--limit", "256"];
        a.extend(["--epochs", "2", "--batch-size", "64"]);
        a.extend(extra);
        dyce(&a);
    };
    train(&once, &[]);
    // Stopped after one epoch, then continued by a second invocation.
    train(&split, &["--stop-after-epochs", "1"]);
    assert!(!split.join("backbone.safetensors").exists(), "no final weights before the last epoch");
    train(&split, &["--resume"]);
    let weights = |d: &Path| std::fs::read(d.join("backbone.safetensors")).unwrap();
    assert!(weights(&once) == weights(&split), "a resumed run must end with the uninterrupted run's weights");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(split.join("train.json")).unwrap()).unwrap();
    assert_eq!(rec["spec"]["family"], "convnextv2");
    assert_eq!(rec["config"]["optimizer"], "adamw");
    assert_eq!(rec["history"].as_array().unwrap().len(), 2);

    dyce(&[
        "calibrate",
        "--train-dir",
        path(&split),
        "--out",
        path(&bundle),
        "--limit",
        "300",
        "--exit-types",
        "mlp1",
        "--exit-recipes",
        "ce",
        "--exit-epochs",
        "1",
        "--exit-cost-model",
        "off",
    ]);
    let manifest = std::fs::read_to_string(bundle.join("manifest.json")).unwrap();
    assert!(manifest.contains("convnextv2"), "{manifest}");
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("configs.json")).unwrap()).unwrap();
    assert!(table["configs"].as_array().unwrap().len() >= 2, "{table}");
    dyce(&["inspect", "--model", path(&bundle)]);

    // Resuming with other settings is refused, naming them.
    let out = Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args(["train", "--arch", "convnextv2_atto_s", "--out", path(&split), "--limit", "256"])
        .args(["--epochs", "3", "--batch-size", "64", "--resume"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("epochs 2 vs 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An architecture 28 px cannot feed is refused with its reason, before any training.
    let out = Command::new(env!("CARGO_BIN_EXE_dyce"))
        .args(["train", "--arch", "convnextv2_atto", "--out", path(&dir.path().join("no"))])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty before the last stage"));
}
