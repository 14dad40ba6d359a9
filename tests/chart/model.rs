//! A model bundle that is not in the image (runtime.modelFrom): from a PersistentVolumeClaim,
//! or copied out of an OCI image by an init container; the start-up budget; the values that
//! contradict each other or miss a field.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::pods::*;
use super::render::*;
use super::*;

/// `helm template` with the defaults plus `yaml`: the objects, or helm's error output.
fn template(yaml: &str) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, yaml).unwrap();
    let chart = chart();
    let args = ["template", RELEASE, chart.to_str().unwrap(), "--namespace", NAMESPACE, "-f"];
    let out = run_helm(&[&args[..], &[file.to_str().unwrap()]].concat());
    if out.status.success() {
        Ok(documents(&text(&out.stdout)))
    } else {
        Err(text(&out.stderr))
    }
}

/// The pod of the Deployment whose name ends with `suffix`, after the k8s-openapi round trip.
fn deployment_pod(objects: &[Value], suffix: &str) -> PodSpec {
    let d = objects.iter().find(|o| kind_of(o).1 == "Deployment" && name_of(o).ends_with(suffix));
    let d: Deployment = typed(d.unwrap_or_else(|| panic!("no Deployment *{suffix}")));
    d.spec.unwrap().template.spec.unwrap()
}

fn runtime_pod(objects: &[Value]) -> PodSpec {
    deployment_pod(objects, "-runtime")
}

fn runtime(pod: &PodSpec) -> &Container {
    pod.containers.iter().find(|c| is_runtime(c)).expect("the runtime container")
}

fn volume<'a>(pod: &'a PodSpec, name: &str) -> Option<&'a Volume> {
    pod.volumes.iter().flatten().find(|v| v.name == name)
}

fn mount<'a>(c: &'a Container, name: &str) -> Option<&'a VolumeMount> {
    c.volume_mounts.iter().flatten().find(|m| m.name == name)
}

fn ci(name: &str) -> Vec<Value> {
    render(&Some(chart().join("ci").join(name)))
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn without_model_from_the_pod_has_no_model_volume_nor_init_container() {
    let pod = runtime_pod(&render(&None));
    let c = runtime(&pod);
    assert_eq!(env_value(c, "DYCE_MODEL"), None, "the embedded model: no DYCE_MODEL");
    assert!(volume(&pod, "dyce-model").is_none() && mount(c, "dyce-model").is_none());
    assert!(pod.init_containers.is_none(), "no init container");

    // The start-up budget: 2 s × 150 on the ready endpoint, then the usual probes.
    let p = c.startup_probe.as_ref().expect("a startup probe");
    assert_eq!((p.period_seconds, p.failure_threshold), (Some(2), Some(150)));
    let http = p.http_get.as_ref().unwrap();
    assert_eq!((http.path.as_deref(), &http.port), (Some("/v2/health/ready"), &IntOrString::Int(8080)));

    // runtime.model: a path the user mounts; the chart adds nothing.
    let pod = runtime_pod(&template("runtime:\n  model: /models/mine\n").unwrap());
    assert_eq!(env_value(runtime(&pod), "DYCE_MODEL"), Some("/models/mine"));
    assert!(volume(&pod, "dyce-model").is_none() && pod.init_containers.is_none());
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn model_from_pvc_mounts_the_claim_read_only() {
    let pod = runtime_pod(&ci("model-pvc-values.yaml"));
    let c = runtime(&pod);
    let claim = volume(&pod, "dyce-model").and_then(|v| v.persistent_volume_claim.as_ref());
    let claim = claim.expect("volume dyce-model from a claim");
    assert_eq!((claim.claim_name.as_str(), claim.read_only), ("dyce-models", Some(true)));
    let m = mount(c, "dyce-model").expect("the runtime mounts dyce-model");
    assert_eq!(m.mount_path, MODEL_DIR);
    assert_eq!(m.read_only, Some(true));
    assert_eq!(m.sub_path.as_deref(), Some("imagenet-resnet50/v3"));
    assert_eq!(env_value(c, "DYCE_MODEL"), Some(MODEL_DIR));
    assert!(pod.init_containers.is_none(), "a claim needs no copy");
    let p = c.startup_probe.as_ref().unwrap();
    assert_eq!((p.period_seconds, p.failure_threshold), (Some(5), Some(120)), "the value set's budget");

    // Without subPath the claim's root is the bundle.
    let pod = runtime_pod(
        &template("runtime:\n  modelFrom:\n    pvc:\n      enabled: true\n      claimName: b\n").unwrap(),
    );
    assert_eq!(mount(runtime(&pod), "dyce-model").unwrap().sub_path, None);
}

/// The init container: the bundle image, `cp -r <path>/. /var/lib/dyce/model/`, writing to the
/// emptyDir the runtime mounts read-only, under the same restricted profile as the runtime.
fn check_copy(pod: &PodSpec, image: &str, from: &str, what: &str) {
    let inits = pod.init_containers.as_deref().unwrap_or_default();
    assert_eq!(inits.len(), 1, "{what}: one init container");
    let init = &inits[0];
    assert_eq!(init.name, "dyce-model", "{what}");
    assert_eq!(init.image.as_deref(), Some(image), "{what}: image");
    assert_eq!(init.command.as_deref().unwrap(), ["cp", "-r", from, "/var/lib/dyce/model/"], "{what}");
    let m = mount(init, "dyce-model").unwrap_or_else(|| panic!("{what}: init mount"));
    assert_eq!((m.mount_path.as_str(), m.read_only), (MODEL_DIR, None), "{what}: the copy writes");
    let c = runtime(pod);
    let m = mount(c, "dyce-model").unwrap_or_else(|| panic!("{what}: runtime mount"));
    assert_eq!((m.mount_path.as_str(), m.read_only), (MODEL_DIR, Some(true)), "{what}: runtime reads");
    assert_eq!(env_value(c, "DYCE_MODEL"), Some(MODEL_DIR), "{what}: DYCE_MODEL");
    assert_eq!(init.security_context, c.security_context, "{what}: the runtime's securityContext");
    check_restricted(pod, what);
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn model_from_image_copies_the_bundle_in_an_init_container() {
    let objects = ci("model-image-values.yaml");
    let pod = runtime_pod(&objects);
    let digest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let image = format!("registry.example.com/ml/fmnist-bundle@{digest}");
    check_copy(&pod, &image, "/bundles/fmnist/.", "model-image-values.yaml");
    let empty = volume(&pod, "dyce-model").and_then(|v| v.empty_dir.as_ref()).expect("an emptyDir");
    assert_eq!(empty.size_limit.as_ref().map(|q| q.0.as_str()), Some("256Mi"));
    let init = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let limits = init.resources.as_ref().and_then(|r| r.limits.as_ref()).unwrap();
    assert_eq!(limits["memory"].0, "64Mi", "the init container's own resources");
    let secrets: Vec<&str> = pod.image_pull_secrets.iter().flatten().map(|s| s.name.as_str()).collect();
    assert_eq!(secrets, ["registry-credentials"], "the pull secret covers the bundle image too");

    // A tag without digest; a trailing slash in path; no size limit.
    let model = "  modelFrom:\n    image:\n      enabled: true\n      repository: r.example/b\n      \
                 tag: v1\n      path: /opt/bundle/\n      sizeLimit: null\n";
    let pod = runtime_pod(&template(&format!("runtime:\n{model}")).unwrap());
    check_copy(&pod, "r.example/b:v1", "/opt/bundle/.", "tag only");
    let empty = volume(&pod, "dyce-model").and_then(|v| v.empty_dir.as_ref()).expect("an emptyDir");
    assert_eq!(empty.size_limit, None, "sizeLimit: null = no limit");

    // The sidecar example copies too: its pod takes dyce.runtimeInitContainers.
    let yaml = format!("runtime:\n  enabled: false\n{model}sidecarExample:\n  enabled: true\n");
    let sidecar = deployment_pod(&template(&yaml).unwrap(), "-sidecar-example");
    check_copy(&sidecar, "r.example/b:v1", "/opt/bundle/.", "sidecar example");
}

#[test]
#[ignore = "needs helm: scripts/ci/install_helm.sh"]
fn contradicting_or_incomplete_model_values_fail_with_a_message() {
    let pvc = "    pvc:\n      enabled: true\n      claimName: models\n";
    let image = "    image:\n      enabled: true\n      repository: r.example/b\n      tag: v1\n";
    let cases = [
        (
            format!("runtime:\n  model: /models/x\n  modelFrom:\n{pvc}"),
            "runtime.model and runtime.modelFrom.pvc are exclusive",
        ),
        (
            format!("runtime:\n  modelFrom:\n{pvc}{image}"),
            "runtime.modelFrom.pvc and runtime.modelFrom.image are exclusive",
        ),
        (
            format!("runtime:\n  model: /models/x\n  modelFrom:\n{image}"),
            "runtime.model and runtime.modelFrom.image are exclusive",
        ),
        (
            "runtime:\n  modelFrom:\n    pvc:\n      enabled: true\n".into(),
            "runtime.modelFrom.pvc.claimName must name the PersistentVolumeClaim",
        ),
        (
            "runtime:\n  modelFrom:\n    image:\n      enabled: true\n      tag: v1\n".into(),
            "runtime.modelFrom.image.repository must name the image",
        ),
        (
            "runtime:\n  modelFrom:\n    image:\n      enabled: true\n      repository: r.example/b\n".into(),
            "runtime.modelFrom.image: set tag or digest",
        ),
        // The schema: digests are sha256, subPath is relative, the budget positive.
        ("runtime:\n  modelFrom:\n    image:\n      digest: abc\n".into(), "runtime.modelFrom.image.digest"),
        ("runtime:\n  modelFrom:\n    pvc:\n      subPath: /abs\n".into(), "runtime.modelFrom.pvc.subPath"),
        (
            "runtime:\n  startupProbe:\n    failureThreshold: 0\n".into(),
            "runtime.startupProbe.failureThreshold",
        ),
        (
            "runtime:\n  modelFrom:\n    image:\n      tga: v1\n".into(),
            "Additional property tga is not allowed",
        ),
    ];
    for (yaml, message) in &cases {
        match template(yaml) {
            Ok(_) => panic!("helm template accepted:\n{yaml}"),
            Err(e) => {
                assert!(e.contains(message), "helm template of\n{yaml}failed without {message:?}:\n{e}")
            }
        }
    }
}
