//! Every built-in object the chart renders, for every value set, checked by kubernetes-validate
//! against the OpenAPI schemas of the oldest Kubernetes the chart supports and of the newest the
//! tool ships, with unknown fields refused (`--strict`). Custom resources have no schema there:
//! their kinds are skipped by name below, and anything else without a schema fails.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::render::*;

/// Kinds of custom resources, skipped by kubernetes-validate (it has no schema for them); each
/// has its own checks in checks.rs and objects.rs.
const CUSTOM_KINDS: [(&str, &str); 5] = [
    ("dyce.dev/v1alpha1", "SloPolicy"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("keda.sh/v1alpha1", "ScaledObject"),
];

/// Chart.yaml's kubeVersion (>=1.25) and the newest schemas kubernetes-validate 1.37 ships.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

/// kubernetes-validate: `$DYCE_KUBERNETES_VALIDATE`, else what
/// `scripts/ci/install_kubernetes_validate.sh` installed, else on PATH.
fn kubernetes_validate() -> PathBuf {
    if let Some(p) = std::env::var_os("DYCE_KUBERNETES_VALIDATE") {
        return PathBuf::from(p);
    }
    let installed = repo().join("target/tools/bin/kubernetes-validate");
    if installed.exists() {
        return installed;
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|d| d.join("kubernetes-validate")).find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "kubernetes-validate not found: run scripts/ci/install_kubernetes_validate.sh (installs {}), \
             set DYCE_KUBERNETES_VALIDATE, or put it on PATH",
            installed.display()
        )
    })
}

#[test]
#[ignore = "needs helm and kubernetes-validate: scripts/ci/setup.sh"]
fn every_built_in_object_passes_kubernetes_validate() {
    let tool = kubernetes_validate();
    let dir = tempfile::tempdir().unwrap();
    let (mut validated, mut skipped) = (0, 0);
    for values in value_sets() {
        let objects = render(&values);
        let (custom, builtin): (Vec<&Value>, Vec<&Value>) =
            objects.iter().partition(|o| CUSTOM_KINDS.contains(&kind_of(o)));
        skipped += custom.len();
        let file = dir.path().join(format!("{}.yaml", label(&values).replace(' ', "-")));
        let docs: Vec<String> = builtin.iter().map(|o| serde_json::to_string(o).unwrap()).collect();
        std::fs::write(&file, docs.join("\n---\n")).unwrap();
        for version in KUBERNETES_VERSIONS {
            let out = Command::new(&tool)
                .args(["--strict", "--kubernetes-version", version])
                .arg(&file)
                .output()
                .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()));
            let stdout = text(&out.stdout);
            let all = format!("{stdout}{}", text(&out.stderr));
            let what = format!("kubernetes-validate {version} ({})", label(&values));
            assert!(out.status.success(), "{what} failed:\n{all}");
            // A kind it has no schema for is only a warning there: here it is a failure.
            assert!(!all.contains("WARN") && !all.contains("ERROR"), "{what}:\n{all}");
            let passed = stdout.lines().filter(|l| l.starts_with("INFO") && l.contains(" passed ")).count();
            assert_eq!(passed, builtin.len(), "{what}: {passed} of {} objects passed:\n{all}", builtin.len());
            validated += passed;
        }
    }
    eprintln!(
        "kubernetes-validate: {validated} object validations passed, {skipped} custom resources skipped"
    );
    assert!(validated > 0);
}
