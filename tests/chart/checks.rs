//! What every rendered value set must satisfy.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::objects::*;
use super::pods::*;
use super::render::*;

// ---------------------------------------------------------------------------------------------
// What every rendered value set must satisfy.

pub fn check_rendered(r: &Rendered) {
    let ctx = &r.name;
    let mut names = BTreeSet::new();
    let mut pods: Vec<(String, BTreeMap<String, String>, PodSpec)> = vec![];
    let mut rbac_rules: Vec<(String, Vec<PolicyRule>)> = vec![];
    let mut secrets = BTreeSet::new();
    let mut service_accounts = BTreeSet::new();
    let mut bindings: Vec<(String, String, Vec<String>)> = vec![];

    for obj in &r.objects {
        let what = format!("{ctx}: {}", describe(obj));
        assert!(names.insert(describe(obj)), "{what}: rendered twice");
        let name = name_of(obj);
        assert!(!name.is_empty() && name.len() <= 63, "{what}: bad metadata.name");
        let (api, kind) = kind_of(obj);
        let cluster_scoped =
            matches!(kind, "ClusterRole" | "ClusterRoleBinding" | "CustomResourceDefinition");
        let ns = obj["metadata"]["namespace"].as_str();
        if cluster_scoped {
            assert_eq!(ns, None, "{what}: a cluster-scoped object has no namespace");
        } else {
            assert!(ns.is_some(), "{what}: no metadata.namespace");
        }
        match (api, kind) {
            ("apps/v1", "Deployment") => {
                let d: Deployment = typed(obj);
                let spec = d.spec.unwrap();
                let template_labels = spec.template.metadata.and_then(|m| m.labels).unwrap_or_default();
                for (k, v) in spec.selector.match_labels.unwrap_or_default() {
                    assert_eq!(
                        template_labels.get(&k),
                        Some(&v),
                        "{what}: selector label {k} not on the pods"
                    );
                }
                pods.push((what, template_labels, spec.template.spec.unwrap()));
            }
            ("v1", "Service") => {
                let s: Service = typed(obj);
                let spec = s.spec.unwrap();
                for p in spec.ports.iter().flatten() {
                    let target = |name: &str, port: i32| {
                        matches!(&p.target_port, Some(IntOrString::String(t)) if t == name)
                            || matches!(&p.target_port, Some(IntOrString::Int(n)) if *n == port)
                    };
                    // The admin port can switch configurations: reached pod by pod, never through
                    // a Service.
                    assert!(!target("admin", 9090), "{what}: the admin port in a Service");
                    if target("metrics", 9091) && !name.ends_with("-controller") {
                        // Only the headless Service that lists the runtime pods' metrics ports.
                        assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "{what}: metrics Service");
                    }
                }
            }
            ("v1", "Pod") => {
                // Only `helm test` hooks; a hook pod runs under the same profile as the rest.
                let p: Pod = typed(obj);
                let hook = p.metadata.annotations.as_ref().and_then(|a| a.get("helm.sh/hook"));
                assert_eq!(
                    hook.map(String::as_str),
                    Some("test"),
                    "{what}: a bare Pod that is not a test hook"
                );
                assert_ne!(r.flag("tests.enabled"), Some(false), "{what}: rendered with tests.enabled=false");
                pods.push((what, p.metadata.labels.unwrap_or_default(), p.spec.unwrap()));
            }
            ("autoscaling/v2", "HorizontalPodAutoscaler") => {
                check_hpa(r, &typed::<HorizontalPodAutoscaler>(obj), &what)
            }
            ("keda.sh/v1alpha1", "ScaledObject") => check_scaled_object(r, obj, &what),
            ("v1", "ServiceAccount") => {
                typed::<ServiceAccount>(obj);
                service_accounts.insert(name.to_string());
            }
            ("v1", "Secret") => {
                let s: Secret = typed(obj);
                let token = s.data.as_ref().and_then(|d| d.get("token"));
                let token = token.unwrap_or_else(|| panic!("{what}: no token"));
                assert!(token.0.len() >= 32, "{what}: token shorter than 32 bytes");
                secrets.insert(name.to_string());
            }
            ("v1", "ConfigMap") => {
                let c: ConfigMap = typed(obj);
                check_dashboards_configmap(r, &c, &what);
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => rbac_rules
                .push((format!("ClusterRole/{name}"), typed::<ClusterRole>(obj).rules.unwrap_or_default())),
            ("rbac.authorization.k8s.io/v1", "Role") => {
                rbac_rules.push((format!("Role/{name}"), typed::<Role>(obj).rules.unwrap_or_default()))
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                let b: ClusterRoleBinding = typed(obj);
                let subjects = b.subjects.unwrap_or_default().into_iter().map(|s| s.name).collect();
                bindings.push((what, format!("{}/{}", b.role_ref.kind, b.role_ref.name), subjects));
            }
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
                let b: RoleBinding = typed(obj);
                let subjects = b.subjects.unwrap_or_default().into_iter().map(|s| s.name).collect();
                bindings.push((what, format!("{}/{}", b.role_ref.kind, b.role_ref.name), subjects));
            }
            ("networking.k8s.io/v1", "NetworkPolicy") => check_network_policy(r, &typed(obj), &what),
            ("policy/v1", "PodDisruptionBudget") => {
                let p: PodDisruptionBudget = typed(obj);
                let spec = p.spec.unwrap();
                assert!(
                    spec.selector.and_then(|s| s.match_labels).is_some_and(|l| !l.is_empty()),
                    "{what}: selector"
                );
                assert!(spec.max_unavailable.is_some() ^ spec.min_available.is_some(), "{what}: budget");
            }
            ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
                let crd: CustomResourceDefinition = typed(obj);
                assert_eq!(name, "slopolicies.dyce.dev", "{what}");
                assert_eq!(crd.spec.group, "dyce.dev", "{what}: group");
                assert_eq!(crd.spec.names.kind, "SloPolicy", "{what}: kind");
                assert_eq!(crd.spec.scope, "Namespaced", "{what}: scope");
                let v = crd.spec.versions.iter().find(|v| v.name == "v1alpha1");
                let v = v.unwrap_or_else(|| panic!("{what}: no v1alpha1"));
                assert!(v.served && v.storage, "{what}: v1alpha1 served and stored");
                assert!(
                    v.subresources.as_ref().is_some_and(|s| s.status.is_some()),
                    "{what}: status subresource"
                );
            }
            ("dyce.dev/v1alpha1", "SloPolicy") => check_slo_policy(obj, &what),
            ("monitoring.coreos.com/v1", "ServiceMonitor" | "PodMonitor") => check_monitor(r, obj, &what),
            ("monitoring.coreos.com/v1", "PrometheusRule") => check_prometheus_rule(r, obj, &what),
            _ => panic!("{what}: a kind this test does not know; add a check for it"),
        }
    }

    // Pods: the restricted profile everywhere, the runtime and controller containers as the
    // binary expects them, token volumes pointing at the Secret.
    let existing = r.value("adminToken.existingSecret").and_then(Value::as_str).filter(|s| !s.is_empty());
    let namespaced = r.flag("controller.rbac.namespaced") == Some(true);
    let (mut runtimes, mut controllers) = (0, 0);
    for (what, _, pod) in &pods {
        check_restricted(pod, what);
        for c in &pod.containers {
            let what = format!("{what} container {}", c.name);
            if is_runtime(c) {
                runtimes += 1;
                check_runtime_container(c, pod, &what);
            }
            if is_controller(c) {
                controllers += 1;
                check_controller_container(c, pod, namespaced, &what);
            }
        }
        for v in pod.volumes.iter().flatten() {
            if let Some(name) = v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
                if v.name == "dyce-metrics-token" {
                    let want = r.value("runtime.metrics.token.existingSecret").and_then(Value::as_str);
                    assert_eq!(Some(name), want, "{what}: the metrics token's Secret");
                    continue;
                }
                match existing {
                    Some(e) => assert_eq!(name, e, "{what}: volume {}", v.name),
                    None => assert!(secrets.contains(name), "{what}: volume {} names Secret {name}", v.name),
                }
            }
        }
    }
    let want_runtime =
        r.flag("runtime.enabled") != Some(false) || r.flag("sidecarExample.enabled") == Some(true);
    assert_eq!(runtimes > 0, want_runtime, "{ctx}: runtime containers rendered: {runtimes}");
    assert_eq!(controllers, usize::from(r.flag("controller.enabled") != Some(false)), "{ctx}: controller");
    match existing {
        Some(_) => {
            assert!(secrets.is_empty(), "{ctx}: a Secret rendered although adminToken.existingSecret is set")
        }
        None => assert_eq!(secrets.len(), 1, "{ctx}: the admin token Secret"),
    }

    // RBAC: the controller's rules, bound to its ServiceAccount; namespaced when asked.
    if controllers > 0 && r.flag("controller.rbac.create") != Some(false) {
        let all: Vec<PolicyRule> = rbac_rules.iter().flat_map(|(_, rules)| rules.clone()).collect();
        check_controller_rules(&all, ctx);
        assert!(has_rule(&all, "coordination.k8s.io", "leases", &["create"]), "{ctx}: lease create");
        assert!(
            has_rule(&all, "coordination.k8s.io", "leases", &["get", "update"]),
            "{ctx}: lease get/update"
        );
        let cluster = r.count("ClusterRole") + r.count("ClusterRoleBinding");
        if namespaced {
            assert_eq!(cluster, 0, "{ctx}: namespaced RBAC renders no ClusterRole or ClusterRoleBinding");
        } else {
            assert_eq!(
                (r.count("ClusterRole"), r.count("ClusterRoleBinding")),
                (1, 1),
                "{ctx}: cluster RBAC"
            );
        }
        let roles: BTreeSet<&str> = rbac_rules.iter().map(|(n, _)| n.as_str()).collect();
        for (what, role, subjects) in &bindings {
            assert!(roles.contains(role.as_str()), "{what}: binds {role}, which is not rendered");
            for s in subjects {
                assert!(service_accounts.contains(s), "{what}: subject {s} is not a rendered ServiceAccount");
            }
        }
        assert_eq!(bindings.len(), rbac_rules.len(), "{ctx}: one binding per role");
    }

    // The SloPolicy selects pods that run the runtime (the chart's by default).
    for policy in r.of_kind("SloPolicy") {
        let selector: BTreeMap<String, String> =
            serde_json::from_value(policy["spec"]["selector"]["matchLabels"].clone()).unwrap();
        let selected: Vec<&String> = pods
            .iter()
            .filter(|(_, labels, pod)| {
                pod.containers.iter().any(is_runtime)
                    && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .map(|(what, _, _)| what)
            .collect();
        assert!(!selected.is_empty(), "{ctx}: SloPolicy {} selects no rendered runtime pod", name_of(policy));
    }
}
