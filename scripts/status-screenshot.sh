#!/usr/bin/env bash
# Takes the screenshot of the status page in docs/status-page.png: three
# in-memory `dike node` processes with --http, SHOT_GROUPS groups (default 300)
# of the three example kinds, then headless Chromium on the page of one
# node. Needs the `dike` program built (`cargo build --release -p
# dike-examples`; DIKE=path to use another build) and Chromium
# (scripts/install-chromium.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
DIKE=${DIKE:-target/release/dike}
GROUPS_WANTED=${SHOT_GROUPS:-300}
OUT=${OUT:-docs/status-page.png}
export DIKE_COOKIE=screenshot-$$
BASE=$((20000 + RANDOM % 20000))
M="s1@127.0.0.1:$BASE,s2@127.0.0.1:$((BASE + 1)),s3@127.0.0.1:$((BASE + 2))"
TMP=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
for i in 1 2 3; do
  "$DIKE" node --name "s$i" --listen "127.0.0.1:$((BASE + i - 1))" --masters "$M" \
    --in-memory --http "127.0.0.1:$((BASE + 10 + i))" 2>"$TMP/s$i.log" &
  pids+=($!)
done
HTTP="127.0.0.1:$((BASE + 11))"
VIA="127.0.0.1:$BASE,127.0.0.1:$((BASE + 1))"
deadline=$((SECONDS + 60))
until curl -sf "$HTTP/ready" >/dev/null; do
  [ $SECONDS -lt $deadline ] || { echo "the nodes did not get ready"; cat "$TMP"/*.log; exit 1; }
  sleep 0.5
done
kinds=(arithmetic kv set)
for i in $(seq 0 $((GROUPS_WANTED - 1))); do
  name=$(printf "%s-%03d" "${kinds[$((i % 3))]}" "$i")
  "$DIKE" add-group "$name" "${kinds[$((i % 3))]}" --size 3 --via "$VIA" >/dev/null
done
# A few requests, so applied slots differ.
for i in $(seq 0 3 30); do
  "$DIKE" request "$(printf "arithmetic-%03d" "$i")" '{"Add":1}' --via "$VIA" >/dev/null
done
deadline=$((SECONDS + 120))
until [ "$(curl -sf "$HTTP/status.json" | grep -c '"leader": null')" = "0" ]; do
  [ $SECONDS -lt $deadline ] || { echo "not every group got a leader"; exit 1; }
  sleep 1
done
CHROMIUM=$(command -v chromium || command -v chromium-browser)
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$TMP/profile" --hide-scrollbars --window-size=1400,1800 \
  --screenshot="$PWD/$OUT" "http://$HTTP/?refresh=0" 2>/dev/null
echo "wrote $OUT"
