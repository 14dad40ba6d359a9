//! What a platform team sets beyond the defaults: the README `helm show readme` prints, security
//! contexts (OpenShift), drain and grace period, the runtime's flags, gRPC, spread constraints,
//! the HPA and the ScaledObject, monitors guarded by the cluster's APIs, and the `helm test` pod.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::Value;

use super::pods::*;
use super::render::*;
use super::*;

/// `helm template` with the defaults plus `yaml` and more arguments: the objects or the error.
pub(super) fn template(yaml: &str, extra: &[&str]) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, yaml).unwrap();
    let chart = chart();
    let mut args = vec!["template", RELEASE, chart.to_str().unwrap(), "--namespace", NAMESPACE];
    args.extend(["-f", file.to_str().unwrap()]);
    args.extend(extra);
    let out = run_helm(&args);
    if out.status.success() {
        Ok(documents(&text(&out.stdout)))
    } else {
        Err(text(&out.stderr))
    }
}

pub(super) fn ok(yaml: &str) -> Vec<Value> {
    template(yaml, &[]).unwrap_or_else(|e| panic!("helm template with {yaml:?}: {e}"))
}

pub(super) fn refused(yaml: &str, reason: &str) {
    let err = template(yaml, &[]).expect_err(&format!("helm template accepted {yaml:?}"));
    assert!(err.contains(reason), "helm template refused {yaml:?} without naming {reason:?}: {err}");
}

pub(super) fn ci(name: &str) -> Vec<Value> {
    render(&Some(chart().join("ci").join(name)))
}

fn deployment(objects: &[Value], suffix: &str) -> Deployment {
    let d = objects.iter().find(|o| kind_of(o).1 == "Deployment" && name_of(o).ends_with(suffix));
    typed(d.unwrap_or_else(|| panic!("no Deployment *{suffix}")))
}

fn pod_of(objects: &[Value], suffix: &str) -> PodSpec {
    deployment(objects, suffix).spec.unwrap().template.spec.unwrap()
}

fn runtime(pod: &PodSpec) -> &Container {
    pod.containers.iter().find(|c| is_runtime(c)).expect("the runtime container")
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| kind_of(o).1 == kind).collect()
}

/// Every pod spec rendered: Deployments' templates and bare Pods (the test hook).
pub(super) fn all_pods(objects: &[Value]) -> Vec<(String, PodSpec)> {
    let mut pods = vec![];
    for o in objects {
        match kind_of(o).1 {
            "Deployment" => {
                pods.push((describe(o), typed::<Deployment>(o).spec.unwrap().template.spec.unwrap()))
            }
            "Pod" => pods.push((describe(o), typed::<Pod>(o).spec.unwrap())),
            _ => {}
        }
    }
    pods
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn helm_show_readme_prints_the_chart_readme() {
    let out = run_helm(&["show", "readme", chart().to_str().unwrap()]);
    assert!(out.status.success(), "helm show readme: {}", text(&out.stderr));
    let printed = text(&out.stdout);
    let file = std::fs::read_to_string(chart().join("README.md")).unwrap();
    assert_eq!(printed.trim_end(), file.trim_end(), "helm show readme prints something else than README.md");
    for section in ["## Install", "## Values", "## Security", "## Monitoring", "## Scaling", "## Upgrading"] {
        assert!(file.contains(&format!("\n{section}")), "README.md has no {section} section");
    }
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn security_contexts_default_to_65532_and_openshift_drops_the_ids() {
    let defaults = render(&None);
    for (what, pod) in all_pods(&defaults) {
        let psc = pod.security_context.unwrap();
        assert_eq!(
            (psc.run_as_user, psc.run_as_group, psc.fs_group),
            (Some(UID), Some(UID), Some(UID)),
            "{what}"
        );
        for c in &pod.containers {
            assert_eq!(c.security_context.as_ref().unwrap().run_as_user, Some(UID), "{what} {}", c.name);
        }
    }
    let token_mode = |objects: &[Value]| {
        let pod = pod_of(objects, "-controller");
        let v = pod.volumes.unwrap().into_iter().find(|v| v.name == "dyce-token").unwrap();
        v.secret.unwrap().default_mode
    };
    assert_eq!(token_mode(&defaults), Some(0o440), "the controller's token readable through fsGroup only");

    let openshift = ci("openshift-values.yaml");
    let pods = all_pods(&openshift);
    assert!(pods.len() >= 3, "controller, runtime and test pods: {}", pods.len());
    for (what, pod) in pods {
        let psc = pod.security_context.clone().unwrap();
        assert_eq!(
            (psc.run_as_user, psc.run_as_group, psc.fs_group),
            (None, None, None),
            "{what}: ids left to the SCC"
        );
        assert_eq!(psc.run_as_non_root, Some(true), "{what}");
        let containers = pod.containers.iter().chain(pod.init_containers.iter().flatten());
        for c in containers {
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!((sc.run_as_user, sc.run_as_group), (None, None), "{what} {}", c.name);
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{what} {}", c.name);
        }
        check_restricted(&pod, &what);
    }
    assert_eq!(
        token_mode(&openshift),
        Some(0o444),
        "without an fsGroup the controller's token is world-readable"
    );

    // Any other field of the contexts can be set; unknown ones are refused by the schema.
    let pod = pod_of(&ok("runtime:\n  podSecurityContext:\n    supplementalGroups: [1000]\n"), "-runtime");
    assert_eq!(pod.security_context.unwrap().supplemental_groups, Some(vec![1000]));
    assert!(
        template("runtime:\n  securityContext:\n    runAsUsr: 1\n", &[]).is_err(),
        "misspelt field accepted"
    );
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn the_grace_period_covers_the_drain() {
    let grace = |objects: &[Value]| pod_of(objects, "-runtime").termination_grace_period_seconds;
    let pod = pod_of(&render(&None), "-runtime");
    let c = runtime(&pod);
    assert_eq!(
        (env_value(c, "DYCE_DRAIN_DELAY"), env_value(c, "DYCE_DRAIN_TIMEOUT")),
        (Some("5"), Some("20"))
    );
    assert_eq!(pod.termination_grace_period_seconds, Some(30), "5 s delay + 20 s timeout + 5 s");

    assert_eq!(grace(&ok("runtime:\n  drain:\n    delaySeconds: 12.5\n    timeoutSeconds: 40\n")), Some(58));
    assert_eq!(
        grace(&ok("runtime:\n  terminationGracePeriodSeconds: 26\n")),
        Some(26),
        "delay + timeout + 1"
    );
    refused("runtime:\n  terminationGracePeriodSeconds: 25\n", "runtime.terminationGracePeriodSeconds (25)");
    refused("runtime:\n  terminationGracePeriodSeconds: 10\n  drain:\n    delaySeconds: 0\n", "at least");

    // The sidecar example's pod gets the same grace period.
    let sidecar = ok(
        "runtime:\n  enabled: false\n  drain:\n    timeoutSeconds: 50\nsidecarExample:\n  enabled: true\n",
    );
    assert_eq!(pod_of(&sidecar, "-sidecar-example").termination_grace_period_seconds, Some(60));
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn runtime_flags_probes_and_spread_follow_the_values() {
    let defaults = render(&None);
    let pod = pod_of(&defaults, "-runtime");
    let c = runtime(&pod);
    for (name, want) in [
        ("DYCE_MAX_BODY_BYTES", Some("8388608")),
        ("DYCE_HEADER_TIMEOUT", Some("30")),
        ("DYCE_BODY_TIMEOUT", Some("30")),
        ("DYCE_REQUEST_TIMEOUT", None),
        ("DYCE_DECODE_CONCURRENCY", None),
        ("DYCE_LOG_FORMAT", Some("json")),
        ("DYCE_METRICS_ADDR", Some("0.0.0.0:9091")),
        ("DYCE_METRICS_TOKEN_FILE", None),
        ("DYCE_GRPC_ADDR", Some("0.0.0.0:8081")),
    ] {
        assert_eq!(env_value(c, name), want, "default {name}");
    }
    let controller = pod_of(&defaults, "-controller");
    assert_eq!(
        env_value(&controller.containers[0], "DYCE_LOG_FORMAT"),
        Some("json"),
        "controller log format"
    );
    // A soft spread over nodes, counting this release's runtime pods.
    let spread = pod.topology_spread_constraints.as_deref().unwrap_or_default();
    assert_eq!(spread.len(), 1, "one default spread constraint");
    assert_eq!(
        (spread[0].topology_key.as_str(), spread[0].when_unsatisfiable.as_str()),
        ("kubernetes.io/hostname", "ScheduleAnyway")
    );
    let labels = spread[0].label_selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap();
    assert_eq!(labels.get("app.kubernetes.io/component").map(String::as_str), Some("runtime"));
    assert!(controller.topology_spread_constraints.is_none(), "the controller has none by default");

    let policy = ci("policy-values.yaml");
    let pod = pod_of(&policy, "-runtime");
    let c = runtime(&pod);
    for (name, want) in [
        ("DYCE_DECODE_CONCURRENCY", "1"),
        ("DYCE_MAX_BODY_BYTES", "33554432"),
        ("DYCE_HEADER_TIMEOUT", "10"),
        ("DYCE_BODY_TIMEOUT", "15.5"),
        ("DYCE_REQUEST_TIMEOUT", "2"),
        ("DYCE_LOG_FORMAT", "text"),
        ("DYCE_DRAIN_DELAY", "10"),
        ("DYCE_DRAIN_TIMEOUT", "40.5"),
        ("DYCE_GRPC_ADDR", "0.0.0.0:50051"),
        ("DYCE_METRICS_ADDR", "0.0.0.0:19091"),
    ] {
        assert_eq!(env_value(c, name), Some(want), "policy-values {name}");
    }
    assert_eq!(pod.termination_grace_period_seconds, Some(60));
    let r = c.readiness_probe.as_ref().unwrap();
    assert_eq!((r.period_seconds, r.timeout_seconds, r.failure_threshold), (Some(2), Some(1), Some(1)));
    let spread = pod.topology_spread_constraints.unwrap();
    let selector = |i: usize| spread[i].label_selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap();
    assert_eq!(
        selector(0).get("app.kubernetes.io/component").map(String::as_str),
        Some("runtime"),
        "filled in"
    );
    assert_eq!(selector(1).get("tier").map(String::as_str), Some("inference"), "a selector given is kept");
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn grpc_is_exposed_unless_turned_off() {
    let service = |objects: &[Value]| -> Vec<(String, i64)> {
        let s =
            objects.iter().find(|o| kind_of(o).1 == "Service" && name_of(o).ends_with("-runtime")).unwrap();
        s["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap().into(), p["port"].as_i64().unwrap()))
            .collect()
    };
    let defaults = render(&None);
    assert_eq!(service(&defaults), [("http".into(), 8080), ("grpc".into(), 8081)]);
    let off = ok("runtime:\n  grpc:\n    enabled: false\n");
    assert_eq!(service(&off), [("http".into(), 8080)]);
    let c = runtime(&pod_of(&off, "-runtime")).clone();
    assert_eq!(env_value(&c, "DYCE_GRPC_ADDR"), Some("127.0.0.1:8081"), "off: loopback only");
    assert!(!c.ports.iter().flatten().any(|p| p.name.as_deref() == Some("grpc")));
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn an_autoscaler_owns_the_runtime_replicas() {
    let hpa = ci("hpa-values.yaml");
    assert!(
        deployment(&hpa, "-runtime").spec.unwrap().replicas.is_none(),
        "runtime.replicas: 3 ignored under the HPA"
    );
    let h = of_kind(&hpa, "HorizontalPodAutoscaler");
    assert_eq!(h.len(), 1);
    assert_eq!(h[0]["spec"]["minReplicas"], 2);
    assert_eq!(h[0]["spec"]["maxReplicas"], 12);
    let metric = &h[0]["spec"]["metrics"][0]["external"]["metric"];
    assert_eq!(metric["name"], "dyce_desired_replicas");
    assert_eq!(metric["selector"]["matchLabels"]["policy"], "demo-dyce", "the chart's SloPolicy");
    assert_eq!(h[0]["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 120);
    assert!(of_kind(&hpa, "ScaledObject").is_empty());

    let keda = ci("keda-values.yaml");
    assert!(deployment(&keda, "-runtime").spec.unwrap().replicas.is_none(), "no replicas under KEDA");
    let so = of_kind(&keda, "ScaledObject");
    assert_eq!(so.len(), 1);
    let t = &so[0]["spec"]["triggers"][0];
    assert_eq!(
        t["metadata"]["query"],
        r#"max(dyce_controller_desired_replicas{namespace="serving", policy="fmnist-p99"})"#
    );
    assert_eq!(t["authenticationRef"]["name"], "prometheus-auth");
    assert!(of_kind(&keda, "HorizontalPodAutoscaler").is_empty(), "KEDA makes its own HPA");

    refused("autoscaling:\n  hpa: {enabled: true}\n  keda: {enabled: true, serverAddress: http://p:9090, ignoreCapabilities: true}\n", "exclusive");
    refused(
        "autoscaling:\n  keda: {enabled: true, ignoreCapabilities: true}\n",
        "autoscaling.keda.serverAddress",
    );
    refused("autoscaling:\n  hpa: {enabled: true}\nruntime:\n  enabled: false\n", "runtime.enabled is false");
    refused(
        "autoscaling:\n  minReplicas: 5\n  maxReplicas: 4\n  hpa: {enabled: true}\n",
        "above autoscaling.maxReplicas",
    );
    // Without KEDA's API in the cluster: an error, not a Deployment left at one replica.
    let keda_on = "autoscaling:\n  keda: {enabled: true, serverAddress: http://p:9090}\n";
    refused(keda_on, "does not serve keda.sh/v1alpha1");
    let with_api = template(keda_on, &["--api-versions", "keda.sh/v1alpha1"]).unwrap();
    assert_eq!(of_kind(&with_api, "ScaledObject").len(), 1);
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn monitors_need_the_operator_api_and_open_the_metrics_port() {
    let yaml = "monitoring:\n  podMonitor: {enabled: true}\n  prometheusRule: {enabled: true}\n";
    let scrapers = |objects: &[Value]| -> Vec<Value> {
        let np = objects.iter().find(|o| kind_of(o).1 == "NetworkPolicy").unwrap();
        let np: NetworkPolicy = typed(np);
        let rules = np.spec.unwrap().ingress.unwrap();
        let metrics = rules.iter().filter(|r| {
            r.ports.iter().flatten().any(|p| serde_json::to_value(&p.port).unwrap() == "metrics")
        });
        let peers = metrics.flat_map(|r| r.from.clone().unwrap_or_default());
        let peers = peers.map(|p| serde_json::to_value(p).unwrap());
        peers.filter(|p| p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] != "test").collect()
    };
    // No monitoring.coreos.com/v1: no monitor, no rule, and Prometheus is not let in.
    let without = template(yaml, &[]).unwrap();
    assert_eq!(of_kind(&without, "PodMonitor").len() + of_kind(&without, "PrometheusRule").len(), 0);
    assert!(scrapers(&without).is_empty());
    for extra in [
        &["--api-versions", "monitoring.coreos.com/v1"][..],
        &["--set", "monitoring.ignoreCapabilities=true"],
    ] {
        let with = template(yaml, extra).unwrap();
        assert_eq!(
            (of_kind(&with, "PodMonitor").len(), of_kind(&with, "PrometheusRule").len()),
            (2, 1),
            "{extra:?}"
        );
        // kube-prometheus-stack's Prometheus pods, in whatever namespace the stack runs.
        let peers = scrapers(&with);
        assert_eq!(peers.len(), 1, "{extra:?}: {peers:?}");
        assert_eq!(peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"], "prometheus");
        assert_eq!(peers[0]["namespaceSelector"], serde_json::json!({}));
    }
    // Selectors given replace that default.
    let given = template(
        &format!("{yaml}networkPolicy:\n  prometheus:\n    namespaceLabels: {{team: obs}}\n"),
        &["--api-versions", "monitoring.coreos.com/v1"],
    )
    .unwrap();
    let peers = scrapers(&given);
    assert_eq!(peers[0]["namespaceSelector"]["matchLabels"]["team"], "obs");
    assert_eq!(peers[0]["podSelector"], serde_json::json!({}), "{peers:?}");
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn helm_test_checks_readiness_metrics_and_the_controller() {
    let script = |objects: &[Value]| -> Option<String> {
        let pods = of_kind(objects, "Pod");
        assert!(pods.len() <= 1);
        let p: Pod = typed(pods.first()?);
        let annotations = p.metadata.annotations.unwrap();
        assert_eq!(annotations.get("helm.sh/hook").map(String::as_str), Some("test"));
        let c = &p.spec.unwrap().containers[0];
        Some(c.args.as_ref().unwrap().join("\n"))
    };
    let s = script(&render(&None)).expect("a test pod by default");
    assert!(s.contains("http://demo-dyce-runtime.serving.svc:8080/v2/health/ready"), "{s}");
    assert!(s.contains("http://demo-dyce-runtime-metrics.serving.svc:9091/metrics"), "{s}");
    assert!(s.contains("grep -q '^# TYPE dyce_'"), "{s}");
    assert!(s.contains("http://demo-dyce-controller.serving.svc:9100/readyz"), "{s}");
    assert!(!s.contains("Authorization"), "no metrics token by default: {s}");

    let s = script(&ci("servicemonitor-values.yaml")).unwrap();
    assert!(s.contains("Authorization: Bearer $(cat /var/run/secrets/dyce-metrics/token)"), "{s}");
    assert!(script(&ok("tests:\n  enabled: false\n")).is_none(), "tests.enabled=false");
    assert!(script(&ci("sidecar-values.yaml")).is_none(), "no runtime Service to test");
    let s = script(&ok("controller:\n  enabled: false\n")).unwrap();
    assert!(!s.contains("/readyz"), "{s}");
}

/// The chart configures the binary through environment variables, which the binary ignores when
/// it does not know them: every `DYCE_*` variable a value set gives the runtime or the
/// controller must be the `env` of one of that command's flags, as its `--help` lists them.
#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn every_variable_the_chart_sets_is_a_flag_of_the_binary() {
    let help = |command: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dyce"))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "dyce {command} --help");
        text(&out.stdout)
    };
    let (serve, control) = (help("serve"), help("control"));
    let (mut checked, mut missing) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for values in value_sets() {
        for (what, pod) in all_pods(&render(&values)) {
            for c in &pod.containers {
                let help = if is_runtime(c) {
                    &serve
                } else if is_controller(c) {
                    &control
                } else {
                    continue;
                };
                let command = &c.args.as_ref().unwrap()[0];
                for e in c.env.iter().flatten().filter(|e| e.name.starts_with("DYCE_")) {
                    if !help.contains(&format!("[env: {}=", e.name)) {
                        missing.insert(format!("{} (dyce {command}, set for {what})", e.name));
                    }
                    checked.insert(e.name.clone());
                }
            }
        }
    }
    assert!(missing.is_empty(), "variables the chart sets that are no flag of the binary: {missing:#?}");
    assert!(checked.len() >= 15, "only {checked:?}");
}
