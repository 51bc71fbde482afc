#!/usr/bin/env bash
# Runs TOTAL simulator schedules split over PROCS processes (disjoint seed
# ranges from FIRST), and fails if any schedule fails.
#   scripts/sim-soak.sh [TOTAL=1000000] [PROCS=$(nproc)] [FIRST=1000000]
set -euo pipefail
total=${1:-1000000}
procs=${2:-$(nproc)}
first=${3:-1000000}
cd "$(dirname "$0")/.."
cargo build --release -q -p dike-core --features sim --example sim_soak
bin=target/release/examples/sim_soak
per=$(( (total + procs - 1) / procs ))
pids=()
for i in $(seq 0 $((procs - 1))); do
  start=$(( first + i * per ))
  n=$per
  if [ $(( i * per + n )) -gt "$total" ]; then n=$(( total - i * per )); fi
  [ "$n" -gt 0 ] || continue
  "$bin" "$start" "$n" > "/tmp/sim-soak-$i.out" 2> "/tmp/sim-soak-$i.err" &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    status=1
    echo "process $i failed:"; tail -50 "/tmp/sim-soak-$i.err"
  fi
  cat "/tmp/sim-soak-$i.out"
done
exit $status
