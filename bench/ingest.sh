#!/usr/bin/env bash
# One ingest step, as bench/run.sh runs it: start a server on a fresh database (or a
# copy of a seeded one), drive it with realistic change_contact callbacks for
# DURATION seconds, check that every acknowledged callback is stored exactly once,
# and print one JSON line.
#
# Usage: bench/ingest.sh SERVER BACKEND STAMPS CONNECTIONS [SEED]
#   SERVER   ours | peer | ours:/path/to/other/binary (an older build, for before/after)
#   BACKEND  sqlite | postgres (ours only; the peer is on SQLite)
#   STAMPS   advancing (one second per 20,000) | same (all in one second)
#   SEED     a SQLite file or PostgreSQL database name (made by bench/seed.sh) to copy
#            as the starting database, e.g. one holding 1 M events
# Environment: DURATION (s, default 20), SHAPE (realistic | small), BIN_DIR, EXTRA_ENV
# (more server settings, e.g. EVENT_RETENTION_DAYS=1), SEED_MOVE=1 (SQLite: move the
# seed instead of copying it, for a 10 M one), FEED=1 (ours: also the median
# latency of 20 feed pages of 100 at three depths, after the load).
# Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER=$1 BACKEND=$2 STAMPS=$3 CONNS=$4 SEED=${5:-}
DURATION=${DURATION:-20}
SHAPE=${SHAPE:-realistic}
BIN_DIR=${BIN_DIR:-target/release}
PORT=${PORT:-18080}
source bench/common.sh
WORK=$(mktemp -d -p "${BENCH_WORK:-/tmp}")
PIDS=()
PG_DB=
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -n $PG_DB ]] && psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

BIN=$BIN_DIR/wecom-provider
[[ $SERVER == ours:* ]] && BIN=${SERVER#ours:}

sql() { # QUERY → one value, from the step's database
  if [[ $BACKEND == sqlite ]]; then
    python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$DB" "$1"
  else
    psql -tA "$DB" -c "$1"
  fi
}

if [[ $SERVER == peer ]]; then
  BACKEND=sqlite
  DB=$WORK/peer.db
  [[ -n $SEED ]] && cp "$SEED" "$DB"
  [[ -n $SEED ]] || python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode=WAL'); c.execute('CREATE TABLE events (id INTEGER PRIMARY KEY, dedupe_key TEXT NOT NULL UNIQUE, plaintext TEXT NOT NULL)')" "$DB"
  PEER_TOKEN=$TOKEN PEER_AES_KEY=$AES_KEY PEER_SUITE_ID=$SUITE PEER_DATABASE=$DB \
    bench/.venv/bin/gunicorn --log-level warning -w "$(nproc)" -b "127.0.0.1:$PORT" --chdir bench/peer app:app &
  PIDS+=("$!")
  wait_answering "http://127.0.0.1:$PORT/"
  sleep 2 # every worker imports wechatpy after the port opens
  for _ in $(seq 1 20); do curl -s -o /dev/null "http://127.0.0.1:$PORT/"; done
  COUNT=$((3000 * DURATION))
else
  if [[ $BACKEND == sqlite ]]; then
    DB=$WORK/ours.db
    if [[ -n $SEED && ${SEED_MOVE:-} == 1 ]]; then mv "$SEED" "$DB"; elif [[ -n $SEED ]]; then cp "$SEED" "$DB"; fi
    URL=sqlite://$DB
  else
    PG_DB=wecom_bench_step_$$
    if [[ -n $SEED ]]; then
      psql -q "$PG_ADMIN" -c "CREATE DATABASE $PG_DB TEMPLATE $SEED" >/dev/null
    else
      psql -q "$PG_ADMIN" -c "CREATE DATABASE $PG_DB" >/dev/null
    fi
    DB=${PG_ADMIN%/*}/$PG_DB
    URL=$DB
  fi
  # shellcheck disable=SC2086 # EXTRA_ENV is a list of NAME=VALUE words
  server_env "$URL" "$PORT" ${EXTRA_ENV:-}
  "${SERVER_ENV[@]}" "$BIN" serve >"$WORK/server.log" 2>&1 &
  PIDS+=("$!")
  wait_ready "http://127.0.0.1:$PORT/healthz"
  COUNT=$((60000 * DURATION)) # wrk threads share it unevenly: at 40,000 one wrapped at 31,800/s
fi

FILE=$WORK/callbacks.txt
"$BIN_DIR/examples/bench_callbacks" "$TOKEN" "$AES_KEY" "$SUITE" "$COUNT" "$SERVER-$STAMPS-$$-$RANDOM" "$FILE" "$STAMPS" "$SHAPE"
BEFORE=$(sql "SELECT count(*) FROM events")
sync # the file's writeback must not compete with the fsyncs measured next
cpu_ticks() { # user + system ticks of the server and its worker processes
  # shellcheck disable=SC2046 # one PID a word
  ticks_of "${PIDS[0]}" $(pgrep -P "${PIDS[0]}")
}
# Ours' write calls and bytes handed to the kernel (on SQLite, where ours writes the
# file itself): what each commit costs beyond its instructions, since every page a
# commit dirties is one more WAL frame, written in two calls.
writes_of() { awk '/^syscw|^write_bytes/ {printf "%s ", $2}' "/proc/${PIDS[0]}/io"; }
START_MS=$(($(date +%s%N) / 1000000))
CPU_BEFORE=$(cpu_ticks)
SYS_BEFORE=$(awk '{print $15}' "/proc/${PIDS[0]}/stat")
WRITES_BEFORE=$(writes_of)
THREADS=$((CONNS < 2 ? 1 : 2))
RESULT=$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s bench/callbacks.lua "http://127.0.0.1:$PORT/" -- "$FILE" "$THREADS" |
  awk '/^RESULT / {sub(/^RESULT /, ""); print}')
CPU_AFTER=$(cpu_ticks)
SYS_AFTER=$(awk '{print $15}' "/proc/${PIDS[0]}/stat")
WRITES_AFTER=$(writes_of)
sleep 1
AFTER=$(sql "SELECT count(*) FROM events")
# One statement, so the pruner deleting meanwhile cannot make it disagree with itself.
DUPLICATES=$(sql "SELECT count(*) - count(DISTINCT dedupe_key) FROM events")
if [[ $SERVER == peer ]]; then
  STORED=$((AFTER - BEFORE))
  SPAN_MS=null
else # counted by arrival: with the pruner on, seeded rows vanish meanwhile
  STORED=$(sql "SELECT count(*) FROM events WHERE received_at >= $START_MS")
  # The server's own clock: from the first stored callback to the last. A second
  # measure of the rate beside wrk's, which once counted requests sent before its clock
  # started (see callbacks.lua).
  SPAN_MS=$(sql "SELECT max(received_at) - min(received_at) FROM events WHERE received_at >= $START_MS")
fi
FEED_MS=null
if [[ ${FEED:-} == 1 && $SERVER != peer ]]; then
  MAX_ID=$(sql "SELECT max(id) FROM events")
  FEED_MS=$(for after in 0 $((MAX_ID / 2)) $((MAX_ID - 200)); do
    for _ in $(seq 1 20); do
      curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $ADMIN" \
        "http://127.0.0.1:$PORT/api/v1/events?after=$after&limit=100"
    done | sort -n | awk -v after="$after" '{a[NR]=$1} END {printf "{\"after\":%d,\"median_ms\":%.2f}\n", after, a[int(NR/2)+1]*1000}'
  done | paste -sd, | sed 's/^/[/; s/$/]/')
fi
RSS=null
[[ $SERVER != peer ]] && RSS=$(awk '/VmHWM/ {print $2}' "/proc/${PIDS[0]}/status")
python3 - "$SERVER" "$BACKEND" "$STAMPS" "$CONNS" "$SHAPE" "${SEED:+seeded}" "$BEFORE" "$AFTER" "$STORED" "$DUPLICATES" "$RSS" "$((CPU_AFTER - CPU_BEFORE))" "$(getconf CLK_TCK)" "$RESULT" "$FEED_MS" "${EXTRA_ENV:-}" "$SPAN_MS" "$((SYS_AFTER - SYS_BEFORE))" "$WRITES_BEFORE" "$WRITES_AFTER" <<'PY'
import json, sys
server, backend, stamps, conns, shape, seeded, before, after, stored, duplicates, rss, ticks, hz, wrk, feed, extra, span_ms, sys_ticks, writes_before, writes_after = sys.argv[1:]
w = json.loads(wrk)
requests = max(w["requests"], 1)
(calls_before, bytes_before), (calls_after, bytes_after) = (map(int, x.split()) for x in (writes_before, writes_after))
ok = w["requests"] - w["non2xx"] - w["socket_errors"]
print(json.dumps({
    "kind": "ingest", "server": server, "backend": backend, "stamps": stamps,
    "connections": int(conns), "shape": shape, "seeded": bool(seeded),
    "rows_before": int(before), "stored": int(stored), "rows_after": int(after),
    "duplicate_keys": int(duplicates),
    "per_s": round(w["requests"] / (w["duration_us"] / 1e6)), "acknowledged_at_most": ok,
    # Stored callbacks over the span of their arrival times (ours only).
    "stored_per_s": None if span_ms in ("null", "", "0") else round(int(stored) / (int(span_ms) / 1e3)),
    # CPU time of the server process (every worker, for the peer) per request answered.
    "server_cpu_us_per_request": round(int(ticks) / int(hz) * 1e6 / requests, 1),
    # Ours only: the kernel's share of that CPU, and the writes behind it.
    "server_system_us_per_request": None if server == "peer" else round(int(sys_ticks) / int(hz) * 1e6 / requests, 1),
    "server_writes_per_request": None if server == "peer" or backend != "sqlite" else {
        "calls": round((calls_after - calls_before) / requests, 2),
        "kib": round((bytes_after - bytes_before) / 1024 / requests, 2),
    },
    "peak_rss_kib": None if rss == "null" else int(rss), "feed": json.loads(feed), "settings": extra, "wrk": w,
}))
PY
