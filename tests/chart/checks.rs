//! What every rendered value set must satisfy.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::render::*;
use super::*;

// ---------------------------------------------------------------------------------------------
// What every rendered value set must satisfy.

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

pub fn is_runtime(c: &Container) -> bool {
    c.args.as_ref().and_then(|a| a.first()).is_some_and(|a| a == "serve")
}

pub fn is_controller(c: &Container) -> bool {
    c.args.as_ref().and_then(|a| a.first()).is_some_and(|a| a == "control")
}

pub fn arg_after<'a>(c: &'a Container, flag: &str) -> Option<&'a str> {
    let args = c.args.as_ref()?;
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

pub fn probe_path(p: &Option<k8s_openapi::api::core::v1::Probe>) -> Option<&str> {
    p.as_ref()?.http_get.as_ref()?.path.as_deref()
}

pub fn check_restricted(pod: &PodSpec, what: &str) {
    let psc = pod.security_context.as_ref().unwrap_or_else(|| panic!("{what}: no pod securityContext"));
    assert_eq!(psc.run_as_non_root, Some(true), "{what}: pod runAsNonRoot");
    assert_eq!(psc.run_as_user, Some(65532), "{what}: pod runAsUser");
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault"),
        "{what}: pod seccompProfile"
    );
    assert!(
        pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none(),
        "{what}: host namespaces"
    );
    let containers = pod.containers.iter().chain(pod.init_containers.iter().flatten());
    for c in containers {
        let what = format!("{what} container {}", c.name);
        let sc = c.security_context.as_ref().unwrap_or_else(|| panic!("{what}: no securityContext"));
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}: allowPrivilegeEscalation");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}: readOnlyRootFilesystem");
        assert_eq!(sc.run_as_non_root, Some(true), "{what}: runAsNonRoot");
        assert_eq!(sc.run_as_user, Some(65532), "{what}: runAsUser");
        assert_ne!(sc.privileged, Some(true), "{what}: privileged");
        let caps = sc.capabilities.as_ref().unwrap_or_else(|| panic!("{what}: no capabilities"));
        assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]), "{what}: capabilities.drop");
        assert!(caps.add.as_ref().is_none_or(|a| a.is_empty()), "{what}: capabilities.add");
        assert_eq!(
            sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault"),
            "{what}: seccompProfile (set on the container too, so a sidecar is complete on its own)"
        );
        assert!(c.resources.is_some(), "{what}: no resources");
    }
}

pub fn check_runtime_container(c: &Container, pod: &PodSpec, what: &str) {
    let ports: BTreeMap<&str, i32> =
        c.ports.iter().flatten().map(|p| (p.name.as_deref().unwrap_or(""), p.container_port)).collect();
    assert_eq!(ports.get("http"), Some(&8080), "{what}: data port named http: {ports:?}");
    assert_eq!(ports.get("admin"), Some(&9090), "{what}: admin port named admin: {ports:?}");
    assert_eq!(arg_after(c, "--data-addr"), Some("0.0.0.0:8080"), "{what}: --data-addr");
    assert_eq!(arg_after(c, "--admin-addr"), Some("0.0.0.0:9090"), "{what}: --admin-addr");
    assert_eq!(arg_after(c, "--admin-token-file"), Some(TOKEN_PATH), "{what}: --admin-token-file");
    assert_eq!(probe_path(&c.liveness_probe), Some("/v2/health/live"), "{what}: liveness probe");
    assert_eq!(probe_path(&c.readiness_probe), Some("/v2/health/ready"), "{what}: readiness probe");
    check_token_mount(c, pod, what);

    // DYCE_THREADS follows the CPU limit, and only when there is one.
    let cpu_limit =
        c.resources.as_ref().and_then(|r| r.limits.as_ref()).is_some_and(|l| l.contains_key("cpu"));
    let threads = c.env.iter().flatten().find(|e| e.name == "DYCE_THREADS");
    match threads {
        Some(e) => {
            assert!(cpu_limit, "{what}: DYCE_THREADS without a CPU limit");
            let r = e.value_from.as_ref().and_then(|v| v.resource_field_ref.as_ref());
            let r = r.unwrap_or_else(|| panic!("{what}: DYCE_THREADS is not a resourceFieldRef"));
            assert_eq!(r.resource, "limits.cpu", "{what}: DYCE_THREADS resource");
            assert_eq!(r.divisor.as_ref().map(|d| d.0.as_str()), Some("1"), "{what}: DYCE_THREADS divisor");
            assert_eq!(r.container_name.as_deref(), Some(c.name.as_str()), "{what}: DYCE_THREADS container");
        }
        None => assert!(!cpu_limit, "{what}: a CPU limit but no DYCE_THREADS"),
    }
}

pub fn check_token_mount(c: &Container, pod: &PodSpec, what: &str) {
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/var/run/secrets/dyce")
        .unwrap_or_else(|| panic!("{what}: the token is not mounted at /var/run/secrets/dyce"));
    assert_eq!(mount.read_only, Some(true), "{what}: token mount read-only");
    let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name);
    let secret = volume.and_then(|v| v.secret.as_ref());
    let secret = secret.unwrap_or_else(|| panic!("{what}: volume {} is not a Secret", mount.name));
    let items = secret.items.as_deref().unwrap_or_default();
    assert!(items.iter().any(|i| i.path == "token"), "{what}: the Secret volume has no item at path token");
}

pub fn check_controller_container(c: &Container, pod: &PodSpec, namespaced: bool, what: &str) {
    let args = c.args.as_deref().unwrap_or_default();
    assert!(args.iter().any(|a| a == "--kubernetes"), "{what}: --kubernetes");
    assert_eq!(arg_after(c, "--listen"), Some("0.0.0.0:9100"), "{what}: --listen");
    assert_eq!(arg_after(c, "--admin-token-file"), Some(TOKEN_PATH), "{what}: --admin-token-file");
    assert!(arg_after(c, "--lease-name").is_some_and(|l| !l.is_empty()), "{what}: --lease-name");
    assert_eq!(
        arg_after(c, "--namespace"),
        if namespaced { Some(NAMESPACE) } else { None },
        "{what}: --namespace exactly when RBAC is namespaced"
    );
    for (name, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        let env = c.env.iter().flatten().find(|e| e.name == name);
        let path =
            env.and_then(|e| e.value_from.as_ref()).and_then(|v| v.field_ref.as_ref()).map(|f| &f.field_path);
        assert_eq!(path.map(String::as_str), Some(field), "{what}: {name} from the downward API");
    }
    assert_eq!(probe_path(&c.liveness_probe), Some("/healthz"), "{what}: liveness probe");
    assert_eq!(probe_path(&c.readiness_probe), Some("/readyz"), "{what}: readiness probe");
    let ports: Vec<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
    assert_eq!(ports, [9100], "{what}: ports");
    check_token_mount(c, pod, what);
    assert!(pod.service_account_name.as_deref().is_some_and(|s| !s.is_empty()), "{what}: serviceAccountName");
}

pub fn has_rule(rules: &[PolicyRule], group: &str, resource: &str, verbs: &[&str]) -> bool {
    rules.iter().any(|r| {
        r.api_groups.as_deref().unwrap_or_default().iter().any(|g| g == group)
            && r.resources.as_deref().unwrap_or_default().iter().any(|x| x == resource)
            && verbs.iter().all(|v| r.verbs.iter().any(|x| x == v))
    })
}

/// The rules the controller needs on SloPolicies, pods and events, and on its Lease.
pub fn check_controller_rules(rules: &[PolicyRule], what: &str) {
    for (group, resource, verbs) in [
        ("dyce.dev", "slopolicies", &["get", "list", "watch"][..]),
        ("dyce.dev", "slopolicies/status", &["get", "patch", "update"][..]),
        ("", "pods", &["get", "list", "watch"][..]),
        ("events.k8s.io", "events", &["create", "patch"][..]),
    ] {
        assert!(has_rule(rules, group, resource, verbs), "{what}: no rule for {group}/{resource} {verbs:?}");
    }
    for r in rules {
        assert!(!r.verbs.iter().any(|v| v == "*"), "{what}: wildcard verb");
        assert!(!r.resources.iter().flatten().any(|v| v == "*"), "{what}: wildcard resource");
        assert!(
            !r.resources.iter().flatten().any(|v| v == "secrets"),
            "{what}: the controller reads no Secret"
        );
    }
}

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
                    let admin = matches!(&p.target_port, Some(IntOrString::String(t)) if t == "admin")
                        || matches!(&p.target_port, Some(IntOrString::Int(9090)));
                    if admin {
                        // Only the opt-in headless Service for the runtimes' ServiceMonitor.
                        assert_eq!(
                            spec.cluster_ip.as_deref(),
                            Some("None"),
                            "{what}: the admin port in a Service"
                        );
                        assert_eq!(
                            r.flag("monitoring.serviceMonitor.enabled"),
                            Some(true),
                            "{what}: admin Service"
                        );
                    }
                }
            }
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
            ("networking.k8s.io/v1", "NetworkPolicy") => check_network_policy(&typed(obj), &what),
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
    let doc = dyce_controller::policy::PolicyDocument::parse(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
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
        yaml_to_json(&std::fs::read_to_string(repo().join("observability/rules/dyce.rules.yaml")).unwrap());
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
    let project = project_files("dashboards", "json");
    assert_eq!(data.keys().collect::<Vec<_>>(), project.keys().collect::<Vec<_>>(), "{what}: dashboards");
    for (name, bytes) in project {
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(data[&name].trim_end(), text.trim_end(), "{what}: {name} differs from dashboards/{name}");
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
