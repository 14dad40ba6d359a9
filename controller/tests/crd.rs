//! The SloPolicy CRD: the chart's copy is what `dyce crd` prints, it is a valid CRD with a status
//! subresource and printer columns that point at real fields, and the shipped policy files fit
//! its schema (the same YAML is a file and a resource).

use std::path::PathBuf;

use dyce_controller::kube::resource::crd_yaml;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn chart_copy_is_what_dyce_crd_prints() {
    let path = root().join("charts/dyce/crds/slopolicy.yaml");
    let want = crd_yaml();
    if std::env::var_os("DYCE_UPDATE_CRD").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: regenerate with `dyce crd > charts/dyce/crds/slopolicy.yaml` \
         (or DYCE_UPDATE_CRD=1 cargo test -p dyce-controller --test crd)",
        path.display()
    );
}

fn crd() -> CustomResourceDefinition {
    serde_norway::from_str(&crd_yaml()).expect("the CRD parses as a CustomResourceDefinition")
}

fn schema() -> JSONSchemaProps {
    let v = &crd().spec.versions[0];
    v.schema.as_ref().unwrap().open_api_v3_schema.clone().unwrap()
}

/// The schema node at a dotted path (`.status.config`), if every step is a declared property.
fn at<'a>(s: &'a JSONSchemaProps, path: &str) -> Option<&'a JSONSchemaProps> {
    path.trim_start_matches('.').split('.').try_fold(s, |node, key| node.properties.as_ref()?.get(key))
}

#[test]
fn crd_is_namespaced_with_status_and_columns_on_real_fields() {
    let c = crd();
    assert_eq!(c.metadata.name.as_deref(), Some("slopolicies.dyce.dev"));
    assert_eq!(c.spec.group, "dyce.dev");
    assert_eq!(c.spec.scope, "Namespaced");
    assert_eq!(c.spec.names.kind, "SloPolicy");
    let v = &c.spec.versions[0];
    assert_eq!((v.name.as_str(), v.served, v.storage), ("v1alpha1", true, true));
    assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "status subresource");
    let s = schema();
    let cols = v.additional_printer_columns.as_ref().unwrap();
    let names: Vec<_> = cols.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Config", "Latency", "Runtimes", "State", "Age"]);
    for col in cols.iter().filter(|c| !c.json_path.starts_with(".metadata")) {
        let node = at(&s, &col.json_path)
            .unwrap_or_else(|| panic!("column {} -> {} not in the schema", col.name, col.json_path));
        assert_eq!(node.type_.as_deref(), Some(col.type_.as_str()), "column {} type", col.name);
    }
    for field in [
        ".spec.selector.matchLabels",
        ".spec.objective.latency.threshold",
        ".spec.accuracyFloor",
        ".spec.maxAccuracyDrop",
        ".status.conditions",
    ] {
        assert!(at(&s, field).is_some(), "{field} in the schema");
    }
    // Kubernetes rejects schemas that are not structural; the usual offenders must be absent.
    let text = crd_yaml();
    for forbidden in ["additionalProperties: false", "$ref", "definitions", "uniqueItems"] {
        assert!(!text.contains(forbidden), "CRD schema contains {forbidden}");
    }
}

/// Every key of `v` is declared in `s` (recursively), as the API server's pruning would demand.
fn check_fits(s: &JSONSchemaProps, v: &serde_json::Value, path: &str) {
    match v {
        serde_json::Value::Object(m) => {
            let open = s.additional_properties.is_some() || s.x_kubernetes_preserve_unknown_fields == Some(true);
            for (k, child) in m {
                match s.properties.as_ref().and_then(|p| p.get(k)) {
                    Some(cs) => check_fits(cs, child, &format!("{path}.{k}")),
                    None => assert!(open, "{path}.{k} is not in the CRD schema (it would be pruned)"),
                }
            }
        }
        serde_json::Value::Array(items) => {
            if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(item)) = &s.items {
                for (i, x) in items.iter().enumerate() {
                    check_fits(item, x, &format!("{path}[{i}]"));
                }
            }
        }
        _ => {}
    }
}

#[test]
fn shipped_policy_files_fit_the_crd_schema() {
    let s = schema();
    let spec_schema = at(&s, ".spec").unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let doc: serde_json::Value =
                serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            check_fits(spec_schema, &doc["spec"], &format!("{}: spec", path.display()));
            n += 1;
        }
    }
    assert!(n >= 1);
}
