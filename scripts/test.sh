#!/usr/bin/env bash
# Every test: installs what the tests need, then runs the Rust tests including the ones that
# need external tools (marked #[ignore] for a plain `cargo test`), the engine's fast-backend
# tests once more on the portable kernels, the bounded fuzz runs of every decoder (mutation:
# scripts/ci/fuzz.sh; coverage-guided under AFL++: scripts/ci/fuzz_afl.sh), the Python peer
# tests, and the observability checks against a real Prometheus (rules, dashboards, live
# metrics).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ci/setup.sh
cargo test --workspace --no-fail-fast -- --include-ignored
# The kernel crate tests every ISA explicitly; this also covers the process-wide override.
DYCE_KERNELS=portable cargo test -p dyce-runtime --test fast_backend --test convnext
DYCE_KERNELS=portable cargo test -p dyce --test onnx_reference -- --include-ignored
scripts/ci/fuzz.sh
scripts/ci/fuzz_afl.sh
python3 -m pytest -q -p no:cacheprovider scripts/
scripts/checks/observability_test.sh
