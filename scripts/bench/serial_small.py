#!/usr/bin/env python3
"""Small batches serially or on the team, side by side, under HTTP load: latency of one
configuration at a share of its single-image HTTP peak (Poisson arrivals of single-image
requests from `dyce load`), one fresh `dyce serve` per run with `DYCE_SERIAL_IMAGES` set to each
mode (0: every whole batch on the spinning team, the default; N: the stem and blocks of a whole
batch run on the model thread alone while they hold at most N images), the modes rotating every
round. Prints the machine, every run and the medians; writes OUT/summary.json.

Usage: scripts/bench/serial_small.py [--bin target/release/dyce] [--config c00] [--rounds 4]
       [--seconds 15] [--load 0.5] [--modes 0,1,2] [--out target/bench-serial]
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from answer_at_exit import Server, begin, bench_args, load, peak  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    bench_args(ap, rounds=4, seconds=15, out="target/bench-serial")
    ap.add_argument("--load", type=float, default=0.5, help="share of the measured peak to offer")
    ap.add_argument("--modes", default="0,1,2", help="DYCE_SERIAL_IMAGES values to compare")
    a = ap.parse_args()
    m = begin(a)
    flags = ["--initial-config", a.config]
    modes = a.modes.split(",")

    os.environ["DYCE_SERIAL_IMAGES"] = "0"
    peak_rps = peak(a.bin, a.out, flags)
    rate = a.load * peak_rps
    print(f"{a.config} peak {peak_rps:.0f} req/s; offering {rate:.0f} req/s", file=sys.stderr)

    keys = ("mean", "p50", "p99", "compute", "queue")
    runs = {mode: [] for mode in modes}
    for r in range(a.rounds):
        for mode in modes[r % len(modes):] + modes[:r % len(modes)]:
            os.environ["DYCE_SERIAL_IMAGES"] = mode
            s = Server(a.bin, a.out, f"r{r}-{mode}", flags)
            res = load(a.bin, s.data, rate, a.seconds, r + 1, 1, 4096)
            stages = s.stages()
            s.stop()
            lat = res["latency_ms"]
            x = {"mean": lat["mean"], "p50": lat["p50"], "p99": lat["p99"], "compute": stages.get("compute", 0.0),
                 "queue": stages.get("queue", 0.0), "ok": res["ok"],
                 "failed": res["shed"] + res["errors"] + res["timeouts"] + res["dropped_by_client"]}
            runs[mode].append(x)
            print(f"  round {r} serial<={mode}: mean {x['mean']:.2f} ms, p50 {x['p50']:.2f}, p99 {x['p99']:.2f}, "
                  f"compute {x['compute']:.3f}, queue {x['queue']:.3f}, ok {x['ok']}, failed {x['failed']}",
                  file=sys.stderr)

    med = {mode: {k: statistics.median(x[k] for x in rs) for k in keys} for mode, rs in runs.items()}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump({"machine": m, "config": a.config, "peak_rps": peak_rps, "offered_rps": rate, "runs": runs,
                   "median": med}, f, indent=1)
    base = med[modes[0]]
    print(f"| DYCE_SERIAL_IMAGES | client mean ms | p50 ms | p99 ms | server compute ms | server queue ms | "
          f"mean / {modes[0]} |\n|---|---|---|---|---|---|---|")
    for mode in modes:
        x = med[mode]
        print(f"| {mode} | {x['mean']:.2f} | {x['p50']:.2f} | {x['p99']:.2f} | {x['compute']:.3f} | "
              f"{x['queue']:.3f} | {x['mean'] / base['mean']:.3f} |")


if __name__ == "__main__":
    main()
