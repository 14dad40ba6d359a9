#!/usr/bin/env bash
# Side-by-side: the engine's default against one of its switches turned off, on the same binary,
# alternating processes so that machine noise hits both. By default: small batches run as shards
# (one per thread) against whole batches split layer by layer (OFF_ENV=DYCE_NO_SHARDS=1); with
# OFF_ENV=DYCE_NO_TEAM=1: whole batches on the spinning team against the rayon pool.
# Prints two tables for docs/benchmarks.md:
#   1. backbone only (`dyce bench-backbone`, resnet20 @28, random weights), per batch size;
#   2. every configuration of the embedded model (`dyce bench`, batch BENCH_BATCH, Fashion-MNIST
#      images), img/s and speed-up over the full model against the ideal 1 / MACs ratio.
# Ratios are medians over the per-round ratios.
#
# Usage: scripts/bench/shards.sh [OUT_DIR]   (default target/bench-shards)
# Env: ROUNDS (5 backbone rounds; bench rounds = 2 processes x 3), OFF_ENV (DYCE_NO_SHARDS=1),
#      BATCHES (1,2,4,8,16,32), BENCH_BATCH (32), DYCE_BIN.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/bench-shards}
rounds=${ROUNDS:-5}
off_env=${OFF_ENV:-DYCE_NO_SHARDS=1}
batches=${BATCHES:-1,2,4,8,16,32}
bench_batch=${BENCH_BATCH:-32}
if [[ -z ${DYCE_BIN:-} ]]; then
    cargo build --release -q -p dyce
    bin=target/release/dyce
else
    bin=$DYCE_BIN
fi
rm -rf "$out" && mkdir -p "$out"
for i in $(seq "$rounds"); do
    "$bin" bench-backbone --arch resnet20 --batches "$batches" --repeats 3 --min-seconds 0.5 \
        --json "$out/bb-on-$i.json" >/dev/null 2>&1
    env "$off_env" "$bin" bench-backbone --arch resnet20 --batches "$batches" --repeats 3 \
        --min-seconds 0.5 --json "$out/bb-off-$i.json" >/dev/null 2>&1
done
for i in 1 2; do
    "$bin" bench --model runtime/models/fmnist-resnet20 --batch "$bench_batch" --rounds 3 \
        --json "$out/cfg-on-$i.json" >/dev/null 2>&1
    env "$off_env" "$bin" bench --model runtime/models/fmnist-resnet20 --batch "$bench_batch" --rounds 3 \
        --json "$out/cfg-off-$i.json" >/dev/null 2>&1
done
python3 - "$out" "$rounds" "$off_env" <<'EOF'
import json, statistics as st, sys
out, rounds, off_name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = {}
for i in range(1, rounds + 1):
    on = json.load(open(f"{out}/bb-on-{i}.json"))["results"]
    off = json.load(open(f"{out}/bb-off-{i}.json"))["results"]
    for a, b in zip(on, off):
        rows.setdefault(a["batch"], []).append((a["img_per_s"], b["img_per_s"]))
print(f"| batch | default img/s | {off_name} img/s | default / {off_name} |")
print("|---|---|---|---|")
for n, v in sorted(rows.items()):
    print(f"| {n} | {st.median(p[0] for p in v):,.0f} | {st.median(p[1] for p in v):,.0f} | "
          f"**{st.median(p[0] / p[1] for p in v):.2f}** |")
res = {}
for mode in ("on", "off"):
    for i in (1, 2):
        for c in json.load(open(f"{out}/cfg-{mode}-{i}.json"))["configs"]:
            res.setdefault(c["id"], {"macs": c["macs_ratio"]}).setdefault(mode, []).append(c["img_per_s"])
full_on, full_off = st.median(res["full"]["on"]), st.median(res["full"]["off"])
print()
print(f"| config | MACs ratio | ideal speed-up | default img/s | speed-up (of ideal) | {off_name} img/s | speed-up (of ideal) |")
print("|---|---|---|---|---|---|---|")
for cid, v in res.items():
    ideal = 1 / v["macs"]
    on, off = st.median(v["on"]), st.median(v["off"])
    print(f"| {cid} | {v['macs']:.3f} | {ideal:.2f} | {on:,.0f} | {on / full_on:.2f} ({on / full_on / ideal:.0%}) | "
          f"{off:,.0f} | {off / full_off:.2f} ({off / full_off / ideal:.0%}) |")
EOF
