//! The Helm chart (`charts/dyce`): `helm lint --strict` and `helm template` for the default
//! values and every value set in `charts/dyce/ci/`; every rendered object deserialised into its
//! Kubernetes type with nothing dropped (k8s-openapi ignores unknown fields, so a misspelt or
//! misplaced field shows as a difference after a round trip); the restricted pod security
//! profile, probes, ports and RBAC; the schema refusing misspelt keys; the values reference in
//! docs/install.md against values.yaml; the chart's copies of the dashboards and rules.
//!
//! Tests that run helm are `#[ignore]`d for a plain `cargo test`; `scripts/test.sh` runs them
//! (`--include-ignored`) after `scripts/setup.sh` installed helm. A missing helm is a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::serde::de::DeserializeOwned;
use k8s_openapi::serde::{Deserialize, Serialize};
use serde_json::Value;

const RELEASE: &str = "demo";
const NAMESPACE: &str = "serving";
const TOKEN_PATH: &str = "/var/run/secrets/dyce/token";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("charts/dyce")
}

/// helm: `$DYCE_HELM`, else what `scripts/install_helm.sh` installed, else `helm` on PATH.
fn helm() -> PathBuf {
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
        "helm not found: run scripts/install_helm.sh (installs {}), set DYCE_HELM, or put helm on PATH",
        installed.display()
    );
}

fn run_helm(args: &[&str]) -> Output {
    let helm = helm();
    Command::new(&helm)
        .args(args)
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("dyce-chart-test-helm/cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("dyce-chart-test-helm/config"))
        .env("HELM_DATA_HOME", std::env::temp_dir().join("dyce-chart-test-helm/data"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", helm.display()))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The value sets: `None` for the defaults, then every `charts/dyce/ci/*.yaml`.
fn value_sets() -> Vec<Option<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("charts/dyce/ci")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let names: BTreeSet<String> =
        files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for required in ["sidecar-values.yaml", "monitoring-values.yaml", "namespaced-values.yaml"] {
        assert!(names.contains(required), "charts/dyce/ci/{required} is missing");
    }
    std::iter::once(None).chain(files.into_iter().map(Some)).collect()
}

fn label(values: &Option<PathBuf>) -> String {
    values.as_ref().map_or("default values".into(), |p| p.file_name().unwrap().to_string_lossy().into())
}

/// A value set as JSON (empty object for the defaults).
fn values_of(values: &Option<PathBuf>) -> Value {
    match values {
        None => Value::Object(Default::default()),
        Some(p) => yaml_to_json(&std::fs::read_to_string(p).unwrap()),
    }
}

fn yaml_to_json(text: &str) -> Value {
    let v: Value = serde_norway::from_str(text).unwrap_or_else(|e| panic!("YAML: {e}"));
    if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    }
}

/// Every document of a multi-document YAML stream, empty ones left out.
fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

fn render(values: &Option<PathBuf>) -> Vec<Value> {
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

fn kind_of(obj: &Value) -> (&str, &str) {
    (obj["apiVersion"].as_str().unwrap_or(""), obj["kind"].as_str().unwrap_or(""))
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

fn describe(obj: &Value) -> String {
    let (api, kind) = kind_of(obj);
    format!("{api} {kind} {}", name_of(obj))
}

// ---------------------------------------------------------------------------------------------
// Round trip through the k8s-openapi types.

/// Removes null members (a rendered `key: null` means "not set", as for the API server).
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

fn is_empty_collection(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.is_empty()) || matches!(v, Value::Object(m) if m.is_empty())
}

/// The first place where `back` (after the round trip) lost or changed something of `orig`.
fn first_difference(orig: &Value, back: &Value, path: &str) -> Option<String> {
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
fn typed<T: DeserializeOwned + Serialize>(obj: &Value) -> T {
    let what = describe(obj);
    let value: T = serde_json::from_value(obj.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&value).unwrap();
    if let Some(d) = first_difference(&strip_nulls(obj.clone()), &back, "") {
        panic!("{what}: {d}");
    }
    value
}

// ---------------------------------------------------------------------------------------------
// What every rendered value set must satisfy.

struct Rendered {
    name: String,
    values: Value,
    objects: Vec<Value>,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| kind_of(o).1 == kind).collect()
    }

    fn count(&self, kind: &str) -> usize {
        self.of_kind(kind).len()
    }

    /// A value of the set as given (not merged with the defaults).
    fn value(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(&self.values, |v, k| v.get(k))
    }

    fn flag(&self, path: &str) -> Option<bool> {
        self.value(path).and_then(Value::as_bool)
    }
}

fn is_runtime(c: &Container) -> bool {
    c.args.as_ref().and_then(|a| a.first()).is_some_and(|a| a == "serve")
}

fn is_controller(c: &Container) -> bool {
    c.args.as_ref().and_then(|a| a.first()).is_some_and(|a| a == "control")
}

fn arg_after<'a>(c: &'a Container, flag: &str) -> Option<&'a str> {
    let args = c.args.as_ref()?;
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str)
}

fn probe_path(p: &Option<k8s_openapi::api::core::v1::Probe>) -> Option<&str> {
    p.as_ref()?.http_get.as_ref()?.path.as_deref()
}

fn check_restricted(pod: &PodSpec, what: &str) {
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

fn check_runtime_container(c: &Container, pod: &PodSpec, what: &str) {
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

fn check_token_mount(c: &Container, pod: &PodSpec, what: &str) {
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

fn check_controller_container(c: &Container, pod: &PodSpec, namespaced: bool, what: &str) {
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

fn has_rule(rules: &[PolicyRule], group: &str, resource: &str, verbs: &[&str]) -> bool {
    rules.iter().any(|r| {
        r.api_groups.as_deref().unwrap_or_default().iter().any(|g| g == group)
            && r.resources.as_deref().unwrap_or_default().iter().any(|x| x == resource)
            && verbs.iter().all(|v| r.verbs.iter().any(|x| x == v))
    })
}

/// The rules the controller needs on SloPolicies, pods and events, and on its Lease.
fn check_controller_rules(rules: &[PolicyRule], what: &str) {
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

fn check_rendered(r: &Rendered) {
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

fn check_network_policy(np: &NetworkPolicy, what: &str) {
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

fn check_slo_policy(obj: &Value, what: &str) {
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

fn check_monitor(r: &Rendered, obj: &Value, what: &str) {
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

fn check_additional_labels(r: &Rendered, obj: &Value, key: &str, what: &str) {
    if let Some(Value::Object(extra)) = r.value(key) {
        for (k, v) in extra {
            assert_eq!(&obj["metadata"]["labels"][k], v, "{what}: additional label {k}");
        }
    }
}

fn check_prometheus_rule(r: &Rendered, obj: &Value, what: &str) {
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

fn check_dashboards_configmap(r: &Rendered, c: &ConfigMap, what: &str) {
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
fn project_files(dir: &str, ext: &str) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
#[ignore = "needs helm: scripts/install_helm.sh"]
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
#[ignore = "needs helm: scripts/install_helm.sh"]
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
#[ignore = "needs helm: scripts/install_helm.sh"]
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
        ("Service", 2),
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
#[ignore = "needs helm: scripts/install_helm.sh"]
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
    std::fs::write(parent.join("values.yaml"), "dyce:\n  runtime:\n    enabled: false\n").unwrap();
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
}

/// Misspelt keys, at the top and deep down, are refused by values.schema.json.
#[test]
#[ignore = "needs helm: scripts/install_helm.sh"]
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
        "sloPolicy:\n  control:\n    onMissingSignals: panic\n",
        "sloPolicy:\n  objective:\n    latency:\n      threshold: fast\n",
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

/// Rows of the table under "## Values reference" in docs/install.md: key → default cell.
fn documented_values() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(repo().join("docs/install.md")).expect("docs/install.md");
    let start = doc.find("\n## Values reference").expect("docs/install.md: no '## Values reference' section");
    let section = &doc[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert!(cells.len() >= 3, "docs/install.md: a values row needs key, default, description: {line}");
        let key = cells[0].trim_matches('`').to_string();
        let default = cells[1].strip_prefix('`').and_then(|c| c.strip_suffix('`'));
        let default =
            default.unwrap_or_else(|| panic!("docs/install.md: default of {key} not in backticks: {line}"));
        assert!(!cells[2].is_empty(), "docs/install.md: {key} has no description");
        assert!(
            rows.insert(key.clone(), default.to_string()).is_none(),
            "docs/install.md: {key} listed twice"
        );
    }
    rows
}

#[test]
fn install_doc_lists_exactly_the_values_with_their_defaults() {
    let mut values = BTreeMap::new();
    leaves(&chart_values(), "", &mut values);
    let doc = documented_values();
    let missing: Vec<&String> = values.keys().filter(|k| !doc.contains_key(*k)).collect();
    let stale: Vec<&String> = doc.keys().filter(|k| !values.contains_key(*k)).collect();
    assert!(missing.is_empty(), "keys of values.yaml missing from docs/install.md: {missing:?}");
    assert!(stale.is_empty(), "docs/install.md lists keys values.yaml does not have: {stale:?}");
    for (key, default) in &doc {
        let parsed = yaml_to_json_scalar(default);
        assert_eq!(&parsed, &values[key], "docs/install.md: default of {key} is `{default}`");
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

#[test]
fn chart_copies_of_dashboards_and_rules_equal_the_originals() {
    let chart_dir = chart();
    let originals = project_files("dashboards", "json");
    let copies = project_files("charts/dyce/dashboards", "json");
    assert!(!originals.is_empty(), "no dashboards/*.json");
    assert_eq!(
        copies.keys().collect::<Vec<_>>(),
        originals.keys().collect::<Vec<_>>(),
        "charts/dyce/dashboards/ must hold exactly the files of dashboards/"
    );
    for (name, bytes) in &originals {
        assert!(
            copies[name] == *bytes,
            "charts/dyce/dashboards/{name} differs from dashboards/{name}: copy it again"
        );
    }
    let rules = std::fs::read(repo().join("observability/rules/dyce.rules.yaml")).unwrap();
    let copy =
        std::fs::read(chart_dir.join("rules/dyce.rules.yaml")).expect("charts/dyce/rules/dyce.rules.yaml");
    assert!(
        copy == rules,
        "charts/dyce/rules/dyce.rules.yaml differs from observability/rules/dyce.rules.yaml: copy it again"
    );
}
