#!/usr/bin/env bash
# Installs kubernetes-validate (PyPI) in a virtualenv at target/tools/kubernetes-validate, with a
# link at target/tools/bin/kubernetes-validate, for the chart tests (tests/chart/): they check
# every object `helm template` renders against the OpenAPI schemas of a Kubernetes release,
# which the package ships (no cluster, no network at test time).
# Idempotent: a working install of the pinned version is kept. Any failure exits non-zero with a
# one-line reason: a missing tool is never a silent pass.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION="1.37.0"
VENV="$PWD/target/tools/kubernetes-validate"
LINK="$PWD/target/tools/bin/kubernetes-validate"

fail() {
    echo "install_kubernetes_validate: $*" >&2
    exit 1
}

if [ -x "$LINK" ] && [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null)" = "$VERSION" ]; then
    echo "install_kubernetes_validate: kubernetes-validate $VERSION already at $LINK"
    exit 0
fi

command -v python3 >/dev/null || fail "python3 is not installed"
rm -rf "$VENV"
python3 -m venv "$VENV" || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
"$VENV/bin/python" -m pip install -q "kubernetes-validate==$VERSION" \
    || fail "pip install kubernetes-validate==$VERSION failed"
mkdir -p "$(dirname "$LINK")"
ln -sfn "$VENV/bin/kubernetes-validate" "$LINK"
"$LINK" --version >/dev/null 2>&1 || fail "the installed kubernetes-validate does not run"
echo "install_kubernetes_validate: installed kubernetes-validate $VERSION at $LINK"
