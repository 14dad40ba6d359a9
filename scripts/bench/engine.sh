#!/usr/bin/env bash
# Backbone throughput, dyce next to ONNX Runtime on the same random weights, in one run:
# every round runs dyce's fast kernels on each ISA path, optionally a baseline dyce binary,
# then ONNX Runtime, so slow drifts of a shared machine hit every engine alike. The table gives
# medians over rounds and the median of the per-round ratios to ONNX Runtime.
# Usage: scripts/bench/engine.sh [OUT_DIR]    (writes OUT_DIR/*.json and OUT_DIR/table.md)
# Env: ARCHS (default "resnet20 resnet50"; any built-in arch, e.g. "convnextv2_atto convnextv2_atto_s":
#      the small-input ones, resnet20/32/44/56 and *_s, run at 28 px, the others at 224),
#      BATCHES (default 1,8,32), ROUNDS (default 3),
#      ISAS (default: every x86 path this CPU has, best first, e.g. "avx512 avx2"),
#      BASE_BIN (a second dyce binary, e.g. an older commit's, run at BASE_ISA, default avx2),
#      CANDLE=1 (also the candle reference backend, first round only),
#      REPEATS (default 5), MIN_SECONDS (default 1.0), THREADS (default: all CPUs).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/bench-engine}
archs=${ARCHS:-"resnet20 resnet50"}
batches=${BATCHES:-1,8,32}
rounds=${ROUNDS:-3}
repeats=${REPEATS:-5}
min_s=${MIN_SECONDS:-1.0}
threads=${THREADS:-$(nproc)}
if [ -z "${ISAS:-}" ]; then
    ISAS=""
    grep -qw avx512f /proc/cpuinfo && ISAS="avx512"
    grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && ISAS="$ISAS avx2"
    ISAS=${ISAS:-portable}
fi
mkdir -p "$out"
rm -f "$out"/*.json
cargo build --release -q -p dyce
bin=target/release/dyce
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); paths: $ISAS${BASE_BIN:+; baseline $BASE_BIN at ${BASE_ISA:-avx2}}"

# numpy's matmul as a second view of the peak (dyce's own FMA-loop peak is in every dyce JSON).
python3 scripts/peers/onnx_resnet.py peak-matmul --json "$out/peak-matmul.json" >/dev/null

dyce_run() { # binary isa arch tag round
    local extra=()
    [ "$5" = 1 ] && extra=(--export "$out/$3")
    DYCE_KERNELS=$2 $1 bench-backbone --arch "$3" --backend fast --batches "$batches" --repeats "$repeats" \
        --min-seconds "$min_s" --threads "$threads" --json "$out/$3-r$5-$4.json" "${extra[@]}" \
        --leak-check "${LEAK_CHECK:-0}" | sed 's/^/  /'
}

for round in $(seq 1 "$rounds"); do
    for arch in $archs; do
        size=224; [[ $arch =~ ^resnet(20|32|44|56)$|_s$ ]] && size=28
        echo "round $round/$rounds: $arch"
        for isa in $ISAS; do
            dyce_run "$bin" "$isa" "$arch" "dyce-$isa" "$round"
        done
        if [ -n "${BASE_BIN:-}" ]; then
            dyce_run "$BASE_BIN" "${BASE_ISA:-avx2}" "$arch" "base-${BASE_ISA:-avx2}" "$round"
        fi
        if [ "${CANDLE:-0}" = 1 ] && [ "$round" = 1 ]; then
            $bin bench-backbone --arch "$arch" --backend candle --batches "$batches" --repeats "$repeats" \
                --min-seconds "$min_s" --threads "$threads" --json "$out/$arch-r1-candle.json" | sed 's/^/  /'
        fi
        python3 scripts/peers/onnx_resnet.py bench --spec "$out/$arch/spec.json" --weights "$out/$arch/weights.safetensors" \
            --height "$size" --width "$size" --batches "$batches" --repeats "$repeats" --min-seconds "$min_s" \
            --threads "$threads" --json "$out/$arch-r$round-ort.json" | sed 's/^/  /'
    done
done
python3 scripts/bench/backbone_table.py "$out" | tee "$out/table.md"
