#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz) of everything that
# decodes untrusted bytes: builds every target of fuzz/ and runs each for
# SECONDS (default 60) on a copy of its committed seed corpus. Prints each
# target's executions and coverage; exits non-zero if any target crashed
# (the crashing input is in fuzz/artifacts/<target>/). Exits 2 if
# cargo-fuzz cannot be installed (fuzzing skipped).
#
# With FUZZ_RUNS=N a target also stops after N executions, whichever
# comes first (the long runs: FUZZ_RUNS=10000000 scripts/fuzz.sh 3600).
#
#   scripts/fuzz.sh [SECONDS]
#   FUZZ_TARGETS="wire replica" scripts/fuzz.sh 300
set -u
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)

if ! "$root/scripts/install-cargo-fuzz.sh"; then
    echo "fuzz.sh: cargo-fuzz is not available; fuzzing skipped" >&2
    exit 2
fi

cd "$root/fuzz"
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
echo "fuzz.sh: building $(echo $targets | wc -w) targets"
start=$(date +%s)
cargo +nightly fuzz build -O || { echo "fuzz.sh: the fuzz targets do not build" >&2; exit 1; }
echo "fuzz.sh: built in $(( $(date +%s) - start )) s"

failed=()
summary=()
for t in $targets; do
    # Runs grow a scratch corpus; the committed seeds stay as they are.
    work=$(mktemp -d)
    cp -r "corpus/$t/." "$work/" 2>/dev/null || true
    log="$root/fuzz/target/fuzz-$t.log"
    echo "fuzz.sh: $t for $seconds s (log: $log)"
    runs=()
    [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
    t0=$(date +%s)
    cargo +nightly fuzz run -O "$t" "$work" -- \
        -max_total_time="$seconds" "${runs[@]}" -malloc_limit_mb=512 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    line="$t: $(( $(date +%s) - t0 ))s execs=${execs:-?} exec/s=${rate:-?} cov=${cov:-?} corpus=$(ls "$work" | wc -l)"
    if [ $rc -ne 0 ]; then
        line="$line CRASHED (exit $rc; see $log and fuzz/artifacts/$t/)"
        failed+=("$t")
    fi
    summary+=("$line")
    rm -rf "$work"
done

echo "fuzz.sh: summary"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz.sh: crashed: ${failed[*]}" >&2
    exit 1
fi
