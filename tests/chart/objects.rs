//! Checks of the other objects a chart renders: network policy, SloPolicy, monitors, alert
//! rules and the dashboards ConfigMap.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::render::*;
use super::*;

fn selects_component(p: &NetworkPolicyPeer, component: &str) -> bool {
    p.pod_selector
        .as_ref()
        .and_then(|s| s.match_labels.as_ref())
        .is_some_and(|l| l.get("app.kubernetes.io/component").map(String::as_str) == Some(component))
}

/// Data and gRPC ports open to every peer; the admin port to the controller only; the metrics
/// port to Prometheus exactly when something scrapes it, and to the test pod.
pub fn check_network_policy(r: &Rendered, np: &NetworkPolicy, what: &str) {
    let spec = np.spec.as_ref().unwrap();
    assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_string()][..]), "{what}: policyTypes");
    let rules = spec.ingress.as_deref().unwrap_or_default();
    let has_port = |rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule, name: &str| {
        rule.ports.iter().flatten().any(|p| matches!(&p.port, Some(IntOrString::String(s)) if s == name))
    };
    let peers = |name: &str| -> Vec<&NetworkPolicyPeer> {
        let with_port: Vec<_> = rules.iter().filter(|rule| has_port(rule, name)).collect();
        for rule in &with_port {
            assert!(
                rule.from.as_ref().is_some_and(|f| !f.is_empty()),
                "{what}: port {name} open to every peer"
            );
        }
        with_port.iter().flat_map(|rule| rule.from.iter().flatten()).collect()
    };
    let admin = peers("admin");
    assert!(!admin.is_empty(), "{what}: no rule for the admin port");
    assert!(
        admin.iter().all(|p| selects_component(p, "controller")),
        "{what}: the admin port admits more than the controller: {admin:?}"
    );
    let scrapers: Vec<_> = peers("metrics").into_iter().filter(|p| !selects_component(p, "test")).collect();
    let monitors = r.count("PodMonitor") + r.count("ServiceMonitor");
    let scraped = monitors > 0 || r.flag("networkPolicy.prometheus.enabled") == Some(true);
    assert_eq!(
        !scrapers.is_empty(),
        scraped,
        "{what}: Prometheus admitted to the metrics port: {scrapers:?}"
    );
    for p in &scrapers {
        let labels = p.pod_selector.as_ref().and_then(|s| s.match_labels.as_ref());
        let ns = p.namespace_selector.as_ref().and_then(|s| s.match_labels.as_ref());
        assert!(
            labels.is_some_and(|l| !l.is_empty()) || ns.is_some_and(|l| !l.is_empty()),
            "{what}: the metrics port admits every pod: {p:?}"
        );
    }
    let open =
        |name: &str| rules.iter().any(|r| has_port(r, name) && r.from.as_ref().is_none_or(|f| f.is_empty()));
    assert!(open("http"), "{what}: the data port is not open to every peer");
    let grpc = r.value("runtime.grpc.enabled").and_then(Value::as_bool) != Some(false);
    assert_eq!(open("grpc"), grpc, "{what}: the gRPC port open exactly when runtime.grpc.enabled");
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
    let metrics_secret = r.value("runtime.metrics.token.existingSecret").and_then(Value::as_str);
    for e in endpoints {
        // Both components serve /metrics on a port named "metrics": the runtime's read-only
        // listener, never its admin port, so Prometheus holds no credential that can switch.
        assert_eq!(e["port"], "metrics", "{what}: port");
        assert_eq!(e["path"], "/metrics", "{what}: path");
        let job = e["relabelings"].as_array().and_then(|rs| rs.iter().find(|x| x["targetLabel"] == "job"));
        let job = job.and_then(|x| x["replacement"].as_str());
        // The rules and dashboards expect these job names.
        if name_of(obj).ends_with("-runtime") {
            assert_eq!(job, Some("dyce-runtime"), "{what}: job label");
            let secret = e["authorization"]["credentials"]["name"].as_str();
            assert_eq!(secret, metrics_secret.filter(|s| !s.is_empty()), "{what}: the metrics token, if any");
            if secret.is_some() {
                assert_eq!(e["authorization"]["type"], "Bearer", "{what}: bearer token");
                assert!(e["authorization"]["credentials"]["key"].is_string(), "{what}: token key");
            }
        } else {
            assert_eq!(job, Some("dyce-controller"), "{what}: job label");
            assert!(e.get("authorization").is_none(), "{what}: the controller needs no credential");
        }
    }
}

/// The HPA scales the runtime Deployment on the controller's desired replicas of one policy.
pub fn check_hpa(r: &Rendered, hpa: &HorizontalPodAutoscaler, what: &str) {
    assert_eq!(r.flag("autoscaling.hpa.enabled"), Some(true), "{what}: rendered while not enabled");
    let spec = hpa.spec.as_ref().unwrap();
    assert_eq!(spec.scale_target_ref.kind, "Deployment", "{what}: target kind");
    assert!(
        spec.scale_target_ref.name.ends_with("-runtime"),
        "{what}: target {}",
        spec.scale_target_ref.name
    );
    assert!(spec.min_replicas.unwrap_or(1) <= spec.max_replicas, "{what}: min above max");
    let metrics = spec.metrics.as_deref().unwrap_or_default();
    assert_eq!(metrics.len(), 1, "{what}: one metric");
    let ext = metrics[0].external.as_ref().unwrap_or_else(|| panic!("{what}: not an External metric"));
    let policy =
        ext.metric.selector.as_ref().and_then(|s| s.match_labels.as_ref()).and_then(|l| l.get("policy"));
    assert!(policy.is_some_and(|p| !p.is_empty()), "{what}: selects no policy");
    assert_eq!(ext.target.type_, "AverageValue", "{what}: target type");
    assert_eq!(ext.target.average_value.as_ref().map(|q| q.0.as_str()), Some("1"), "{what}: averageValue");
}

/// KEDA's ScaledObject (a CRD: checked by hand) scales the runtime Deployment on a Prometheus
/// query of the controller's desired replicas.
pub fn check_scaled_object(r: &Rendered, obj: &Value, what: &str) {
    assert_eq!(r.flag("autoscaling.keda.enabled"), Some(true), "{what}: rendered while not enabled");
    let spec = &obj["spec"];
    assert!(
        spec["scaleTargetRef"]["name"].as_str().is_some_and(|n| n.ends_with("-runtime")),
        "{what}: target"
    );
    let (min, max) = (spec["minReplicaCount"].as_u64(), spec["maxReplicaCount"].as_u64());
    assert!(min.zip(max).is_some_and(|(a, b)| a <= b), "{what}: replica bounds {min:?} {max:?}");
    let triggers = spec["triggers"].as_array().unwrap_or_else(|| panic!("{what}: no triggers"));
    assert_eq!(triggers.len(), 1, "{what}: one trigger");
    let t = &triggers[0];
    assert_eq!(t["type"], "prometheus", "{what}: trigger type");
    assert_eq!(t["metricType"], "AverageValue", "{what}: metricType");
    let query = t["metadata"]["query"].as_str().unwrap_or_default();
    assert!(query.contains("dyce_controller_desired_replicas{"), "{what}: query {query}");
    assert!(query.contains(&format!("namespace=\"{NAMESPACE}\"")), "{what}: query {query}");
    assert!(
        t["metadata"]["serverAddress"].as_str().is_some_and(|a| a.starts_with("http")),
        "{what}: serverAddress"
    );
    assert_eq!(t["metadata"]["threshold"], "1", "{what}: threshold (a string, as KEDA wants)");
    for key in spec.as_object().unwrap().keys() {
        let known = [
            "scaleTargetRef",
            "minReplicaCount",
            "maxReplicaCount",
            "pollingInterval",
            "cooldownPeriod",
            "advanced",
            "triggers",
        ];
        assert!(known.contains(&key.as_str()), "{what}: spec.{key} is not a ScaledObject field");
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
