#!/usr/bin/env bash
# Event-pipeline benchmarks (issue "Event pipeline v2"), on this machine, loopback only:
#   1. installs: 1,000 create_auth callbacks against a fake WeCom answering every call
#      after 200 ms (examples/bench_installs), parallel and serial;
#   2. ingest: change_contact callbacks at 64 connections on a fresh SQLite database,
#      for this build and, when given, an older binary, alternating (A B A B) so both
#      see the same machine;
#   3. webhooks: ingest with a subscription delivering every event to a local sink
#      (examples/webhook_sink), and the delivery rate alone and beside a hanging
#      endpoint (examples/bench_webhooks).
# Usage: bench/pipeline.sh [OLD_BINARY]     (DURATION=seconds per ingest step, default 10;
#        STEPS="installs ingest webhooks" by default, a subset runs only those)
set -euo pipefail
cd "$(dirname "$0")/.."

OLD_BIN=${1:-}
DURATION=${DURATION:-10}
STEPS=${STEPS:-installs ingest webhooks}
step() { [[ " $STEPS " == *" $1 "* ]]; }
TOKEN=QDG6eK
AES_KEY=jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C
SUITE=wwbenchsuite
PORT=18090
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --locked -q
cargo build --release --locked -q --example bench_callbacks --example bench_installs --example webhook_sink
NEW_BIN=target/release/wecom-provider
GEN=target/release/examples/bench_callbacks

if step installs; then
  echo "== installs against a WeCom answering after 200 ms ($(date -u +%F))"
  target/release/examples/bench_installs 1000 200 16 1
fi

SINK_PORT=18091
ingest() { # LABEL BINARY [webhook]: with "webhook", a subscription delivers to a local sink
  local label=$1 bin=$2 webhook=${3:-} db="$WORK/$1-$RANDOM.db" file="$WORK/callbacks.txt"
  "$GEN" "$TOKEN" "$AES_KEY" "$SUITE" $((40000 * DURATION)) "$label-$RANDOM" "$file"
  sync
  local env=(env -i PATH="$PATH" DATABASE_URL="sqlite://$db" LISTEN_ADDR="127.0.0.1:$PORT" RUST_LOG=warn
    ADMIN_TOKEN=bench-admin-token-0123456789-abcdef WECOM_API_BASE=http://127.0.0.1:9
    WECOM_PROVIDER_CORPID=wwbenchprovider WECOM_PROVIDER_SECRET=s WECOM_SUITE_ID=$SUITE
    WECOM_SUITE_SECRET=s WECOM_SUITE_TOKEN=$TOKEN WECOM_SUITE_ENCODING_AES_KEY=$AES_KEY)
  local sink=
  if [[ -n $webhook ]]; then
    "${env[@]}" "$bin" migrate >/dev/null 2>&1
    "${env[@]}" "$bin" webhooks add --url "http://127.0.0.1:$SINK_PORT/" >/dev/null
    target/release/examples/webhook_sink $SINK_PORT $((DURATION + 8)) >"$WORK/sink.json" &
    sink=$!
  fi
  "${env[@]}" "$bin" serve >"$WORK/$label.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 200); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
  local result
  result=$(wrk -t2 -c64 -d"${DURATION}s" --timeout 10s -s bench/callbacks.lua "http://127.0.0.1:$PORT/" -- "$file" 2 |
    awk '/^RESULT / {sub(/^RESULT /, ""); print}')
  if [[ -n $sink ]]; then wait "$sink"; fi
  kill -TERM "$pid" && wait "$pid" 2>/dev/null || true
  python3 - "$label" "$result" "$([[ -n $sink ]] && cat "$WORK/sink.json")" <<'PY'
import json, sys
label, r = sys.argv[1], json.loads(sys.argv[2])
rate = r["requests"] / (r["duration_us"] / 1e6)
print(f"ingest {label:>4}: {rate:8.0f} callbacks/s at 64 connections, p50 {r['p50_us']/1000:.1f} ms, "
      f"p99 {r['p99_us']/1000:.1f} ms, non-2xx {r['non2xx']}, socket errors {r['socket_errors']}")
if sys.argv[3]:
    sink = json.loads(sys.argv[3])
    print(f"   webhook deliveries meanwhile: {sink['requests']} of {r['requests']} in {sink['span_s']} s, "
          f"{sink['rate']} events/s")
PY
  rm -f "$file"
}

if step ingest; then
  echo "== ingest on SQLite, 64 connections, ${DURATION} s per step, fresh database each"
  for _ in 1 2; do
    if [[ -n $OLD_BIN ]]; then ingest old "$OLD_BIN"; fi
    ingest new "$NEW_BIN"
  done
fi

if step webhooks; then
  echo "== ingest with one webhook subscription delivering to a local sink"
  for _ in 1 2; do ingest hook "$NEW_BIN" webhook; done
  echo "== webhook delivery alone, and beside a hanging endpoint"
  cargo run --release --locked -q --example bench_webhooks
fi
