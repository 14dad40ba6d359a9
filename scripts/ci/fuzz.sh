#!/usr/bin/env bash
# The bounded fuzz run of scripts/test.sh: every decoder target (fuzz/src/targets.rs) replays
# its committed corpus, then runs mutated inputs for DYCE_FUZZ_SECONDS each (default 10, about
# 80 s in all). Offline, stable toolchain. Prints executions per target; exits non-zero on any
# finding, whose input is in target/fuzz/findings/<target>/.
# A longer run: DYCE_FUZZ_SECONDS=600 scripts/ci/fuzz.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
export DYCE_FUZZ_SECONDS="${DYCE_FUZZ_SECONDS:-10}"
cargo run -q -p dyce-fuzz -- "$@"
