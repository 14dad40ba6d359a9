#!/usr/bin/env python3
"""HTTP peak of two dyce binaries side by side: alternating rounds of `A serve` and `B serve`
(embedded model, default flags) driven above capacity by the same `dyce load` (open loop, one
image per request, at most MAX_IN_FLIGHT outstanding), so a noisy machine hits both alike.

Usage: scripts/bench/ab_http.py BIN_A BIN_B [--rounds 6] [--seconds 10] [--load-bin BIN]
       [--encoding json|binary] [--offer 5000] [--json OUT]
Prints answered images/s per round and the median ratio B / A.
"""

import argparse
import json
import statistics
import subprocess
import time
import urllib.request


def newer_flags(binary):
    """Ports 0 and no drain delay for binaries that have a metrics port and a drain delay (older
    ones have neither flag)."""
    help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
    flags = []
    if "--metrics-addr" in help_text:
        flags += ["--metrics-addr", "127.0.0.1:0"]
    if "--drain-delay" in help_text:
        flags += ["--drain-delay", "0"]
    if "--grpc-addr" in help_text:
        # The gRPC port listens (idle) as in production, on a free port.
        flags += ["--grpc-addr", "127.0.0.1:0"]
    return flags


def serve(binary):
    proc = subprocess.Popen([binary, "serve", "--data-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
                             *newer_flags(binary)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addrs = json.loads(proc.stdout.readline())
    data = "http://" + addrs["data"]
    for _ in range(600):
        try:
            with urllib.request.urlopen(data + "/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, data
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{binary} never became ready")


def peak(load_bin, url, args):
    out = subprocess.run([load_bin, "load", "--url", url, "--profile", f"constant:{args.offer}", "--duration",
                          str(args.seconds), "--max-in-flight", "256", "--encoding", args.encoding],
                         capture_output=True, text=True, check=True)
    s = json.loads(out.stdout)
    assert s["errors"] == 0, s
    return s["ok_per_second"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--offer", type=int, default=5000)
    p.add_argument("--encoding", default="json")
    p.add_argument("--load-bin", default=None, help="dyce binary whose `load` drives both (default: B)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    load_bin = args.load_bin or args.b
    rows = []
    for r in range(args.rounds):
        rates = {}
        # Alternate which binary goes first, so neither always follows the other.
        for tag, binary in ([("a", args.a), ("b", args.b)] if r % 2 == 0 else [("b", args.b), ("a", args.a)]):
            proc, url = serve(binary)
            try:
                rates[tag] = peak(load_bin, url, args)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        rows.append(rates)
        print(f"round {r + 1}: A {rates['a']:.1f} img/s, B {rates['b']:.1f} img/s, B/A {rates['b'] / rates['a']:.3f}",
              flush=True)
    ratios = [x["b"] / x["a"] for x in rows]
    summary = {"a": args.a, "b": args.b, "encoding": args.encoding, "rounds": rows,
               "median_a": statistics.median(x["a"] for x in rows), "median_b": statistics.median(x["b"] for x in rows),
               "median_ratio": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios)}
    print(f"median A {summary['median_a']:.1f}, B {summary['median_b']:.1f} img/s; B/A median {summary['median_ratio']:.3f} "
          f"(range {summary['min_ratio']:.3f}-{summary['max_ratio']:.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
