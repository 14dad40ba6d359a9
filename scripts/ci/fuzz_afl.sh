#!/usr/bin/env bash
# The bounded coverage-guided fuzz run of scripts/test.sh: every decoder target of
# fuzz/src/targets.rs under AFL++ (afl.rs, stable toolchain), seeded from fuzz/corpus/<target>/,
# for DYCE_AFL_SECONDS of fuzzing each (default 10). Installs cargo-afl and AFL++ first
# (scripts/ci/install_afl.sh), then builds the instrumented binary in target/afl/build (its own
# target dir: other RUSTFLAGS, so it never invalidates the normal build).
# Prints executions, corpus size, edges found, crashes and hangs per target; exits non-zero on
# any crash or hang, whose inputs stay in target/afl/out/<target>/default/{crashes,hangs}/.
# A longer run: DYCE_AFL_SECONDS=600 scripts/ci/fuzz_afl.sh [TARGET...]
# DYCE_AFL_MERGE=1 also minimizes corpus + AFL's queue with afl-cmin and adds a spread of the
# new inputs to fuzz/corpus/<target>/ as afl-*, for a commit: at most DYCE_AFL_MERGE_FILES (100)
# files and DYCE_AFL_MERGE_KB (96) KiB per target, since the corpus is replayed by
# `cargo test -p dyce-fuzz` and by every fuzz run.
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts/ci/install_afl.sh
export PATH="$PWD/target/tools/bin:$PATH"

SECS="${DYCE_AFL_SECONDS:-10}"
# One input longer than this is a hang. Generous: the slowest legitimate input (a large image
# decode in an unoptimized build on a loaded 2-core machine) takes well under a second.
TIMEOUT_MS="${DYCE_AFL_TIMEOUT_MS:-5000}"
BUILD="$PWD/target/afl/build"
OUT="$PWD/target/afl/out"
BIN="$BUILD/debug/dyce-fuzz-afl"
AFL_DATA="${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs"
DICTS="$AFL_DATA/AFLplusplus/dictionaries"
MERGE_FILES="${DYCE_AFL_MERGE_FILES:-100}"
MERGE_BYTES=$((${DYCE_AFL_MERGE_KB:-96} * 1024))

fail() {
    echo "fuzz_afl: $*" >&2
    exit 1
}

started=$(date +%s)
echo "fuzz_afl: cargo afl build (instrumented) into $BUILD"
# opt-level 1 instead of cargo-afl's 3: the build is most of this script's time in CI, and the
# tiny model's inputs run in microseconds either way.
AFL_OPT_LEVEL="${AFL_OPT_LEVEL:-1}" CARGO_TARGET_DIR="$BUILD" \
    cargo afl build -q -p dyce-fuzz --features afl --bin dyce-fuzz-afl \
    || fail "cargo afl build failed"
built=$(date +%s)
echo "fuzz_afl: built in $((built - started)) s"

# The targets' names come from the binary (dyce_fuzz::targets::NAMES), so the list is one.
all="$("$BIN" 2>&1 | sed -n 's/.*targets: //p' || true)"
[ -n "$all" ] || fail "$BIN did not list its targets"
if [ $# -gt 0 ]; then names=("$@"); else read -r -a names <<<"$all"; fi

# No core files, no CPU governor and no terminal in a container; afl-fuzz would refuse to start.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
# Shared cores: binding one would fail or starve another job.
export AFL_NO_AFFINITY=1
# Stop at the first crash: the run fails either way, and the input is kept.
export AFL_BENCH_UNTIL_CRASH=1

dicts_for() {
    case "$1" in
        policy_yaml) echo "$DICTS/yaml.dict" ;;
        image) echo "$DICTS/png.dict $DICTS/jpeg.dict" ;;
        *) echo "$DICTS/json.dict" ;;
    esac
}

stat_of() {
    sed -n "s/^$1 *: *//p" "$2"
}

failed=0
passed=0
for t in "${names[@]}"; do
    grep -qw -- "$t" <<<"$all" || fail "unknown target $t; targets: $all"
    seeds="fuzz/corpus/$t"
    out="$OUT/$t"
    rm -rf "$out"
    mkdir -p "$out"
    dict_args=()
    for d in $(dicts_for "$t"); do
        [ -f "$d" ] || fail "AFL++ dictionary $d is missing (reinstall: scripts/ci/install_afl.sh)"
        dict_args+=(-x "$d")
    done
    # -V counts fuzzing time only; the backstop covers start-up and seed calibration.
    set +e
    timeout -k 10 $((SECS + 300)) cargo afl fuzz -i "$seeds" -o "$out" -V "$SECS" -t "$TIMEOUT_MS" \
        "${dict_args[@]}" -- "$BIN" "$t" >"$out.log" 2>&1
    rc=$?
    set -e
    stats="$out/default/fuzzer_stats"
    if [ ! -f "$stats" ]; then
        echo "fuzz_afl $t: afl-fuzz did not run (exit $rc); the end of $out.log:"
        tail -n 25 "$out.log" | sed 's/^/  /'
        failed=$((failed + 1))
        continue
    fi
    crashes=$(stat_of saved_crashes "$stats")
    hangs=$(stat_of saved_hangs "$stats")
    printf 'fuzz_afl %s: %s execs (%s/s), corpus %s (from %s seeds), edges %s of %s (%s), stability %s, %s crashes, %s hangs\n' \
        "$t" "$(stat_of execs_done "$stats")" "$(stat_of execs_per_sec "$stats")" \
        "$(stat_of corpus_count "$stats")" "$(find "$seeds" -type f | wc -l)" \
        "$(stat_of edges_found "$stats")" "$(stat_of total_edges "$stats")" \
        "$(stat_of bitmap_cvg "$stats")" "$(stat_of stability "$stats")" "$crashes" "$hangs"
    if [ "$crashes" != 0 ] || [ "$hangs" != 0 ] || [ $rc -ne 0 ]; then
        [ $rc -ne 0 ] && echo "  afl-fuzz exited $rc; see $out.log"
        find "$out/default/crashes" "$out/default/hangs" -type f ! -name README.txt 2>/dev/null \
            | sed 's/^/  input: /'
        failed=$((failed + 1))
        continue
    fi
    passed=$((passed + 1))
    if [ "${DYCE_AFL_MERGE:-0}" = 1 ]; then
        min="$out/cmin"
        mkdir -p "$out/all"
        cp "$seeds"/* "$out/default/queue"/id:* "$out/all/"
        cargo afl cmin -i "$out/all" -o "$min" -t "$TIMEOUT_MS" -- "$BIN" "$t" >"$out.cmin.log" 2>&1 \
            || fail "afl-cmin $t failed; see $out.cmin.log"
        known="$(for f in "$seeds"/*; do sha256sum <"$f"; done)"
        # An even spread over the kept inputs ordered by size (small ones stop in the parser,
        # large ones reach the validation behind it), within a budget per target: the whole
        # minimized queue of a 90 s run is about 4 MB in 3,000 files, too much to commit and to
        # replay in every test run.
        kept=$(find "$min" -type f | wc -l)
        step=$(((kept + MERGE_FILES - 1) / MERGE_FILES))
        added=0 bytes=0
        while read -r size f; do
            h="$(sha256sum <"$f" | cut -c1-64)"
            grep -qF "$h" <<<"$known" && continue
            [ $added -lt "$MERGE_FILES" ] || break
            [ $((bytes + size)) -le "$MERGE_BYTES" ] || continue
            cp "$f" "$seeds/afl-${h:0:16}"
            added=$((added + 1)) bytes=$((bytes + size))
        done < <(find "$min" -type f -printf '%s %p\n' | sort -n | awk -v s="$step" 'NR % s == 1 || s == 1')
        echo "  merged: afl-cmin kept $kept inputs; $added new ($bytes bytes) in $seeds"
    fi
done
echo "fuzz_afl: $((passed + failed)) targets in $(($(date +%s) - started)) s ($((built - started)) s build)"
echo "fuzz_afl: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
