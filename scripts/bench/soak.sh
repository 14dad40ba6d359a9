#!/usr/bin/env bash
# Soak (issue 19): a runtime under mixed traffic for SOAK_SECONDS (default 600): OIP JSON and
# OIP binary load from `dyce load`, PNG images on /v1/classify, a configuration switch every
# 0.2 s, and a controller steering it that is killed and restarted every 60 s. Prints the
# runtime's RSS, open fds and threads at the start (after warm-up) and the end, and the load
# generators' outcome counts: good requests must not fail (errors + timeouts = 0; 429s are
# shed, not failed).
# Usage: scripts/bench/soak.sh [OUT_DIR]   (needs a release build and dataset-fashion-mnist)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-target/soak}
secs=${SOAK_SECONDS:-600}
bin=${DYCE_BIN:-target/release/dyce}
mkdir -p "$out"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs); $(nproc) cores; ${secs} s"

"$bin" serve --data-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 > "$out/serve.out" 2> "$out/serve.log" &
serve=$!
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -s "$out/serve.out" ] && break; sleep 0.1; done
data=$(python3 -c "import json,sys; print(json.loads(open('$out/serve.out').readline())['data'])")
admin=$(python3 -c "import json,sys; print(json.loads(open('$out/serve.out').readline())['admin'])")
until curl -sf "http://$data/v2/health/ready" > /dev/null; do sleep 0.1; done

stats() {  # rss_kib fds threads of the runtime
  echo "$(awk '/VmRSS/ {print $2}' /proc/$serve/status) $(ls /proc/$serve/fd | wc -l) $(awk '/Threads/ {print $2}' /proc/$serve/status)"
}
# A sample every 10 s; the start is taken 60 s in, once every kind of traffic has run (buffers
# of each request size, the controller's connections), so that growth after it is a leak.
( t=0; while kill -0 $serve 2>/dev/null; do echo "$t $(stats)" >> "$out/samples"; sleep 10; t=$((t + 10)); done ) &

( end=$((SECONDS + secs)); while [ $SECONDS -lt $end ]; do
    timeout 60 "$bin" control --policy policies/default.yaml --runtime "http://$admin" \
      --listen 127.0.0.1:0 >> "$out/control.log" 2>&1 || true
  done ) &
( end=$((SECONDS + secs)); i=0; ids=(c00 c03 c07 c14 full)
  while [ $SECONDS -lt $end ]; do
    curl -s -o /dev/null -X PUT -H 'content-type: application/json' \
      -d "{\"id\":\"${ids[$((i % 5))]}\"}" "http://$admin/v1/config" || true
    i=$((i + 1)); sleep 0.2
  done; echo "$i switches" > "$out/switches" ) &
python3 - "$data" "$secs" > "$out/classify.json" <<'PY' &
import io, json, sys, time, urllib.request, gzip, struct
url, secs = sys.argv[1], float(sys.argv[2])
raw = gzip.open('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz').read()[16:]
from PIL import Image
pngs = []
for i in range(64):
    b = io.BytesIO(); Image.frombytes('L', (28, 28), raw[i*784:(i+1)*784]).save(b, 'PNG'); pngs.append(b.getvalue())
ok = shed = failed = 0; end = time.time() + secs; i = 0
while time.time() < end:
    try:
        r = urllib.request.urlopen(urllib.request.Request(f'http://{url}/v1/classify', data=pngs[i % 64], method='POST'), timeout=5)
        ok += r.status == 200
    except urllib.error.HTTPError as e:
        if e.code in (429, 503): shed += 1
        else: failed += 1
    except Exception:
        failed += 1
    i += 1; time.sleep(0.01)
print(json.dumps({"ok": ok, "shed": shed, "failed": failed}))
PY
"$bin" load --url "http://$data" --profile constant:250 --duration "$secs" --encoding json > "$out/load-json.json" 2> /dev/null &
"$bin" load --url "http://$data" --profile constant:150 --duration "$secs" --encoding binary --images-per-request 4 > "$out/load-binary.json" 2> /dev/null
wait %4 %5 2>/dev/null || true
sleep 2
echo "end $(stats)" >> "$out/samples"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = [l.split() for l in open(f"{out}/samples")]
start = next((r for r in rows if r[0] != "end" and int(r[0]) >= 60), rows[0])
rss0, fd0, th0 = map(int, start[1:])
rss1, fd1, th1 = map(int, rows[-1][1:])
print(f"samples every 10 s: RSS MiB " + " ".join(f"{int(r[1])/1024:.0f}" for r in rows))
print(f"from {start[0]} s to the end:")
print(f"runtime RSS {rss0/1024:.1f} -> {rss1/1024:.1f} MiB ({(rss1-rss0)/rss0*100:+.1f}%), fds {fd0} -> {fd1}, threads {th0} -> {th1}")
for name in ["load-json", "load-binary"]:
    s = json.load(open(f"{out}/{name}.json"))
    print(f"{name}: sent {s['sent']} ok {s['ok']} shed {s['shed']} errors {s['errors']} timeouts {s['timeouts']} accuracy {s['accuracy']:.3f}")
print("classify:", open(f"{out}/classify.json").read().strip())
print(open(f"{out}/switches").read().strip() if __import__('os').path.exists(f"{out}/switches") else "switches: running")
PY
