#!/usr/bin/env bash
# CPU instructions per durable callback: a count that does not move with the noisy
# clock. Runs the server under `valgrind --tool=callgrind` on a fresh SQLite database,
# sends a fixed batch of realistic change_contact callbacks (bench_callbacks) over 8
# keep-alive connections, twice as many in a second run, and reports the difference
# of the two totals per extra callback, so start-up and shutdown cancel out.
#
# Usage: bench/instructions.sh [BINARY]       (N=callbacks of the first run, default 2000;
#        STAMPS=advancing|same; KEEP=dir keeps the callgrind outputs for callgrind_annotate)
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${1:-target/release/wecom-provider}
N=${N:-2000}
STAMPS=${STAMPS:-advancing}
source bench/common.sh
PORT=${PORT:-18085}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }

total_instructions() { # COUNT → Ir of the whole server run
  local count=$1 db=$WORK/run-$1.db out=$WORK/callgrind-$1.out
  target/release/examples/bench_callbacks "$TOKEN" "$AES_KEY" "$SUITE" "$count" "ir-$count-$RANDOM" "$WORK/calls.txt" "$STAMPS"
  server_env "sqlite://$db" "$PORT"
  "${SERVER_ENV[@]}" valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" serve >"$WORK/server-$count.log" 2>&1 &
  local pid=$!
  wait_ready "http://127.0.0.1:$PORT/healthz" 60 # valgrind starts slowly
  python3 - "$PORT" "$WORK/calls.txt" <<'PY'
import http.client, sys, threading
port, lines = int(sys.argv[1]), open(sys.argv[2], encoding="utf-8").read().splitlines()
failures = []
def send(part):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for line in part:
        path, body = line.split("\t", 1)
        conn.request("POST", path, body.encode(), {"Content-Type": "text/xml"})
        answer = conn.getresponse()
        if answer.read() != b"success":
            failures.append(answer.status)
threads = [threading.Thread(target=send, args=(lines[i::8],)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"{len(failures)} callbacks not acknowledged: {failures[:5]}")
PY
  kill -TERM "$pid"
  wait "$pid" || true
  [[ -n ${KEEP:-} ]] && mkdir -p "$KEEP" && cp "$out" "$KEEP/"
  awk '/^summary:|^totals:/ {print $2; exit}' "$out"
}

small=$(total_instructions "$N")
large=$(total_instructions $((2 * N)))
per=$(((large - small) / N))
echo "{\"kind\":\"instructions\",\"binary\":\"$BIN\",\"stamps\":\"$STAMPS\",\"callbacks\":[$N,$((2 * N))],\"totals\":[$small,$large],\"per_callback\":$per}"
