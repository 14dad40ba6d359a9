#!/usr/bin/env bash
# End-to-end check of dyce's observability (docs/metrics.md):
#   1. promtool check + unit tests of the rules, static checks of the dashboards;
#   2. a real runtime, controller and Prometheus on loopback (free ports, temp dir), Prometheus
#      scraping both /metrics every second with the rules loaded;
#   3. load through `dyce load` (a step, so that the controller degrades and restores), or the
#      Python fallback driver on builds without it;
#   4. scripts/checks/observability.py against the live Prometheus: every rule healthy and fed,
#      every dashboard query returning data, metric names, docs/metrics.md, promtool check metrics.
# Needs promtool and prometheus (Debian package `prometheus`; scripts/ci/setup.sh) and fails, never
# skips, without them. Processes it starts are stopped on exit; the temp dir is kept on failure.
#
# Environment:
#   DYCE_BIN       binary to run (default: `cargo build -p dyce`, then target/debug/dyce)
#   DYCE_MODEL     model bundle directory (default: none, i.e. the runtime's embedded model)
#   DYCE_OBS_PROFILE   `dyce load` profile (default step:30,400,8,20)
#   DYCE_OBS_DURATION  seconds of load (default 30)
#   DYCE_OBS_THRESHOLD policy latency threshold (default 50ms)
#   DYCE_OBS_FALLBACK_RATE requests/s of the fallback driver (default 100)
set -euo pipefail
cd "$(dirname "$0")/../.."

PROFILE=${DYCE_OBS_PROFILE:-step:30,400,8,20}
DURATION=${DYCE_OBS_DURATION:-30}
THRESHOLD=${DYCE_OBS_THRESHOLD:-50ms}
FALLBACK_RATE=${DYCE_OBS_FALLBACK_RATE:-100}
SCRAPE=1s
RULES=charts/dyce/rules/dyce.rules.yaml

say() { echo "== observability_test: $*"; }
fail() { echo "observability_test: FAIL: $*" >&2; exit 1; }

for tool in promtool prometheus python3 curl; do
    command -v "$tool" >/dev/null || fail "$tool not found (promtool and prometheus come with the Debian package \`prometheus\`: apt-get install prometheus, see scripts/ci/setup.sh)"
done

say "promtool check rules"
promtool check rules "$RULES"
say "promtool test rules"
promtool test rules observability/rules/dyce.rules.test.yaml
say "static dashboard checks"
python3 scripts/checks/dashboards.py

if [ -z "${DYCE_BIN:-}" ]; then
    say "cargo build -p dyce"
    cargo build -q -p dyce
    DYCE_BIN=target/debug/dyce
fi
[ -x "$DYCE_BIN" ] || fail "$DYCE_BIN is not an executable"

TMP=$(mktemp -d -t dyce-obs.XXXXXX)
PIDS=()
OK=0
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$OK" = 1 ]; then rm -rf "$TMP"; else echo "observability_test: logs kept in $TMP" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits until FILE has a first line (the process's JSON address line) or PID dies.
first_line() {
    local file=$1 pid=$2 what=$3
    for _ in $(seq 600); do
        [ -s "$file" ] && head -n1 "$file" | grep -q '}' && { head -n1 "$file"; return; }
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$TMP"/*.log >&2; fail "$what exited before printing its addresses"; }
        sleep 0.1
    done
    fail "$what printed no address line within 60 s"
}
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
wait_http() {
    local url=$1 what=$2 secs=$3
    for _ in $(seq $((secs * 10))); do
        curl -sf -o /dev/null "$url" && return
        sleep 0.1
    done
    tail -n 20 "$TMP"/*.log >&2
    fail "$what: $url not OK within $secs s"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

model_args=()
[ -n "${DYCE_MODEL:-}" ] && model_args=(--model "$DYCE_MODEL")
say "runtime: $DYCE_BIN serve ${model_args[*]:-(embedded model)}"
# The scraper gets the metrics token only (scripts/checks: Prometheus holds no write credential).
echo "scrape-$$-$RANDOM" >"$TMP/metrics.token"
"$DYCE_BIN" serve ${model_args[@]+"${model_args[@]}"} --data-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 \
    --metrics-addr 127.0.0.1:0 --metrics-token-file "$TMP/metrics.token" --drain-delay 0 \
    >"$TMP/runtime.out" 2>"$TMP/runtime.log" &
PIDS+=($!)
line=$(first_line "$TMP/runtime.out" "${PIDS[-1]}" runtime)
DATA=$(json_field "$line" data)
ADMIN=$(json_field "$line" admin)
METRICS=$(json_field "$line" metrics)
wait_http "http://$DATA/v2/health/ready" "runtime readiness" 120
MODEL=$(curl -sf "http://$ADMIN/v1/configs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["model"])')
say "runtime ready: data $DATA, admin $ADMIN, metrics $METRICS, model $MODEL"
# The scrape credential reads metrics and cannot switch configurations.
scrape_auth="Authorization: Bearer $(cat "$TMP/metrics.token")"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$METRICS/metrics")" = 401 ] || fail "metrics port without the token: not 401"
scraped=$(curl -sf -H "$scrape_auth" "http://$METRICS/metrics") || fail "metrics port with the token: not 200"
grep -q '^dyce_requests_total' <<<"$scraped" || fail "metrics port with the token: no dyce_requests_total"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H "$scrape_auth" -H 'Content-Type: application/json' \
    -d '{"id": "full"}' "http://$ADMIN/v1/config")
[ "$code" = 403 ] || fail "PUT /v1/config with the metrics token answered $code, not 403"
say "metrics token: reads the metrics port, refused (403) on PUT /v1/config"

cat >"$TMP/policy.yaml" <<EOF
apiVersion: dyce.dev/v1alpha1
kind: SloPolicy
metadata:
  name: obs-test
spec:
  runtimes: ["http://$ADMIN"]
  objective:
    latency: {quantile: 0.99, threshold: $THRESHOLD}
  accuracyFloor: 0
EOF
"$DYCE_BIN" policy check "$TMP/policy.yaml" >/dev/null 2>&1 || fail "policy: $("$DYCE_BIN" policy check "$TMP/policy.yaml" 2>&1)"
"$DYCE_BIN" control --policy "$TMP/policy.yaml" --runtime "http://$ADMIN" --listen 127.0.0.1:0 \
    >"$TMP/controller.out" 2>"$TMP/controller.log" &
PIDS+=($!)
line=$(first_line "$TMP/controller.out" "${PIDS[-1]}" controller)
CONTROLLER=$(json_field "$line" controller)
wait_http "http://$CONTROLLER/readyz" "controller readiness" 30
say "controller ready: $CONTROLLER"

PROM_PORT=$(free_port)
sed -e "s|@SCRAPE_INTERVAL@|$SCRAPE|g" -e "s|@RULES_FILE@|$PWD/$RULES|g" \
    -e "s|@RUNTIME_METRICS@|$METRICS|g" -e "s|@METRICS_TOKEN_FILE@|$TMP/metrics.token|g" \
    -e "s|@CONTROLLER@|$CONTROLLER|g" \
    observability/prometheus/prometheus.yml.tmpl >"$TMP/prometheus.yml"
promtool check config "$TMP/prometheus.yml" >/dev/null
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
PROM="http://127.0.0.1:$PROM_PORT"
wait_http "$PROM/-/ready" "prometheus readiness" 60
for _ in $(seq 300); do
    up=$(curl -sf "$PROM/api/v1/query?query=sum(up)" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
    [ "$up" = 2 ] && break
    sleep 0.1
done
[ "$up" = 2 ] || fail "Prometheus does not scrape both targets (sum(up) = $up); see $TMP/prometheus.log"
say "prometheus $PROM scrapes runtime and controller"

# A second controller in Prometheus mode (dry run): the same law, its signals read with PromQL.
"$DYCE_BIN" control --policy "$TMP/policy.yaml" --runtime "http://$ADMIN" --listen 127.0.0.1:0 --dry-run \
    --prometheus "$PROM" --prometheus-selector 'job="dyce-runtime"' --prometheus-window 5 \
    >"$TMP/controller-prom.out" 2>"$TMP/controller-prom.log" &
PIDS+=($!)
line=$(first_line "$TMP/controller-prom.out" "${PIDS[-1]}" "controller (prometheus mode)")
CONTROLLER_PROM=$(json_field "$line" controller)
wait_http "http://$CONTROLLER_PROM/readyz" "controller (prometheus mode) readiness" 30

if "$DYCE_BIN" load --help >/dev/null 2>&1; then
    say "load: dyce load --profile $PROFILE --duration $DURATION"
    # --feedback: true labels for a share of the answers, so the feedback series exist too.
    "$DYCE_BIN" load --url "http://$DATA" --model "$MODEL" --profile "$PROFILE" --duration "$DURATION" --feedback 0.2 \
        >"$TMP/load.json" 2>"$TMP/load.log" || { tail -n 20 "$TMP/load.log" >&2; fail "dyce load failed"; }
    python3 - "$TMP/load.json" <<'EOF'
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(f"   sent {s['sent']}, ok {s['ok']}, shed {s['shed']}, errors {s['errors']}, timeouts {s['timeouts']}, "
      f"p99 {s['latency_ms']['p99']:.1f} ms, accuracy {s['accuracy']:.4f}, configs {sorted(s['configs'])}")
EOF
else
    say "load: dyce load not available; fallback driver at $FALLBACK_RATE requests/s for $DURATION s"
    python3 scripts/checks/observability.py load --url "http://$DATA" --model "$MODEL" \
        --rate "$FALLBACK_RATE" --duration "$DURATION"
fi
curl -sf "http://$CONTROLLER/v1/status" >"$TMP/status.json"
python3 - "$TMP/status.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
changes = ", ".join(c["direction"] + "->" + c["config"] for c in s["changes"]) or "none"
print(f"   controller: now {s['last']['config']} (rank {s['last']['rank']}); recent changes: {changes}")
EOF
curl -sf "http://$CONTROLLER_PROM/v1/status" >"$TMP/status-prom.json"
python3 - "$TMP/status-prom.json" <<'EOF' || fail "controller in Prometheus mode did not read the load"
import json, sys
s = json.load(open(sys.argv[1]))
last = s["last"]
print(f"   controller (prometheus mode, dry run): offered {last['offered_per_second']}/s, "
      f"latency {last['observed_latency']}, decision {last['config']} ({last['reason']})")
assert last["reason"] != "no fresh signals", last
assert (last["offered_per_second"] or 0) > 0, last
EOF
sleep 3  # a few more scrapes and rule evaluations

say "live checks (scripts/checks/observability.py)"
python3 scripts/checks/observability.py check --prometheus "$PROM" --runtime "http://$ADMIN" \
    --controller "http://$CONTROLLER" || fail "live checks failed"
OK=1
say "PASS"
