#!/usr/bin/env python3
"""Shadow checks' overhead, side by side (issue 22's acceptance): peak throughput and p99 at 50%
of the peak with `--shadow-rate` at its default (0.02) against `--shadow-rate 0`, one fresh
`dyce serve` per run, the two modes alternating (the order flips every round) so that drift on a
shared machine hits both alike. Single-image requests of labelled Fashion-MNIST test images from
`dyce load`. Prints the machine, every run and the medians; writes OUT/summary.json.

Acceptance: peak with shadow checks within 3% of peak without; p99 at 50% load unchanged within
noise (compare the ratio with the spread of the rounds).

"on" runs keep the feedback store at its default (--feedback-capacity 100000: every answer kept
under its answer_id); "off" runs turn it off too (--feedback-capacity 0), so the ratio is the
cost of live accuracy as shipped against none of it.

Usage: scripts/bench/shadow_overhead.py [--bin target/release/dyce] [--config c00] [--rounds 5]
       [--seconds 20] [--rate 0.02] [--out target/bench-shadow]
"""

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from answer_at_exit import Server, begin, bench_args, load  # noqa: E402  (same server and load helpers)


def main():
    ap = argparse.ArgumentParser()
    bench_args(ap, rounds=5, seconds=20, out="target/bench-shadow")
    ap.add_argument("--rate", default="0.02", help="--shadow-rate of the 'on' runs")
    a = ap.parse_args()
    m = begin(a)
    modes = {"on": ["--shadow-rate", a.rate], "off": ["--shadow-rate", "0", "--feedback-capacity", "0"]}
    runs = {mode: [] for mode in modes}
    for r in range(a.rounds):
        order = ["on", "off"] if r % 2 == 0 else ["off", "on"]
        for mode in order:
            flags = ["--initial-config", a.config, *modes[mode]]
            s = Server(a.bin, a.out, f"r{r}-{mode}-peak", flags)
            peak = load(a.bin, s.data, 20000, a.seconds / 2, 99 + r, 1, 256)
            s.stop()
            s = Server(a.bin, a.out, f"r{r}-{mode}-half", flags)
            half = load(a.bin, s.data, 0.5 * peak["ok_per_second"], a.seconds, r + 1, 1, 4096)
            s.stop()
            x = {"peak_rps": peak["ok_per_second"], "p99_ms_at_half": half["latency_ms"]["p99"],
                 "p50_ms_at_half": half["latency_ms"]["p50"], "accuracy": half["accuracy"]}
            runs[mode].append(x)
            print(f"  round {r} shadow {mode:3}: peak {x['peak_rps']:.0f} req/s, at 50%: p50 "
                  f"{x['p50_ms_at_half']:.2f} ms, p99 {x['p99_ms_at_half']:.2f} ms", file=sys.stderr)
    keys = ("peak_rps", "p50_ms_at_half", "p99_ms_at_half")
    med = {mode: {k: statistics.median(x[k] for x in rs) for k in keys} for mode, rs in runs.items()}
    ratio = {k: med["on"][k] / med["off"][k] for k in keys}
    spread = {mode: {k: [min(x[k] for x in rs), max(x[k] for x in rs)] for k in keys} for mode, rs in runs.items()}
    summary = {"machine": m, "config": a.config, "shadow_rate": a.rate, "rounds": a.rounds, "seconds": a.seconds,
               "runs": runs, "median": med, "range": spread, "ratio_on_over_off": ratio}
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print("| shadow checks | peak req/s | p50 ms at 50% | p99 ms at 50% |\n|---|---|---|---|")
    for mode, name in (("off", "off (--shadow-rate 0 --feedback-capacity 0)"),
                       ("on", f"on (--shadow-rate {a.rate}, feedback store on)")):
        print(f"| {name} | {med[mode]['peak_rps']:.0f} | {med[mode]['p50_ms_at_half']:.2f} | "
              f"{med[mode]['p99_ms_at_half']:.2f} |")
    print(f"| ratio (on / off) | {ratio['peak_rps']:.3f} | {ratio['p50_ms_at_half']:.3f} | "
          f"{ratio['p99_ms_at_half']:.3f} |")
    ok = ratio["peak_rps"] >= 0.97
    print(f"peak within 3%: {'yes' if ok else 'NO'}", file=sys.stderr)


if __name__ == "__main__":
    main()
