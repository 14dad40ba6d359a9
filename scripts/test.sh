#!/usr/bin/env bash
# Every test: installs what the tests need, then runs the Rust tests including the ones that
# need external tools (marked #[ignore] for a plain `cargo test`), then the Python peer tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace -- --include-ignored
python3 -m pytest -q scripts/
