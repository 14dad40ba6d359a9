#!/usr/bin/env bash
# Answered rate against offered rate under open-loop (Poisson) arrivals, on one configuration:
# where the closed-loop peak of bench_serving.sh keeps the queue exactly full, this shows what a
# runtime sustains when clients do not wait, and what refusals cost once the queue is full.
#
# Usage: scripts/bench/overload_sweep.sh CONFIG RATE [RATE ...]     e.g. scripts/bench/overload_sweep.sh c00 3000 4000
# Env: SECS (default 10) per rate, ENCODING (default binary), BIN (default target/release/dyce).
# One fresh `dyce serve` (embedded model, default flags) for all rates; prints one line per rate.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $# -ge 2 ]] || { echo "usage: $0 CONFIG RATE [RATE ...]" >&2; exit 2; }
cfg=$1
shift
bin=${BIN:-target/release/dyce}
[[ -x $bin ]] || { echo "error: $bin not built (cargo build --release)" >&2; exit 1; }
out=$(mktemp -d)
trap 'kill -TERM "$pid" 2>/dev/null || true; rm -rf "$out"' EXIT
"$bin" serve --data-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 >"$out/serve.out" 2>"$out/serve.err" &
pid=$!
for _ in $(seq 300); do [[ -s $out/serve.out ]] && break; sleep 0.1; done
addr() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$out/serve.out" "$1"; }
data=http://$(addr data)
admin=http://$(addr admin)
for _ in $(seq 600); do curl -sf "$data/v2/health/ready" >/dev/null && break; sleep 0.1; done
curl -sf -X PUT -H 'content-type: application/json' -d "{\"id\": \"$cfg\"}" "$admin/v1/config" >/dev/null \
    || { echo "error: the runtime has no config $cfg" >&2; exit 1; }
compute() { curl -sf "$admin/metrics" | awk '/^dyce_batch_compute_duration_seconds_(sum|count) /{printf "%s ", $2}'; }
printf '%-6s %9s %9s %9s %8s %8s %12s %10s\n' config offered answered refused p50_ms p99_ms ms/img_wall img/batch
for rate in "$@"; do
    before=$(compute)
    "$bin" load --url "$data" --profile "constant:$rate" --duration "${SECS:-10}" \
        --encoding "${ENCODING:-binary}" 2>/dev/null >"$out/load.json"
    after=$(compute)
    python3 - "$out/load.json" "$cfg" "$before" "$after" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
(b_sum, b_n), (a_sum, a_n) = ([float(x) for x in v.split()] for v in sys.argv[3:5])
d = s["duration_s"]
images = s["images_answered"]
per = (a_sum - b_sum) / images * 1e3 if images else float("nan")
batch = images / (a_n - b_n) if a_n > b_n else float("nan")
print(f"{sys.argv[2]:<6} {s['offered_per_second']:9.0f} {s['ok'] / d:9.0f} {s['shed'] / d:9.0f} "
      f"{s['latency_ms']['p50']:8.1f} {s['latency_ms']['p99']:8.1f} {per:12.3f} {batch:10.1f}")
PY
done
