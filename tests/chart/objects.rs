//! Checks of the other objects a chart renders: network policy, SloPolicy, monitors, alert
//! rules and the dashboards ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::render::*;
use super::*;

pub fn check_network_policy(np: &NetworkPolicy, what: &str) {
    let spec = np.spec.as_ref().unwrap();
    assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_string()][..]), "{what}: policyTypes");
    let rules = spec.ingress.as_deref().unwrap_or_default();
    let has_port = |rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule, name: &str| {
        rule.ports.iter().flatten().any(|p| matches!(&p.port, Some(IntOrString::String(s)) if s == name))
    };
    let mut admin_rules = 0;
    for rule in rules {
        if has_port(rule, "admin") {
            admin_rules += 1;
            let from = rule.from.as_deref().unwrap_or_default();
            assert!(!from.is_empty(), "{what}: the admin port is open to every peer");
            let controller = from.iter().any(|p| {
                p.pod_selector.as_ref().and_then(|s| s.match_labels.as_ref()).is_some_and(|l| {
                    l.get("app.kubernetes.io/component").map(String::as_str) == Some("controller")
                })
            });
            assert!(controller, "{what}: the controller may not reach the admin port");
        }
    }
    assert_eq!(admin_rules, 1, "{what}: one rule for the admin port");
    let open = rules.iter().any(|r| has_port(r, "http") && r.from.as_ref().is_none_or(|f| f.is_empty()));
    assert!(open, "{what}: the data port is not open to every peer");
}

pub fn check_slo_policy(obj: &Value, what: &str) {
    assert!(obj["spec"].get("runtimes").is_none(), "{what}: spec.runtimes is local mode only");
    assert!(
        obj["spec"]["selector"]["matchLabels"].as_object().is_some_and(|m| !m.is_empty()),
        "{what}: selector"
    );
    // The controller's own parser: unknown fields, ranges and durations as `dyce policy check`.
    let text = serde_json::to_string(obj).unwrap();
    let doc =
        dyce_control_core::policy::PolicyDocument::parse(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(doc.metadata.namespace.as_deref(), Some(NAMESPACE), "{what}: namespace");
}

pub fn check_monitor(r: &Rendered, obj: &Value, what: &str) {
    let kind = kind_of(obj).1;
    let key = if kind == "ServiceMonitor" { "serviceMonitor" } else { "podMonitor" };
    assert_eq!(
        r.flag(&format!("monitoring.{key}.enabled")),
        Some(true),
        "{what}: rendered while not enabled"
    );
    check_additional_labels(r, obj, &format!("monitoring.{key}.additionalLabels"), what);
    let spec = &obj["spec"];
    assert!(spec["selector"]["matchLabels"].as_object().is_some_and(|m| !m.is_empty()), "{what}: selector");
    let endpoints = if kind == "ServiceMonitor" { &spec["endpoints"] } else { &spec["podMetricsEndpoints"] };
    let endpoints = endpoints.as_array().unwrap_or_else(|| panic!("{what}: no endpoints"));
    assert!(!endpoints.is_empty(), "{what}: no endpoints");
    for e in endpoints {
        let port = e["port"].as_str().unwrap_or_else(|| panic!("{what}: endpoint without a port name"));
        assert_eq!(e["path"], "/metrics", "{what}: path");
        let job = e["relabelings"].as_array().and_then(|rs| rs.iter().find(|x| x["targetLabel"] == "job"));
        let job = job.and_then(|x| x["replacement"].as_str());
        match port {
            // The rules and dashboards expect these job names; the admin port needs the token.
            "admin" => {
                assert_eq!(job, Some("dyce-runtime"), "{what}: job label");
                assert_eq!(e["authorization"]["type"], "Bearer", "{what}: bearer token");
                assert!(e["authorization"]["credentials"]["name"].is_string(), "{what}: token Secret");
                assert!(e["authorization"]["credentials"]["key"].is_string(), "{what}: token key");
            }
            "metrics" => assert_eq!(job, Some("dyce-controller"), "{what}: job label"),
            other => panic!("{what}: unexpected port {other}"),
        }
    }
}

pub fn check_additional_labels(r: &Rendered, obj: &Value, key: &str, what: &str) {
    if let Some(Value::Object(extra)) = r.value(key) {
        for (k, v) in extra {
            assert_eq!(&obj["metadata"]["labels"][k], v, "{what}: additional label {k}");
        }
    }
}

pub fn check_prometheus_rule(r: &Rendered, obj: &Value, what: &str) {
    check_additional_labels(r, obj, "monitoring.prometheusRule.additionalLabels", what);
    let project =
        yaml_to_json(&std::fs::read_to_string(repo().join("charts/dyce/rules/dyce.rules.yaml")).unwrap());
    assert_eq!(obj["spec"], project, "{what}: spec is not the project's rules");
    let groups = obj["spec"]["groups"].as_array().unwrap_or_else(|| panic!("{what}: no groups"));
    assert!(!groups.is_empty(), "{what}: no groups");
    for g in groups {
        for rule in g["rules"].as_array().unwrap() {
            assert!(rule["expr"].is_string(), "{what}: a rule without expr");
            assert!(rule["record"].is_string() ^ rule["alert"].is_string(), "{what}: record or alert");
        }
    }
}

pub fn check_dashboards_configmap(r: &Rendered, c: &ConfigMap, what: &str) {
    assert_eq!(r.flag("monitoring.dashboards.enabled"), Some(true), "{what}: rendered while not enabled");
    let labels = c.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("grafana_dashboard").map(String::as_str),
        Some("1"),
        "{what}: grafana_dashboard label"
    );
    let data = c.data.clone().unwrap_or_default();
    let project = project_files("charts/dyce/dashboards", "json");
    assert_eq!(data.keys().collect::<Vec<_>>(), project.keys().collect::<Vec<_>>(), "{what}: dashboards");
    for (name, bytes) in project {
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(
            data[&name].trim_end(),
            text.trim_end(),
            "{what}: {name} differs from charts/dyce/dashboards/{name}"
        );
        let _: Value = serde_json::from_str(&data[&name]).unwrap_or_else(|e| panic!("{what}: {name}: {e}"));
    }
    if let Some(ns) =
        r.value("monitoring.dashboards.namespace").and_then(Value::as_str).filter(|s| !s.is_empty())
    {
        assert_eq!(c.metadata.namespace.as_deref(), Some(ns), "{what}: namespace");
    }
}

/// The files of `dir` (under the repository root) ending in `.ext`, by name.
pub fn project_files(dir: &str, ext: &str) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}
