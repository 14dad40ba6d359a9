//! Running helm, splitting its output, and the round trip through the k8s-openapi types.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::serde::de::DeserializeOwned;
use k8s_openapi::serde::{Deserialize, Serialize};
use serde_json::Value;

use super::*;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart() -> PathBuf {
    repo().join("charts/dyce")
}

/// helm: `$DYCE_HELM`, else what `scripts/ci/install_helm.sh` installed, else `helm` on PATH.
pub fn helm() -> PathBuf {
    if let Some(p) = std::env::var_os("DYCE_HELM") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "DYCE_HELM={} is not a file", p.display());
        return p;
    }
    let installed = repo().join("target/tools/bin/helm");
    if installed.is_file() {
        return installed;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("helm");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "helm not found: run scripts/ci/install_helm.sh (installs {}), set DYCE_HELM, or put helm on PATH",
        installed.display()
    );
}

pub fn run_helm(args: &[&str]) -> Output {
    let helm = helm();
    Command::new(&helm)
        .args(args)
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("dyce-chart-test-helm/cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("dyce-chart-test-helm/config"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("dyce-chart-test-helm/data"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", helm.display()))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The value sets: `None` for the defaults, then every `charts/dyce/ci/*.yaml`.
pub fn value_sets() -> Vec<Option<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("charts/dyce/ci")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let names: BTreeSet<String> =
        files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for required in [
        "sidecar-values.yaml",
        "monitoring-values.yaml",
        "namespaced-values.yaml",
        "model-pvc-values.yaml",
        "model-image-values.yaml",
        "hpa-values.yaml",
        "keda-values.yaml",
        "openshift-values.yaml",
        "live-accuracy-values.yaml",
    ] {
        assert!(names.contains(required), "charts/dyce/ci/{required} is missing");
    }
    std::iter::once(None).chain(files.into_iter().map(Some)).collect()
}

pub fn label(values: &Option<PathBuf>) -> String {
    values.as_ref().map_or("default values".into(), |p| p.file_name().unwrap().to_string_lossy().into())
}

/// A value set as JSON (empty object for the defaults).
pub fn values_of(values: &Option<PathBuf>) -> Value {
    match values {
        None => Value::Object(Default::default()),
        Some(p) => yaml_to_json(&std::fs::read_to_string(p).unwrap()),
    }
}

pub fn yaml_to_json(text: &str) -> Value {
    let v: Value = serde_norway::from_str(text).unwrap_or_else(|e| panic!("YAML: {e}"));
    if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    }
}

/// Every document of a multi-document YAML stream, empty ones left out.
pub fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn render(values: &Option<PathBuf>) -> Vec<Value> {
    let chart = chart();
    let mut args =
        vec!["template", RELEASE, chart.to_str().unwrap(), "--namespace", NAMESPACE, "--include-crds"];
    if let Some(v) = values {
        args.extend(["-f", v.to_str().unwrap()]);
    }
    let out = run_helm(&args);
    assert!(out.status.success(), "helm template ({}) failed:\n{}", label(values), text(&out.stderr));
    let docs = documents(&text(&out.stdout));
    assert!(!docs.is_empty(), "helm template ({}) rendered nothing", label(values));
    docs
}

pub fn kind_of(obj: &Value) -> (&str, &str) {
    (obj["apiVersion"].as_str().unwrap_or(""), obj["kind"].as_str().unwrap_or(""))
}

pub fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

pub fn describe(obj: &Value) -> String {
    let (api, kind) = kind_of(obj);
    format!("{api} {kind} {}", name_of(obj))
}

// ---------------------------------------------------------------------------------------------
// Round trip through the k8s-openapi types.

/// Removes null members (a rendered `key: null` means "not set", as for the API server).
pub fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

pub fn is_empty_collection(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.is_empty()) || matches!(v, Value::Object(m) if m.is_empty())
}

/// The first place where `back` (after the round trip) lost or changed something of `orig`.
pub fn first_difference(orig: &Value, back: &Value, path: &str) -> Option<String> {
    match (orig, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(vb) => {
                        if let Some(d) = first_difference(va, vb, &p) {
                            return Some(d);
                        }
                    }
                    None if is_empty_collection(va) => {}
                    None => return Some(format!("{p} was dropped: not a field of this type")),
                }
            }
            b.keys().find(|k| !a.contains_key(*k)).map(|k| format!("{path}.{k} appeared in the round trip"))
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(format!("{path}: {} items became {}", a.len(), b.len()));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]")))
        }
        // Quantities may be written as numbers; k8s-openapi keeps them as strings.
        (Value::Number(n), Value::String(s)) if n.to_string() == *s => None,
        (a, b) if a == b => None,
        (a, b) => Some(format!("{path}: {a} became {b}")),
    }
}

/// Deserialises into `T` and checks that serialising it again gives the same object.
pub fn typed<T: DeserializeOwned + Serialize>(obj: &Value) -> T {
    let what = describe(obj);
    let value: T = serde_json::from_value(obj.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&value).unwrap();
    if let Some(d) = first_difference(&strip_nulls(obj.clone()), &back, "") {
        panic!("{what}: {d}");
    }
    value
}

/// One value set's rendered objects.
pub struct Rendered {
    pub name: String,
    pub values: Value,
    pub objects: Vec<Value>,
}

impl Rendered {
    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| kind_of(o).1 == kind).collect()
    }

    pub fn count(&self, kind: &str) -> usize {
        self.of_kind(kind).len()
    }

    /// A value of the set as given (not merged with the defaults).
    pub fn value(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(&self.values, |v, k| v.get(k))
    }

    pub fn flag(&self, path: &str) -> Option<bool> {
        self.value(path).and_then(Value::as_bool)
    }
}
