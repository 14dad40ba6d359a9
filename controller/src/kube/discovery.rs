//! Which pods a policy steers, and where their admin ports are.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

/// Name of the container port that carries a runtime's admin API.
pub const ADMIN_PORT_NAME: &str = "admin";

/// A runtime pod a policy steers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuntimeEndpoint {
    /// Pod name.
    pub pod: String,
    /// Admin URL, e.g. `http://10.0.0.7:9090`.
    pub url: String,
}

fn is_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    status.phase.as_deref() == Some("Running")
        && status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The admin port: the container port named `admin`, else `fallback`.
fn admin_port(pod: &Pod, fallback: u16) -> u16 {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(fallback)
}

fn matches(pod: &Pod, namespace: &str, selector: &BTreeMap<String, String>) -> bool {
    let meta = &pod.metadata;
    let labels = meta.labels.as_ref();
    meta.namespace.as_deref() == Some(namespace)
        && meta.deletion_timestamp.is_none()
        && selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Ready pods in `namespace` whose labels include `selector`, sorted by name. Pods without an
/// IP, not running, not ready or being deleted are left out: a terminating runtime finishes its
/// queue on its current config and must not be counted as capacity.
pub fn runtime_endpoints<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    namespace: &str,
    selector: &BTreeMap<String, String>,
    fallback_port: u16,
) -> Vec<RuntimeEndpoint> {
    let mut out: Vec<RuntimeEndpoint> = pods
        .into_iter()
        .filter(|p| matches(p, namespace, selector) && is_ready(p))
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.as_deref()?;
            let port = admin_port(p, fallback_port);
            let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
            Some(RuntimeEndpoint { pod: p.metadata.name.clone()?, url: format!("http://{host}:{port}") })
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ns: &str, app: &str, ip: Option<&str>, ready: bool, admin: Option<i32>) -> Pod {
        let ports: Vec<_> = admin
            .map(|p| {
                vec![
                    json!({"name": "admin", "containerPort": p}),
                    json!({"name": "http", "containerPort": 8080}),
                ]
            })
            .unwrap_or_else(|| vec![json!({"name": "http", "containerPort": 8080})]);
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
            "spec": {"containers": [{"name": "dyce", "ports": ports}]},
            "status": {
                "phase": "Running",
                "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
            }
        }))
        .unwrap()
    }

    fn sel(app: &str) -> BTreeMap<String, String> {
        [("app".to_string(), app.to_string())].into()
    }

    #[test]
    fn ready_matching_pods_with_named_or_fallback_port() {
        let pods = [
            pod("b", "ns", "rt", Some("10.0.0.2"), true, None),
            pod("a", "ns", "rt", Some("10.0.0.1"), true, Some(9191)),
            pod("c", "ns", "rt", Some("10.0.0.3"), false, Some(9090)),
            pod("d", "ns", "other", Some("10.0.0.4"), true, Some(9090)),
            pod("e", "other-ns", "rt", Some("10.0.0.5"), true, Some(9090)),
            pod("f", "ns", "rt", None, true, Some(9090)),
            pod("g", "ns", "rt", Some("fd00::7"), true, Some(9090)),
        ];
        let got = runtime_endpoints(&pods, "ns", &sel("rt"), 9090);
        let urls: Vec<_> = got.iter().map(|e| (e.pod.as_str(), e.url.as_str())).collect();
        assert_eq!(
            urls,
            [("a", "http://10.0.0.1:9191"), ("b", "http://10.0.0.2:9090"), ("g", "http://[fd00::7]:9090")]
        );
    }

    #[test]
    fn terminating_pods_are_left_out() {
        let mut p = pod("a", "ns", "rt", Some("10.0.0.1"), true, Some(9090));
        p.metadata.deletion_timestamp = Some(serde_json::from_value(json!("2026-11-29T12:00:00Z")).unwrap());
        assert!(runtime_endpoints([&p], "ns", &sel("rt"), 9090).is_empty());
    }
}
