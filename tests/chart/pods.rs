//! Checks of the pods, containers and RBAC rules a chart renders.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::api::rbac::v1::PolicyRule;

use super::*;

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

/// The image's user; a value set may drop the ids (OpenShift assigns them), never change them.
pub const UID: i64 = 65532;

pub fn check_restricted(pod: &PodSpec, what: &str) {
    let psc = pod.security_context.as_ref().unwrap_or_else(|| panic!("{what}: no pod securityContext"));
    assert_eq!(psc.run_as_non_root, Some(true), "{what}: pod runAsNonRoot");
    assert!(matches!(psc.run_as_user, Some(UID) | None), "{what}: pod runAsUser {:?}", psc.run_as_user);
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
        assert!(matches!(sc.run_as_user, Some(UID) | None), "{what}: runAsUser {:?}", sc.run_as_user);
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
    // The read-only metrics listener, where the monitors scrape, on the port named "metrics".
    let metrics = ports.get("metrics").unwrap_or_else(|| panic!("{what}: no port named metrics: {ports:?}"));
    assert_eq!(env_value(c, "DYCE_METRICS_ADDR"), Some(format!("0.0.0.0:{metrics}").as_str()), "{what}");
    // gRPC: the port named grpc exactly when it listens on every address.
    let grpc = env_value(c, "DYCE_GRPC_ADDR").unwrap_or_else(|| panic!("{what}: no DYCE_GRPC_ADDR"));
    match ports.get("grpc") {
        Some(p) => assert_eq!(grpc, format!("0.0.0.0:{p}"), "{what}: DYCE_GRPC_ADDR"),
        None => assert!(grpc.starts_with("127.0.0.1:"), "{what}: gRPC without a port but on {grpc}"),
    }
    let token = c.volume_mounts.iter().flatten().find(|m| m.name == "dyce-metrics-token");
    assert_eq!(
        env_value(c, "DYCE_METRICS_TOKEN_FILE"),
        token.map(|m| format!("{}/token", m.mount_path)).as_deref(),
        "{what}: DYCE_METRICS_TOKEN_FILE names the mounted metrics token"
    );
    assert!(matches!(env_value(c, "DYCE_LOG_FORMAT"), Some("json" | "text")), "{what}: DYCE_LOG_FORMAT");
    for (name, default) in [("DYCE_HEADER_TIMEOUT", 30.0), ("DYCE_BODY_TIMEOUT", 30.0)] {
        let v = env_f64(c, name).unwrap_or_else(|| panic!("{what}: no {name}"));
        assert!(v > 0.0 && v <= default * 10.0, "{what}: {name}={v}");
    }
    let body =
        env_value(c, "DYCE_MAX_BODY_BYTES").unwrap_or_else(|| panic!("{what}: no DYCE_MAX_BODY_BYTES"));
    assert!(
        body.parse::<u64>().is_ok_and(|b| b > 0),
        "{what}: DYCE_MAX_BODY_BYTES={body} is not a byte count"
    );
    // The kubelet kills the pod after the grace period: it must cover the drain delay and the
    // drain timeout, or requests the runtime is still finishing are cut.
    let delay = env_f64(c, "DYCE_DRAIN_DELAY").unwrap_or_else(|| panic!("{what}: no DYCE_DRAIN_DELAY"));
    let timeout = env_f64(c, "DYCE_DRAIN_TIMEOUT").unwrap_or_else(|| panic!("{what}: no DYCE_DRAIN_TIMEOUT"));
    let grace = pod.termination_grace_period_seconds.unwrap_or(30) as f64;
    assert!(
        grace >= delay + timeout + 1.0,
        "{what}: grace period {grace} s < drain {delay} s + {timeout} s + 1 s"
    );
    assert_eq!(arg_after(c, "--data-addr"), Some("0.0.0.0:8080"), "{what}: --data-addr");
    assert_eq!(arg_after(c, "--admin-addr"), Some("0.0.0.0:9090"), "{what}: --admin-addr");
    assert_eq!(arg_after(c, "--admin-token-file"), Some(TOKEN_PATH), "{what}: --admin-token-file");
    assert_eq!(probe_path(&c.liveness_probe), Some("/v2/health/live"), "{what}: liveness probe");
    assert_eq!(probe_path(&c.readiness_probe), Some("/v2/health/ready"), "{what}: readiness probe");
    // Liveness would restart a runtime still reading its bundle (no port is bound yet): the
    // startup probe holds it back until the runtime is ready.
    assert_eq!(probe_path(&c.startup_probe), Some("/v2/health/ready"), "{what}: startup probe");
    check_token_mount(c, pod, what);
    check_model_mount(c, pod, what);

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

pub fn env_value<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env.iter().flatten().find(|e| e.name == name).and_then(|e| e.value.as_deref())
}

/// A variable holding seconds, as the binary parses it (an f64).
pub fn env_f64(c: &Container, name: &str) -> Option<f64> {
    env_value(c, name).map(|v| v.parse().unwrap_or_else(|e| panic!("{name}={v}: {e}")))
}

/// A bundle from runtime.modelFrom: DYCE_MODEL names the read-only mount of volume dyce-model,
/// and the init container that fills an emptyDir writes to that same volume.
pub fn check_model_mount(c: &Container, pod: &PodSpec, what: &str) {
    let mount = c.volume_mounts.iter().flatten().find(|m| m.name == "dyce-model");
    let volume = pod.volumes.iter().flatten().find(|v| v.name == "dyce-model");
    let init = pod.init_containers.iter().flatten().find(|i| i.name == "dyce-model");
    let Some(mount) = mount else {
        assert_ne!(env_value(c, "DYCE_MODEL"), Some(MODEL_DIR), "{what}: DYCE_MODEL without the mount");
        assert!(init.is_none(), "{what}: the model init container without the mount");
        return;
    };
    assert_eq!(mount.mount_path, MODEL_DIR, "{what}: model mount path");
    assert_eq!(mount.read_only, Some(true), "{what}: model mount read-only");
    assert_eq!(env_value(c, "DYCE_MODEL"), Some(MODEL_DIR), "{what}: DYCE_MODEL");
    let volume = volume.unwrap_or_else(|| panic!("{what}: no volume dyce-model"));
    match (&volume.persistent_volume_claim, &volume.empty_dir, init) {
        (Some(pvc), None, None) => assert_eq!(pvc.read_only, Some(true), "{what}: claim read-only"),
        (None, Some(_), Some(init)) => {
            let mounts: Vec<_> = init.volume_mounts.iter().flatten().collect();
            assert!(
                mounts.iter().any(|m| m.name == "dyce-model" && m.mount_path == MODEL_DIR),
                "{what}: the init container does not write to the runtime's model volume"
            );
            let command = init.command.as_deref().unwrap_or_default();
            assert_eq!(
                command.last().map(String::as_str),
                Some("/var/lib/dyce/model/"),
                "{what}: copy target"
            );
        }
        other => panic!(
            "{what}: volume dyce-model is neither a claim nor an emptyDir filled by dyce-model: {other:?}"
        ),
    }
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
