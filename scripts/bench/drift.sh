#!/usr/bin/env bash
# Live accuracy under drift, side by side (issue 22's acceptance): the same load and the same
# drift, once with the policy's floor held on live accuracy (spec.accuracy.source: live) and once
# on the offline table (offline). Each run: a fresh `dyce serve` (embedded fmnist-resnet20,
# shadow checks at --shadow-rate), a local `dyce control` with that policy, and `dyce load` with
# labelled Fashion-MNIST test images, shifted from DRIFT_AT seconds on. Prints, per run, the real
# accuracy before and after the drift (from `dyce load`'s labelled answers), the configs the
# controller excluded and when, and the decisions; everything is kept under OUT.
#
# For the alert: point a real Prometheus at both runs with observability/prometheus/prometheus.yml.tmpl
# (runtime metrics port and controller address are printed at the start of each run), load
# charts/dyce/rules/dyce.rules.yaml, and watch DyceLiveAccuracyUnderFloor on /api/v1/alerts.
#
# Usage: scripts/bench/drift.sh [BIN]   (default target/release/dyce)
# Env:   RATE (req/s, default 300), SECONDS_ (run length, default 240), DRIFT_AT (default 60),
#        DRIFT (KIND[:SHARE], default contrast), SHADOW_RATE (default 0.02), DROP (maxAccuracyDrop,
#        default 0.035), HALF_LIFE (default 30), MIN_SAMPLES (default 50), OUT (target/bench-drift)
set -euo pipefail
BIN=${1:-target/release/dyce}
RATE=${RATE:-300}
SECONDS_=${SECONDS_:-240}
DRIFT_AT=${DRIFT_AT:-60}
DRIFT=${DRIFT:-contrast}
SHADOW_RATE=${SHADOW_RATE:-0.02}
DROP=${DROP:-0.035}
HALF_LIFE=${HALF_LIFE:-30}
MIN_SAMPLES=${MIN_SAMPLES:-50}
OUT=${OUT:-target/bench-drift}
mkdir -p "$OUT"
export RUST_LOG=${RUST_LOG:-info}

run() {
  local source=$1 dir="$OUT/$1"
  mkdir -p "$dir"
  "$BIN" serve --data-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --grpc-addr off --metrics-addr 127.0.0.1:0 \
    --drain-delay 0 --shadow-rate "$SHADOW_RATE" --shadow-half-life "$HALF_LIFE" \
    >"$dir/serve.out" 2>"$dir/serve.err" &
  local serve=$!
  for _ in $(seq 600); do [ -s "$dir/serve.out" ] && break; sleep 0.1; done
  local addrs data admin metrics
  addrs=$(head -1 "$dir/serve.out")
  data=http://$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["data"])' "$addrs")
  admin=http://$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["admin"])' "$addrs")
  metrics=http://$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["metrics"])' "$addrs")
  until curl -sf "$data/v2/health/ready" >/dev/null; do sleep 0.2; done
  cat >"$dir/policy.yaml" <<YAML
apiVersion: dyce.dev/v1alpha1
kind: SloPolicy
metadata: {name: drift-$source}
spec:
  runtimes: ["$admin"]
  objective: {latency: {quantile: 0.99, threshold: 50ms}, maxQueueDepth: 64}
  maxAccuracyDrop: $DROP
  accuracy: {source: $source, minSamples: $MIN_SAMPLES, hysteresis: 0.01}
  control: {interval: 100ms}
YAML
  "$BIN" control --policy "$dir/policy.yaml" --listen 127.0.0.1:0 >"$dir/control.out" 2>"$dir/control.err" &
  local control=$!
  for _ in $(seq 100); do [ -s "$dir/control.out" ] && break; sleep 0.1; done
  local ctl
  ctl=http://$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["controller"])' "$(head -1 "$dir/control.out")")
  echo "[$source] runtime data $data admin $admin metrics $metrics; controller $ctl" >&2
  # Poll the live accuracy and the controller's status every 5 s while the load runs.
  ( while kill -0 $serve 2>/dev/null; do
      t=$(date +%s.%N)
      printf '{"t": %s, "accuracy": %s, "status": %s}\n' "$t" \
        "$(curl -sf "$admin/v1/accuracy" || echo null)" "$(curl -sf "$ctl/v1/status" || echo null)"
      sleep 5
    done ) >"$dir/timeline.jsonl" &
  local poller=$!
  "$BIN" load --url "$data" --profile "constant:$RATE" --duration "$SECONDS_" --seed 1 \
    --drift-at "$DRIFT_AT" --drift "$DRIFT" --log "$dir/requests.jsonl" >"$dir/load.json" 2>"$dir/load.err"
  curl -sf "$ctl/v1/status" >"$dir/status.json" || true
  kill $poller $control $serve 2>/dev/null || true
  wait $serve $control 2>/dev/null || true
  python3 - "$dir" "$source" <<'PY'
import json, sys
d, source = sys.argv[1], sys.argv[2]
load = json.load(open(f"{d}/load.json"))
dr = load["drift"]
status = json.load(open(f"{d}/status.json"))  # local mode: the policy's PolicyStatus
changes = [l for l in open(f"{d}/control.err") if "config excluded" in l or "allowed again" in l]
excluded = ", ".join(sorted(status.get("accuracy_excluded", {}))) or "-"
print(f"| {source} | {dr['before']['accuracy']:.4f} ({dr['before']['images']}) | "
      f"{dr['after']['accuracy']:.4f} ({dr['after']['images']}) | {load['accuracy']:.4f} | {excluded} |")
for l in changes:
    print("   ", l.strip()[:240], file=sys.stderr)
PY
}

echo "| accuracy source | real accuracy before drift (images) | after drift (images) | whole run | excluded at the end |"
echo "|---|---|---|---|---|"
run live
run offline
echo "drift: $DRIFT from ${DRIFT_AT}s, $RATE req/s for ${SECONDS_}s, maxAccuracyDrop $DROP, shadow rate $SHADOW_RATE, half-life ${HALF_LIFE}s; files under $OUT" >&2
