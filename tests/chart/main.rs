//! The Helm chart (`charts/dyce`): `helm lint --strict` and `helm template` for the default
//! values and every value set in `charts/dyce/ci/`; every rendered object deserialised into its
//! Kubernetes type with nothing dropped (k8s-openapi ignores unknown fields, so a misspelt or
//! misplaced field shows as a difference after a round trip); the restricted pod security
//! profile, probes, ports and RBAC; the schema refusing misspelt keys; the values table of the
//! chart's README against values.yaml, and `helm show readme`; the chart's copies of the
//! dashboards and rules; kubernetes-validate over every rendered built-in object (validate.rs);
//! security contexts, drain, autoscaling, monitors and `helm test` (features.rs); live accuracy,
//! its values against the binary's and the controller's bounds (accuracy.rs).
//!
//! Tests that run helm are `#[ignore]`d for a plain `cargo test`; `scripts/test.sh` runs them
//! (`--include-ignored`) after `scripts/ci/setup.sh` installed helm and kubernetes-validate. A
//! missing tool is a failure.

mod accuracy;
mod checks;
mod features;
mod model;
mod objects;
mod pods;
mod render;
mod validate;

use std::collections::BTreeMap;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value;

use checks::*;
use objects::*;
use pods::*;
use render::*;

pub const RELEASE: &str = "demo";
pub const NAMESPACE: &str = "serving";
pub const TOKEN_PATH: &str = "/var/run/secrets/dyce/token";
/// Where runtime.modelFrom mounts the bundle.
pub const MODEL_DIR: &str = "/var/lib/dyce/model";

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn lint_strict_passes_for_every_value_set() {
    let chart = chart();
    for values in value_sets() {
        let mut args = vec!["lint", "--strict", chart.to_str().unwrap(), "--namespace", NAMESPACE];
        if let Some(v) = &values {
            args.extend(["-f", v.to_str().unwrap()]);
        }
        let out = run_helm(&args);
        assert!(
            out.status.success(),
            "helm lint --strict ({}) failed:\n{}{}",
            label(&values),
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn every_rendered_object_is_a_valid_kubernetes_object() {
    let sets = value_sets();
    assert!(sets.len() >= 4, "the default values and at least three value sets in charts/dyce/ci");
    for values in sets {
        let rendered =
            Rendered { name: label(&values), values: values_of(&values), objects: render(&values) };
        check_rendered(&rendered);
    }
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn value_sets_render_what_they_switch_on() {
    let get = |name: &str| {
        let values = Some(chart().join("ci").join(name));
        Rendered { name: name.into(), values: values_of(&values), objects: render(&values) }
    };
    let count = |r: &Rendered| {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for o in &r.objects {
            *m.entry(kind_of(o).1.to_string()).or_default() += 1;
        }
        m
    };

    let defaults = Rendered { name: "default values".into(), values: Value::Null, objects: render(&None) };
    let c = count(&defaults);
    for (kind, n) in [
        ("CustomResourceDefinition", 1),
        ("Deployment", 2),
        ("Service", 3),
        ("Pod", 1),
        ("ServiceAccount", 1),
        ("Secret", 1),
        ("ClusterRole", 1),
        ("ClusterRoleBinding", 1),
        ("Role", 1),
        ("RoleBinding", 1),
        ("NetworkPolicy", 1),
        ("PodDisruptionBudget", 2),
        ("SloPolicy", 1),
    ] {
        assert_eq!(c.get(kind).copied().unwrap_or(0), n, "default values: {kind}: {c:?}");
    }
    for kind in ["ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(!c.contains_key(kind), "default values render no {kind} (opt-in)");
    }

    let monitoring = get("monitoring-values.yaml");
    let c = count(&monitoring);
    assert_eq!(c.get("PodMonitor"), Some(&2), "monitoring: PodMonitors for the controller and runtimes");
    assert_eq!(c.get("PrometheusRule"), Some(&1), "monitoring: PrometheusRule");
    assert_eq!(c.get("ConfigMap"), Some(&1), "monitoring: dashboards ConfigMap");

    let sm = get("servicemonitor-values.yaml");
    let c = count(&sm);
    assert_eq!(c.get("ServiceMonitor"), Some(&2), "servicemonitor: ServiceMonitors");
    assert_eq!(c.get("Secret"), None, "servicemonitor: existing Secret, none generated");

    let namespaced = get("namespaced-values.yaml");
    let c = count(&namespaced);
    assert_eq!((c.get("ClusterRole"), c.get("Role")), (None, Some(&2)), "namespaced: Roles only");
    let runtime =
        namespaced.of_kind("Deployment").into_iter().find(|d| d["metadata"]["name"] == "serving-runtime");
    let runtime = runtime.expect("namespaced: runtime Deployment serving-runtime");
    assert!(
        runtime["spec"].get("replicas").is_none(),
        "runtime.replicas: null leaves replicas to an autoscaler"
    );

    // The sidecar: an app container and the runtime in one pod, through the named template.
    let sidecar = get("sidecar-values.yaml");
    let deployments = sidecar.of_kind("Deployment");
    let example = deployments.iter().find(|d| name_of(d).ends_with("-sidecar-example"));
    let example = example.expect("sidecar: the example Deployment");
    let d: Deployment = typed(example);
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers.len(), 2, "sidecar: app + runtime");
    assert!(pod.containers.iter().any(is_runtime) && pod.containers.iter().any(|c| c.name == "app"));
    assert!(!deployments.iter().any(|d| name_of(d).ends_with("-runtime")), "sidecar: runtime.enabled=false");
    assert_eq!(count(&sidecar).get("NetworkPolicy"), Some(&1), "sidecar: the example's NetworkPolicy");
}

/// The sidecar templates from a chart that has dyce as a dependency, with the context
/// docs/install.md shows: the runtime container, its volumes and the pod label, with the names
/// the dyce subchart gives its Secret and SloPolicy selector.
#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn sidecar_templates_work_from_a_parent_chart() {
    let context = r#"{{- $dyce := dict "Values" .Values.dyce "Release" .Release "Chart" (dict "Name" "dyce" "Version" "0.1.0" "AppVersion" "0.1.0") }}"#;
    let doc = std::fs::read_to_string(repo().join("docs/install.md")).unwrap();
    assert!(doc.contains(context), "docs/install.md no longer shows the parent-chart context this test uses");

    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().join("myapp");
    std::fs::create_dir_all(parent.join("templates")).unwrap();
    std::fs::create_dir_all(parent.join("charts")).unwrap();
    let copy = Command::new("cp").arg("-r").arg(chart()).arg(parent.join("charts/dyce")).status().unwrap();
    assert!(copy.success(), "copying the chart");
    std::fs::write(
        parent.join("Chart.yaml"),
        "apiVersion: v2\nname: myapp\nversion: 1.0.0\ndependencies:\n  - name: dyce\n    version: 0.1.0\n",
    )
    .unwrap();
    // A bundle from an image, so the init container snippet of docs/install.md renders too.
    let values = "dyce:\n  runtime:\n    enabled: false\n    modelFrom:\n      image:\n        enabled: true\n        \
                  repository: r.example/bundle\n        tag: v1\n";
    std::fs::write(parent.join("values.yaml"), values).unwrap();
    let template = format!(
        r#"{context}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-app
  namespace: {{{{ .Release.Namespace }}}}
spec:
  selector:
    matchLabels: {{app: my-app}}
  template:
    metadata:
      labels:
        app: my-app
        {{{{- include "dyce.runtimePodLabels" $dyce | nindent 8 }}}}
    spec:
      securityContext:
        {{{{- include "dyce.podSecurityContext" $dyce | nindent 8 }}}}
      {{{{- with include "dyce.runtimeInitContainers" $dyce }}}}
      initContainers:
        {{{{- . | nindent 8 }}}}
      {{{{- end }}}}
      containers:
        - name: my-app
          image: my-app:1.0
          resources: {{}}
          securityContext:
            {{{{- include "dyce.containerSecurityContext" $dyce | nindent 12 }}}}
        {{{{- include "dyce.runtimeContainer" (dict "root" $dyce) | nindent 8 }}}}
      volumes:
        {{{{- include "dyce.runtimeVolumes" $dyce | nindent 8 }}}}
"#
    );
    std::fs::write(parent.join("templates/app.yaml"), template).unwrap();
    let out = run_helm(&["template", RELEASE, parent.to_str().unwrap(), "--namespace", NAMESPACE]);
    assert!(out.status.success(), "helm template of the parent chart failed:\n{}", text(&out.stderr));
    let objects = documents(&text(&out.stdout));
    let rendered = Rendered {
        name: "parent chart".into(),
        // The checks read the value set for what to expect: the defaults, but for a runtime
        // that runs as my-app's sidecar instead of the runtime Deployment (same expectations).
        values: serde_json::json!({}),
        objects,
    };
    // The app's own Deployment and the dyce subchart's objects pass every check above,
    // including the SloPolicy selecting the app's pods and the token Secret they mount.
    check_rendered(&rendered);
    let app = rendered.objects.iter().find(|o| name_of(o) == "my-app").expect("my-app rendered");
    let d: Deployment = typed(app);
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert!(pod.containers.iter().any(is_runtime), "my-app has the runtime container");
    let inits: Vec<&str> = pod.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(inits, ["dyce-model"], "my-app copies the bundle before the runtime starts");
}

/// Misspelt keys, at the top and deep down, are refused by values.schema.json.
#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn misspelt_values_are_refused_by_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let chart = chart();
    let cases = [
        ("controler:\n  replicas: 2\n", "controler"),
        ("runtime:\n  replicaCoutn: 3\n", "replicaCoutn"),
        ("sloPolicy:\n  objective:\n    latency:\n      threshhold: 20ms\n", "threshhold"),
        ("monitoring:\n  podMonitor:\n    additionalLabel: {release: x}\n", "additionalLabel"),
        ("runtime:\n  resources:\n    limits:\n      cpus: \"2\"\n", "cpus"),
        ("networkPolicy:\n  prometheus:\n    podSelector: {app: prometheus}\n", "podSelector"),
        ("runtime:\n  drain:\n    delaySecs: 3\n", "delaySecs"),
        ("runtime:\n  liveAccuracy:\n    shadowRat: 0.1\n", "shadowRat"),
        ("sloPolicy:\n  accuracy:\n    minSample: 10\n", "minSample"),
        ("autoscaling:\n  keda:\n    serverAdress: http://p:9090\n", "serverAdress"),
        ("runtime:\n  topologySpreadConstraints:\n    - {maxSkew: 1, topologyKey: k, whenUnsatisfiable: ScheduleAnyway, labelSelektor: {}}\n", "labelSelektor"),
    ];
    for (i, (yaml, key)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let file = file.to_str().unwrap();
        for args in [
            vec!["template", RELEASE, chart.to_str().unwrap(), "-f", file],
            vec!["lint", "--strict", chart.to_str().unwrap(), "-f", file],
        ] {
            let out = run_helm(&args);
            let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
            assert!(!out.status.success(), "helm {} accepted a misspelt {key}:\n{all}", args[0]);
            assert!(
                all.contains(&format!("Additional property {key} is not allowed")),
                "helm {} did not name {key} in a schema error:\n{all}",
                args[0]
            );
        }
    }
    // Wrong types and ranges too.
    for yaml in [
        "runtime:\n  replicas: two\n",
        "sloPolicy:\n  accuracyFloor: 1.5\n",
        "sloPolicy:\n  maxAccuracyDrop: 3\n",
        "sloPolicy:\n  control:\n    onMissingSignals: panic\n",
        "sloPolicy:\n  objective:\n    latency:\n      threshold: fast\n",
        "runtime:\n  logFormat: yaml\n",
        "runtime:\n  drain:\n    delaySeconds: -1\n",
        "runtime:\n  http:\n    headerTimeoutSeconds: 0\n",
        "autoscaling:\n  minReplicas: 0\n",
        "runtime:\n  liveAccuracy:\n    shadowRate: 1.5\n",
        "runtime:\n  liveAccuracy:\n    feedbackCapacity: -1\n",
        "sloPolicy:\n  accuracy:\n    source: bogus\n",
        "sloPolicy:\n  accuracy:\n    hysteresis: 0.5\n",
    ] {
        let file = dir.path().join("bad-type.yaml");
        std::fs::write(&file, yaml).unwrap();
        let out = run_helm(&["template", RELEASE, chart.to_str().unwrap(), "-f", file.to_str().unwrap()]);
        assert!(!out.status.success(), "helm template accepted {yaml:?}");
        assert!(
            text(&out.stderr).contains("schema"),
            "not a schema error for {yaml:?}: {}",
            text(&out.stderr)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests that need no helm.

fn chart_values() -> Value {
    yaml_to_json(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
}

/// Leaf keys of values.yaml (dotted; a leaf is anything but a non-empty mapping) with values.
fn leaves(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(v, &p, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// Rows of the table under "## Values" in the chart's README.md: key → default cell.
fn documented_values() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(chart().join("README.md")).expect("charts/dyce/README.md");
    let start = doc.find("\n## Values\n").expect("charts/dyce/README.md: no '## Values' section");
    let section = &doc[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert!(cells.len() >= 3, "README.md: a values row needs key, default, description: {line}");
        let key = cells[0].trim_matches('`').to_string();
        let default = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`'));
        let default =
            default.unwrap_or_else(|| panic!("README.md: default of {key} not in backticks: {line}"));
        assert!(!cells[2].is_empty(), "README.md: {key} has no description");
        assert!(rows.insert(key.clone(), default.to_string()).is_none(), "README.md: {key} listed twice");
    }
    rows
}

#[test]
fn chart_readme_lists_exactly_the_values_with_their_defaults() {
    let mut values = BTreeMap::new();
    leaves(&chart_values(), "", &mut values);
    let doc = documented_values();
    let missing: Vec<&String> = values.keys().filter(|k| !doc.contains_key(*k)).collect();
    let stale: Vec<&String> = doc.keys().filter(|k| !values.contains_key(*k)).collect();
    assert!(missing.is_empty(), "keys of values.yaml missing from the chart's README.md: {missing:?}");
    assert!(stale.is_empty(), "the chart's README.md lists keys values.yaml does not have: {stale:?}");
    for (key, default) in &doc {
        let parsed = yaml_to_json_scalar(default);
        assert_eq!(&parsed, &values[key], "README.md: default of {key} is `{default}`");
    }
}

/// A default cell as YAML (an empty cell or `""` is the empty string, `{}` an empty map).
fn yaml_to_json_scalar(text: &str) -> Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("default `{text}`: {e}"))
}

/// Every object level of values.schema.json refuses unknown keys: `additionalProperties` is
/// false, or a schema for maps of free keys (labels, annotations). The only exceptions are
/// Kubernetes structures passed through unchanged (`$comment` says so; the API server checks
/// them) and Helm's `global`.
#[test]
fn schema_refuses_unknown_keys_at_every_level() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap()).unwrap();
    fn walk(s: &Value, path: &str, objects: &mut usize) {
        let Value::Object(m) = s else { return };
        let is_object = m.get("type") == Some(&Value::String("object".into()));
        if is_object {
            *objects += 1;
            let passthrough = m.get("$comment").and_then(Value::as_str).is_some_and(|c| {
                (c.starts_with("Kubernetes ") && c.contains("passed through"))
                    || c.starts_with("Helm's global")
            });
            match m.get("additionalProperties") {
                Some(Value::Bool(false)) => {}
                Some(Value::Object(_)) => {}
                _ if passthrough => {}
                other => panic!("values.schema.json {path}: additionalProperties is {other:?}"),
            }
            if m.contains_key("properties") {
                assert!(
                    m.get("additionalProperties") == Some(&Value::Bool(false))
                        || path.ends_with("extraVolumes[]"),
                    "values.schema.json {path}: an object with properties must refuse others"
                );
            }
        }
        for (k, v) in m {
            match k.as_str() {
                "properties" => {
                    for (name, sub) in v.as_object().unwrap() {
                        walk(sub, &format!("{path}.{name}"), objects);
                    }
                }
                "items" => walk(v, &format!("{path}[]"), objects),
                "additionalProperties" => walk(v, &format!("{path}.*"), objects),
                "anyOf" | "oneOf" | "allOf" => {
                    for sub in v.as_array().unwrap() {
                        walk(sub, path, objects);
                    }
                }
                _ => {}
            }
        }
    }
    let mut objects = 0;
    walk(&schema, "", &mut objects);
    assert!(objects > 30, "values.schema.json: only {objects} object schemas");

    // Every key of values.yaml is described by the schema.
    let mut values = BTreeMap::new();
    leaves(&chart_values(), "", &mut values);
    for key in values.keys() {
        let found = key.split('.').try_fold(&schema, |s, k| s.get("properties").and_then(|p| p.get(k)));
        assert!(found.is_some(), "values.schema.json does not describe {key}");
    }
}

/// The dashboards and rules exist once, in the chart (what it ships); the project's top-level
/// paths are links to them, so they cannot drift apart.
#[test]
fn top_level_dashboards_and_rules_are_the_charts() {
    for (link, source) in [
        ("dashboards", "charts/dyce/dashboards"),
        ("observability/rules/dyce.rules.yaml", "charts/dyce/rules/dyce.rules.yaml"),
    ] {
        let meta = std::fs::symlink_metadata(repo().join(link)).unwrap_or_else(|e| panic!("{link}: {e}"));
        assert!(meta.file_type().is_symlink(), "{link} must be a link to {source}, not a copy");
        let (a, b) = (repo().join(link).canonicalize().unwrap(), repo().join(source).canonicalize().unwrap());
        assert_eq!(a, b, "{link} must point at {source}");
    }
    assert!(!project_files("charts/dyce/dashboards", "json").is_empty(), "no dashboards in the chart");
}
