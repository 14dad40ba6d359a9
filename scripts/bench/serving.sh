#!/usr/bin/env bash
# Serving benchmarks: `dyce serve` (embedded fmnist-resnet20, default flags: max-batch 32,
# max-queue 256) driven over HTTP by `dyce load` (open loop, labelled Fashion-MNIST test images),
# both on this machine, next to the in-process peak of `dyce bench`. Tables for docs/benchmarks.md.
#
# Usage: scripts/bench/serving.sh [OUT_DIR]     (default target/bench-serving)
# Writes OUT_DIR/runs/* (per run: load summary, live lines, timings, /metrics and /proc snapshots),
# OUT_DIR/inproc.json, OUT_DIR/summary.json and OUT_DIR/tables.md (printed at the end).
#
# Scenarios, all on one server except the overload one, configurations interleaved in every
# repetition so that they are compared side by side:
#   inproc    `dyce bench` (batch 32, no HTTP): img/s of every configuration.
#   peak      per config and images-per-request (1 and $BATCH_IPR): offered load above capacity
#             ($PEAK_OVER x the config's in-process img/s) with at most 256/ipr requests outstanding (so never more images than the
#             server's queue admits: no 429s, the model thread never idles); throughput = images
#             computed per second in a steady-state window, from /metrics.
#   latency   per config: Poisson arrivals of single-image requests at 50% and 90% of that
#             config's single-image peak (median over the repetitions); p50/p99 of ok answers.
#   low       per config: 1 image every 1/$LOW_RATE s (constant spacing, so batches of 1):
#             end-to-end latency vs compute per batch from the server's histograms.
#   overload  a fresh server on the full config: 50% of the full peak for $OVERLOAD_SECONDS,
#             then $OVERLOAD_FACTOR x the peak for $OVERLOAD_SECONDS (single-image requests,
#             per-request logs): share and latency of 429s, latency of accepted requests, VmHWM.
# Every run records the CPU time of the server and of the load generator (/proc/PID/stat).
#
# Env: CONFIGS ("full c00 c03 c14"), REPS (3), PEAK_SECONDS (12), LAT_SECONDS (15),
#      LOW_SECONDS (20), LOW_RATE (25), BATCH_IPR (32), PEAK_OVER (1.5), PEAK_OFFER (10000 images/s
#      offered in peak runs when SKIP_INPROC is set), OVERLOAD_SECONDS (60), OVERLOAD_FACTOR (3),
#      SKIP_INPROC (set it to skip `dyce bench`), ENCODING (json: how `dyce load` sends images,
#      `json` numbers or `binary` tensor data),
#      DYCE_BIN (use this binary instead of `cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/bench-serving}
configs=${CONFIGS:-"full c00 c03 c14"}
reps=${REPS:-3}
peak_s=${PEAK_SECONDS:-12}
lat_s=${LAT_SECONDS:-15}
low_s=${LOW_SECONDS:-20}
low_rate=${LOW_RATE:-25}
batch_ipr=${BATCH_IPR:-32}
peak_offer=${PEAK_OFFER:-10000}
peak_over=${PEAK_OVER:-1.5}
over_s=${OVERLOAD_SECONDS:-60}
over_factor=${OVERLOAD_FACTOR:-3}
encoding=${ENCODING:-json}
py="python3 scripts/bench/serving.py"
model=fmnist-resnet20
queue=256

if [[ -z ${DYCE_BIN:-} ]]; then
    cargo build --release -q -p dyce
    bin=target/release/dyce
else
    bin=$DYCE_BIN
fi
rm -rf "$out"
mkdir -p "$out/runs"
# A copy, so that a rebuild during the run cannot swap the binary between runs.
cp "$bin" "$out/dyce"
src_bin=$bin
bin=$out/dyce
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export RUST_LOG=warn

$py machine --bin "$src_bin" >"$out/machine-start.json"
cat >"$out/settings.json" <<EOF
{"configs": "$configs", "reps": $reps, "peak_seconds": $peak_s, "lat_seconds": $lat_s,
 "low_seconds": $low_s, "low_rate": $low_rate, "batch_ipr": $batch_ipr, "peak_offer": $peak_offer,
 "peak_over": $peak_over,
 "overload_seconds": $over_s, "overload_factor": $over_factor, "max_queue": $queue, "bin": "$src_bin",
 "encoding": "$encoding"}
EOF

SPID='' DATA='' ADMIN=''
cleanup() { [[ -n $SPID ]] && kill -TERM "$SPID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

# start_server STEM [serve flags...]: starts `dyce serve` on the embedded model, ports 0.
start_server() {
    local stem=$1
    shift
    "$bin" serve --data-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 --drain-delay 0 "$@" >"$stem.out" 2>"$stem.err" &
    SPID=$!
    for _ in $(seq 300); do [[ -s $stem.out ]] && break; sleep 0.1; done
    DATA=http://$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["data"])' "$stem.out")
    ADMIN=http://$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["admin"])' "$stem.out")
    for _ in $(seq 600); do curl -sf "$DATA/v2/health/ready" >/dev/null && return 0; sleep 0.1; done
    echo "server not ready" >&2
    exit 1
}

stop_server() {
    kill -TERM "$SPID"
    wait "$SPID" || true
    SPID=''
}

ticks() { [[ -n ${1:-} && -r /proc/$1/stat ]] && awk '{print $14 + $15}' "/proc/$1/stat" || echo null; }
# CPU ticks spent by the whole machine (all CPUs, everything but idle and iowait).
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$SPID/status"; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$SPID/status"; }

# snap FILE [CLIENT_PID]: /metrics plus the CPU ticks of server, client and machine, timestamped.
snap() {
    local t0 t1 st ct bt
    st=$(ticks "$SPID")
    ct=$(ticks "${2:-}")
    bt=$(busy)
    t0=$(date +%s.%N)
    curl -sf "$ADMIN/metrics" >"$1.metrics"
    t1=$(date +%s.%N)
    printf '{"t0": %s, "t1": %s, "server_ticks": %s, "client_ticks": %s, "busy_ticks": %s, "vmhwm_kb": %s, "vmrss_kb": %s}\n' \
        "$t0" "$t1" "$st" "$ct" "$bt" "$(hwm)" "$(rss)" >"$1.snap.json"
}

switch() {
    curl -sf -X PUT -H 'content-type: application/json' -d "{\"id\": \"$1\"}" "$ADMIN/v1/config" >/dev/null
}

# run_load TAG WARM WINDOW_END [dyce load flags...]: runs `dyce load` in the background;
# snapshots before it, WARM s after launch, WINDOW_END s after launch, and after it ends.
run_load() {
    local tag=$1 warm=$2 wend=$3
    shift 3
    local r=$out/runs/$tag
    snap "$r.s0"
    /usr/bin/time -f '{"user": %U, "sys": %S, "wall": %e, "maxrss_kb": %M}' -o "$r.time.json" \
        "$bin" load --url "$DATA" --model "$model" --encoding "$encoding" "$@" >"$r.sum.json" 2>"$r.err" &
    local tpid=$! lpid=''
    for _ in $(seq 50); do lpid=$(pgrep -P "$tpid" | head -1) && [[ -n $lpid ]] && break; sleep 0.02; done
    local t
    t=$(date +%s.%N)
    sleep "$warm"
    snap "$r.s1" "$lpid"
    sleep "$(python3 -c "import time,sys; print(max(0.0, float(sys.argv[1]) + float(sys.argv[2]) - time.time()))" "$t" "$wend")"
    snap "$r.s2" "$lpid"
    wait "$tpid"
    snap "$r.s3"
    printf '{"tag": "%s", "args": "%s"}\n' "$tag" "$*" >"$r.meta.json"
    echo "  $tag: $($py brief "$r")" >&2
}

if [[ -z ${SKIP_INPROC:-} ]]; then
    echo "in-process: dyce bench (batch 32, 12 interleaved rounds)" >&2
    b0=$(busy)
    /usr/bin/time -f '{"user": %U, "sys": %S, "wall": %e}' -o "$out/inproc.time.json" \
        "$bin" bench --model runtime/models/$model --json "$out/inproc.json" >"$out/inproc.txt"
    echo "{\"busy_ticks\": [$b0, $(busy)]}" >"$out/inproc.busy.json"
fi

echo "server A: peaks, latency at 50%/90% of peak, low load" >&2
start_server "$out/serverA"
for rep in $(seq "$reps"); do
    for cfg in $configs; do
        switch "$cfg"
        for ipr in 1 "$batch_ipr"; do
            run_load "peak-$cfg-ipr$ipr-r$rep" 4 $((peak_s - 1)) --profile "constant:$($py offer "$out" "$cfg" "$ipr")" \
                --images-per-request "$ipr" --max-in-flight $((queue / ipr)) --duration "$peak_s"
        done
    done
done
for rep in $(seq "$reps"); do
    for cfg in $configs; do
        switch "$cfg"
        for level in 50 90; do
            rate=$($py rate "$out" "$cfg" "$level")
            run_load "lat-$cfg-$level-r$rep" 3 $((lat_s - 1)) --profile "constant:$rate" --duration "$lat_s" \
                --seed "$rep"
        done
    done
done
for cfg in $configs; do
    switch "$cfg"
    run_load "low-$cfg" 3 $((low_s - 1)) --profile "constant:$low_rate" --arrivals constant --duration "$low_s"
done
stop_server

echo "server B: overload (full config)" >&2
start_server "$out/serverB"
base=$($py rate "$out" full 50)
over=$($py rate "$out" full $((over_factor * 100)))
run_load "ov-base" 5 $((over_s - 2)) --profile "constant:$base" --duration "$over_s" --log "$out/runs/ov-base.log.jsonl"
run_load "ov-over" 5 $((over_s - 2)) --profile "constant:$over" --duration "$over_s" --log "$out/runs/ov-over.log.jsonl"
stop_server

$py machine --bin "$src_bin" >"$out/machine-end.json"
$py summarize "$out" >"$out/tables.md"
cat "$out/tables.md"
