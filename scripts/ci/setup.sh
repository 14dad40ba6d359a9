#!/usr/bin/env bash
# Installs everything the tests and benchmarks need that cargo does not bring:
# Debian packages (Fashion-MNIST, Prometheus) and the Python peers (onnxruntime).
# Idempotent; any failure is fatal, so a missing tool never turns into a silent pass.
set -euo pipefail
cd "$(dirname "$0")/../.."

need_apt=()
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
command -v promtool >/dev/null && command -v prometheus >/dev/null || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import onnxruntime, onnx, numpy, safetensors, pytest, tritonclient.http, tritonclient.grpc' 2>/dev/null; then
    echo "setup: pip install -r scripts/peers/requirements.txt"
    python3 -m pip install -q -r scripts/peers/requirements.txt
fi
python3 -c 'import onnxruntime, onnx; print("setup: onnxruntime", onnxruntime.__version__, "onnx", onnx.__version__)'
scripts/ci/install_helm.sh
scripts/ci/install_kubernetes_validate.sh
