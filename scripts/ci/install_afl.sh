#!/usr/bin/env bash
# Installs cargo-afl (afl.rs) at target/tools/bin/cargo-afl for the coverage-guided fuzz run
# (scripts/ci/fuzz_afl.sh). Installing cargo-afl from crates.io also builds AFL++ (afl-fuzz,
# afl-cmin and the runtime the instrumented binary links) from the source it vendors, with make
# and the C compiler, into $XDG_DATA_HOME/afl.rs/ (~/.local/share/afl.rs/) for this rustc;
# about 3 minutes on 2 cores. The version is pinned to the `afl` crate in Cargo.lock, since
# the runtime and the library come from one release. Idempotent: a working install is kept.
# Any failure exits non-zero with a one-line reason: a missing tool is never a silent pass.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION="0.18.2"
ROOT="$PWD/target/tools"
BIN="$ROOT/bin/cargo-afl"

fail() {
    echo "install_afl: $*" >&2
    exit 1
}

export PATH="$ROOT/bin:$PATH"

# `cargo afl fuzz -h` runs the afl-fuzz that cargo-afl built (its help exits 1, so the banner is
# what tells); it is missing when AFL++ is not built for this rustc (a new toolchain).
afl_fuzz_runs() {
    local help
    help="$(cargo afl fuzz -h 2>&1 || true)"
    grep -q 'afl-fuzz++[0-9]' <<<"$help"
}

afl_works() {
    [ -x "$BIN" ] && "$BIN" afl --version 2>/dev/null | grep -qF "$VERSION" && afl_fuzz_runs
}

if afl_works; then
    echo "install_afl: cargo-afl $VERSION and AFL++ already installed ($BIN)"
    exit 0
fi

command -v cargo >/dev/null || fail "cargo is not installed"
for tool in make cc; do
    command -v "$tool" >/dev/null || fail "$tool is not installed (AFL++ is built from source)"
done

if ! [ -x "$BIN" ] || ! "$BIN" afl --version 2>/dev/null | grep -qF "$VERSION"; then
    echo "install_afl: cargo install cargo-afl@$VERSION"
    cargo install --locked --quiet --root "$ROOT" "cargo-afl@$VERSION" \
        || fail "cargo install cargo-afl@$VERSION failed"
fi
# The install builds AFL++ only when cargo-afl's source sits in CARGO_HOME, and only warns when
# that build fails; build it explicitly then (--force: a broken earlier build is replaced).
if ! afl_fuzz_runs; then
    echo "install_afl: cargo afl config --build --force"
    cargo afl config --build --force >/dev/null || fail "cargo afl config --build (AFL++ from source) failed"
fi
afl_works || fail "cargo-afl $VERSION is installed but cannot run afl-fuzz"
echo "install_afl: installed cargo-afl $VERSION and AFL++ ($BIN)"
