#!/usr/bin/env bash
# Live accuracy under drift, side by side (issue 22's acceptance): the same load and the same
# drift, once with the policy's floor held on live accuracy (spec.accuracy.source: live) and once
# on the offline table (offline). Each run: a fresh `dyce serve` (embedded fmnist-resnet20, shadow
# checks at SHADOW_RATE, feedback on), a local `dyce control` with that policy, a real Prometheus
# scraping both with charts/dyce/rules/dyce.rules.yaml loaded, and `dyce load` with labelled
# Fashion-MNIST test images above the full model's capacity (so only cheaper configs hold the
# latency objective), shifted from DRIFT_AT seconds on, posting the true labels of a FEEDBACK
# share of its answers to POST /v1/feedback.
#
# Prints one table row per run: real accuracy before and after the drift (from `dyce load`'s
# labelled answers), the configs served after the drift with their real accuracy, when the last
# answer from a config under the floor came, the configs the controller excluded, and whether
# DyceLiveAccuracyUnderFloor fired in Prometheus (and when). Everything is kept under OUT.
#
# Usage: scripts/bench/drift.sh [BIN]   (default target/release/dyce)
# Env:   RATE (req/s, default 3400: enough that the offline controller needs the table's cheap
#        end, c00–c05, which the blur takes under the floor; at 2600 the 30-epoch table has
#        configs cheap enough that stay above it), SECONDS_ (run length, default 240), DRIFT_AT (default 60),
#        DRIFT (KIND[:SHARE], default blur:0.1), SHADOW_RATE (default 0.02), FEEDBACK (share of
#        answers given their true label, default 0.2), DROP (maxAccuracyDrop, default 0.056: with the
#        shipped table a floor of 0.9297 − 0.056 = 0.874),
#        HALF_LIFE (default 30), MIN_SAMPLES (default 1000), OUT (default target/bench-drift),
#        RUNS (default "live offline")
# Needs prometheus and promtool (Debian package `prometheus`, scripts/ci/setup.sh).
set -euo pipefail
BIN=${1:-target/release/dyce}
RATE=${RATE:-3400}
SECONDS_=${SECONDS_:-240}
DRIFT_AT=${DRIFT_AT:-60}
DRIFT=${DRIFT:-blur:0.1}
SHADOW_RATE=${SHADOW_RATE:-0.02}
FEEDBACK=${FEEDBACK:-0.2}
DROP=${DROP:-0.056}
HALF_LIFE=${HALF_LIFE:-30}
MIN_SAMPLES=${MIN_SAMPLES:-1000}
OUT=${OUT:-target/bench-drift}
RUNS=${RUNS:-live offline}
RULES=charts/dyce/rules/dyce.rules.yaml
for tool in prometheus promtool python3 curl; do
  command -v "$tool" >/dev/null || { echo "drift.sh: $tool not found (scripts/ci/setup.sh installs it)" >&2; exit 1; }
done
mkdir -p "$OUT"
export RUST_LOG=${RUST_LOG:-info}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() {
  local source=$1 dir="$OUT/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$dir/metrics.token"
  "$BIN" serve --data-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --grpc-addr off --metrics-addr 127.0.0.1:0 \
    --metrics-token-file "$dir/metrics.token" --drain-delay 0 \
    --shadow-rate "$SHADOW_RATE" --shadow-half-life "$HALF_LIFE" \
    >"$dir/serve.out" 2>"$dir/serve.err" &
  local serve=$!
  for _ in $(seq 600); do [ -s "$dir/serve.out" ] && break; sleep 0.1; done
  local line data admin metrics
  line=$(head -1 "$dir/serve.out")
  data=http://$(field "$line" data); admin=http://$(field "$line" admin); metrics=$(field "$line" metrics)
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
  ctl=$(field "$(head -1 "$dir/control.out")" controller)
  local port; port=$(free_port)
  sed -e "s|@SCRAPE_INTERVAL@|1s|g" -e "s|@RULES_FILE@|$PWD/$RULES|g" \
      -e "s|@RUNTIME_METRICS@|$metrics|g" -e "s|@METRICS_TOKEN_FILE@|$PWD/$dir/metrics.token|g" \
      -e "s|@CONTROLLER@|$ctl|g" observability/prometheus/prometheus.yml.tmpl >"$dir/prometheus.yml"
  promtool check config "$dir/prometheus.yml" >/dev/null
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn >"$dir/prometheus.log" 2>&1 &
  local prom=$! promurl="http://127.0.0.1:$port"
  until curl -sf "$promurl/-/ready" >/dev/null; do sleep 0.2; done
  echo "[$source] runtime data $data admin $admin metrics $metrics; controller $ctl; prometheus $promurl" >&2
  # Poll the live accuracy, the controller's status and Prometheus' alerts every 5 s.
  ( while kill -0 $serve 2>/dev/null; do
      printf '{"t": %s, "accuracy": %s, "status": %s, "alerts": %s}\n' "$(date +%s.%N)" \
        "$(curl -sf "$admin/v1/accuracy" || echo null)" "$(curl -sf "http://$ctl/v1/status" || echo null)" \
        "$(curl -sf "$promurl/api/v1/alerts" || echo null)"
      sleep 5
    done ) >"$dir/timeline.jsonl" &
  local poller=$!
  local t0; t0=$(date +%s.%N)
  "$BIN" load --url "$data" --profile "constant:$RATE" --duration "$SECONDS_" --seed 1 \
    --drift-at "$DRIFT_AT" --drift "$DRIFT" --feedback "$FEEDBACK" \
    --log "$dir/requests.jsonl" >"$dir/load.json" 2>"$dir/load.err"
  curl -sf "http://$ctl/v1/status" >"$dir/status.json" || true
  # When the alert was firing, from the ALERTS series (1 s resolution) over the run.
  curl -sf "$promurl/api/v1/query_range" --data-urlencode 'query=ALERTS{alertname="DyceLiveAccuracyUnderFloor",alertstate="firing"}' \
    --data-urlencode "start=$t0" --data-urlencode "end=$(date +%s.%N)" --data-urlencode step=1 >"$dir/alerts.json" || true
  echo "$t0" >"$dir/t0"
  kill $poller $control $serve $prom 2>/dev/null || true
  wait $serve $control $prom 2>/dev/null || true
}

for r in $RUNS; do run "$r"; done
python3 scripts/bench/drift_report.py "$OUT" $RUNS
echo "drift: $DRIFT from ${DRIFT_AT}s, $RATE req/s for ${SECONDS_}s, maxAccuracyDrop $DROP, shadow rate $SHADOW_RATE, feedback share $FEEDBACK, half-life ${HALF_LIFE}s, minSamples $MIN_SAMPLES; files under $OUT" >&2
