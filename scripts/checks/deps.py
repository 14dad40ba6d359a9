#!/usr/bin/env python3
"""Checks the crate graph's boundaries with `cargo tree` (normal dependencies, this lockfile):

- dyce-runtime (what `dyce serve` links) has no training, plotting or search crates: no
  candle-nn, plotters, dyce-search anywhere below it (flate2 is a dependency of its own since
  compressed request bodies: the crate png links anyway, not the datasets reader);
- the controller core builds without kube, k8s-openapi, reqwest, axum or tokio;
- neither controller crate links candle.

Usage: scripts/checks/deps.py    (prints the problems and exits 1 when there are any)
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (package, crates that must not appear below it, crates that must not be direct dependencies)
RULES = [
    ("dyce-runtime", {"candle-nn", "plotters", "dyce-search", "dyce-calibrate"}, set()),
    ("dyce-control-core", {"kube", "k8s-openapi", "reqwest", "axum", "tokio", "candle-core"}, set()),
    ("dyce-controller", {"candle-core", "candle-nn", "dyce-runtime"}, set()),
]


def tree(package, depth=None):
    """The crate names in `package`'s normal dependency tree."""
    cmd = ["cargo", "tree", "--offline", "-q", "-p", package, "-e", "normal", "--prefix", "none"]
    if depth is not None:
        cmd += ["--depth", str(depth)]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def check():
    problems = []
    for package, nowhere, not_direct in RULES:
        for name in sorted(tree(package) & nowhere):
            problems.append(f"{package} depends on {name}")
        for name in sorted(tree(package, depth=1) & not_direct):
            problems.append(f"{package} depends on {name} directly")
    return problems


def main():
    problems = check()
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print("deps: the crate graph keeps its boundaries")


if __name__ == "__main__":
    main()
