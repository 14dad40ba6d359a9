#!/usr/bin/env bash
# Backbone throughput, dyce next to ONNX Runtime on the same random weights, in one run.
# Usage: scripts/bench/engine.sh [OUT_DIR]    (writes OUT_DIR/*.json and OUT_DIR/table.md)
# Env: ARCHS (default "resnet20 resnet50"), BATCHES (default 1,8,32), BACKENDS (default "fast candle"),
#      REPEATS (default 7), MIN_SECONDS (default 1.0).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/bench-engine}
archs=${ARCHS:-"resnet20 resnet50"}
batches=${BATCHES:-1,8,32}
backends=${BACKENDS:-"fast candle"}
repeats=${REPEATS:-7}
min_s=${MIN_SECONDS:-1.0}
mkdir -p "$out"
cargo build --release -q -p dyce
bin=target/release/dyce

# numpy's matmul as a second view of the peak (dyce's own FMA-loop peak is in every dyce JSON).
python3 scripts/peers/onnx_resnet.py peak-matmul --json "$out/peak-matmul.json" >/dev/null

for arch in $archs; do
    size=224; [[ $arch =~ ^resnet(20|32|44|56)$ ]] && size=28
    for be in $backends; do
        $bin bench-backbone --arch "$arch" --backend "$be" --batches "$batches" --repeats "$repeats" \
            --min-seconds "$min_s" --export "$out/$arch" --json "$out/$arch-dyce-$be.json" \
            --leak-check "${LEAK_CHECK:-0}"
    done
    python3 scripts/peers/onnx_resnet.py bench --spec "$out/$arch/spec.json" --weights "$out/$arch/weights.safetensors" \
        --height "$size" --width "$size" --batches "$batches" --repeats "$repeats" --min-seconds "$min_s" \
        --json "$out/$arch-ort.json"
done
python3 scripts/bench/backbone_table.py "$out" | tee "$out/table.md"
