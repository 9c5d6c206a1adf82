#!/usr/bin/env bash
# Load benchmark of wecom-provider against a wechatpy peer, on this machine.
#   bench/run.sh           full run (10 s per step), about 10 minutes
#   bench/run.sh --quick   smoke run (3 s per step)
# Installs wrk (Debian) and the peer's virtualenv (PyPI) itself. Results go to
# bench/results/ (results.jsonl, report.md); BENCHMARKS.md quotes report.md.
# Traffic goes to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
DURATION=${DURATION:-$([[ $QUICK == 1 ]] && echo 3 || echo 10)}
CONNECTIONS=(1 16 64 256)
[[ -n "${BENCH_CONNECTIONS:-}" ]] && read -ra CONNECTIONS <<<"$BENCH_CONNECTIONS"
OUT=bench/results
RESULTS=$OUT/results.jsonl
WORK=$(mktemp -d)
mkdir -p "$OUT"
: >"$RESULTS"

TOKEN=QDG6eK
AES_KEY=jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C
SUITE=wwbenchsuite
PROVIDER=wwbenchprovider
CORP=wpBenchCorp
ADMIN=bench-admin-token-0123456789-abcdef
PORT=18080
PEER_PORT=18081
PG_ADMIN=${PG_ADMIN_URL:-postgres://root@127.0.0.1:5432/postgres}
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }
record() { echo "$1" >>"$RESULTS"; }

say "tools"
if ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
if ! command -v openssl >/dev/null; then
  apt-get install -y -qq openssl >/dev/null
fi
if [[ ! -x bench/.venv/bin/gunicorn ]]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q -r bench/peer/requirements.txt
fi
cargo build --release --locked -q
cargo build --release --locked -q --example bench_callbacks
BIN=target/release/wecom-provider
GEN=target/release/examples/bench_callbacks
NPROC=$(nproc)
record "{\"kind\":\"machine\",\"cores\":$NPROC,\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\",\"duration_s\":$DURATION}"

say "micro-benchmarks (criterion) and the openssl floor"
if [[ $QUICK == 1 ]]; then
  cargo bench --locked -q --bench callback -- --warm-up-time 1 --measurement-time 2 >/dev/null
else
  cargo bench --locked -q --bench callback >/dev/null
fi
for size in 200 1024 4096 16384; do
  aes=$(openssl speed -decrypt -evp aes-256-cbc -bytes "$size" -seconds 2 2>/dev/null | awk '/^AES-256-CBC|^aes-256-cbc/ {print $NF}' | tr -d k)
  sha=$(openssl speed -bytes $(((size + 50) * 4 / 3)) -seconds 2 sha1 2>/dev/null | awk '/^sha1/ {print $NF}' | tr -d k)
  record "{\"kind\":\"floor\",\"size\":$size,\"aes_kBps\":$aes,\"sha1_kBps\":$sha}"
done

wait_healthy() {
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:$1/healthz" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "server on port $1 did not come up" >&2
  return 1
}

start_ours() { # DATABASE_URL
  env -i PATH="$PATH" DATABASE_URL="$1" LISTEN_ADDR="127.0.0.1:$PORT" ADMIN_TOKEN="$ADMIN" \
    WECOM_API_BASE=http://127.0.0.1:9 RUST_LOG=warn \
    WECOM_PROVIDER_CORPID=$PROVIDER WECOM_PROVIDER_SECRET=bench-provider-secret \
    WECOM_SUITE_ID=$SUITE WECOM_SUITE_SECRET=bench-suite-secret \
    WECOM_SUITE_TOKEN=$TOKEN WECOM_SUITE_ENCODING_AES_KEY=$AES_KEY \
    "$BIN" serve >"$WORK/ours.log" 2>&1 &
  OURS=$!
  PIDS+=("$OURS")
  wait_healthy $PORT
}

stop_ours() {
  kill -TERM "$OURS" && wait "$OURS" 2>/dev/null || true
}

peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

sql() { # BACKEND DATABASE QUERY → single value
  if [[ $1 == sqlite ]]; then
    python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); r=c.execute(sys.argv[2]).fetchone(); c.commit(); print(r[0] if r else '')" "$2" "$3"
  else
    psql -tA "$2" -c "$3"
  fi
}

wrk_run() { # URL SCRIPT CONNECTIONS ARGS... → the RESULT json
  local url=$1 script=$2 conns=$3
  shift 3
  local threads=$((conns < 2 ? 1 : 2))
  wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 10s -s "$script" "$url" -- "$@" "$threads" |
    awk '/^RESULT / {sub(/^RESULT /, ""); print}'
}

ingest() { # LABEL BACKEND DATABASE(for counting) PORT CONNECTIONS...
  local label=$1 backend=$2 database=$3 port=$4
  shift 4
  for conns in "$@"; do
    local file="$WORK/callbacks-$label-$conns.txt" count=$((45000 * DURATION))
    [[ $label == peer ]] && count=$((3000 * DURATION))
    "$GEN" "$TOKEN" "$AES_KEY" "$SUITE" "$count" "$label-$conns" "$file"
    sync # the file's writeback must not compete with the fsyncs measured next
    local before after result
    before=$(sql "$backend" "$database" "SELECT count(*) FROM events")
    result=$(wrk_run "http://127.0.0.1:$port/" bench/callbacks.lua "$conns" "$file")
    sleep 1
    after=$(sql "$backend" "$database" "SELECT count(*) FROM events")
    local distinct
    distinct=$(sql "$backend" "$database" "SELECT count(DISTINCT dedupe_key) FROM events")
    local rss=null
    [[ $label != peer ]] && rss=$(peak_rss_kib "$OURS")
    record "{\"kind\":\"ingest\",\"server\":\"$label\",\"backend\":\"$backend\",\"connections\":$conns,\"stored\":$((after - before)),\"total_rows\":$after,\"distinct_rows\":$distinct,\"peak_rss_kib\":$rss,\"wrk\":$result}"
    echo "$label $backend c=$conns $result stored=$((after - before))"
    rm -f "$file"
  done
}

token_path() { # BACKEND DATABASE
  local now_ms=$(($(date +%s) * 1000)) expires=$((($(date +%s) + 86400) * 1000))
  sql "$1" "$2" "INSERT INTO corps (suite_id, corpid, corp_name, agent_id, permanent_code, status, auth_info, authorized_at, updated_at) VALUES ('$SUITE', '$CORP', 'Bench Corp', 1000002, 'bench-permanent-code', 'active', '{}', $now_ms, $now_ms) RETURNING 1" >/dev/null
  sql "$1" "$2" "INSERT INTO tokens (scope, key, access_token, expires_at, updated_at) VALUES ('corp', '$SUITE/$CORP', 'bench-corp-token', $expires, $now_ms) RETURNING 1" >/dev/null
  for conns in 64 256; do
    local result
    result=$(wrk_run "http://127.0.0.1:$PORT/api/v1/suites/$SUITE/corps/$CORP/token" bench/token.lua "$conns" "$ADMIN")
    record "{\"kind\":\"token\",\"backend\":\"$1\",\"connections\":$conns,\"peak_rss_kib\":$(peak_rss_kib "$OURS"),\"wrk\":$result}"
    echo "token $1 c=$conns $result"
  done
}

feed_latency() { # BACKEND LABEL → median ms of 20 feed pages at three depths
  local rows after
  rows=$(sql "$1" "$3" "SELECT max(id) FROM events")
  for after in 0 $((rows / 2)) $((rows - 200)); do
    local ms
    ms=$(for _ in $(seq 1 20); do
      curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $ADMIN" \
        "http://127.0.0.1:$PORT/api/v1/events?after=$after&limit=100"
    done | sort -n | awk '{a[NR]=$1} END {print a[int(NR/2)+1]*1000}')
    record "{\"kind\":\"feed\",\"backend\":\"$1\",\"label\":\"$2\",\"rows\":$rows,\"after\":$after,\"median_ms\":$ms}"
  done
}

say "ours on SQLite"
SQLITE_DB="$WORK/ours.db"
start_ours "sqlite://$SQLITE_DB"
ingest ours sqlite "$SQLITE_DB" $PORT "${CONNECTIONS[@]}"
feed_latency sqlite small "$SQLITE_DB"
token_path sqlite "$SQLITE_DB"
stop_ours

say "ours on SQLite with 1 million events already stored"
python3 - "$SQLITE_DB" <<'PY'
import os, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1])
conn.execute("PRAGMA synchronous=OFF")
now = int(time.time() * 1000)
# A day of history before the run, keyed as the service keys them: send time, then hash.
day_ago = now // 1000 - 86400
rows = ((f"{day_ago + i * 86400 // 1_000_000:010}-{os.urandom(16).hex()}", now) for i in range(1_000_000))
conn.executemany(
    "INSERT INTO events (provider_corpid, suite_id, corpid, kind, dedupe_key, fields, received_at, status, attempts)"
    " VALUES ('wwbenchprovider', 'wwbenchsuite', 'wpBenchCorp', 'change_contact', ?, '{}', ?, 'done', 1)", rows)
conn.commit()
PY
sync
start_ours "sqlite://$SQLITE_DB"
ingest ours-1m sqlite "$SQLITE_DB" $PORT 64
feed_latency sqlite large "$SQLITE_DB"
stop_ours

if (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  say "ours on PostgreSQL"
  PG_DB=wecom_bench_$$
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PG_DB" -c "CREATE DATABASE $PG_DB"
  PG_URL="${PG_ADMIN%/*}/$PG_DB"
  start_ours "$PG_URL"
  ingest ours postgres "$PG_URL" $PORT "${CONNECTIONS[@]}"
  token_path postgres "$PG_URL"
  stop_ours
  psql -q "$PG_ADMIN" -c "DROP DATABASE $PG_DB WITH (FORCE)"
else
  say "no PostgreSQL on 127.0.0.1:5432: PostgreSQL runs SKIPPED"
fi

say "peer: wechatpy + gunicorn ($NPROC workers) on SQLite"
PEER_DB="$WORK/peer.db"
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode=WAL'); c.execute('CREATE TABLE events (id INTEGER PRIMARY KEY, dedupe_key TEXT NOT NULL UNIQUE, plaintext TEXT NOT NULL)')" "$PEER_DB"
PEER_TOKEN=$TOKEN PEER_AES_KEY=$AES_KEY PEER_SUITE_ID=$SUITE PEER_DATABASE=$PEER_DB \
  bench/.venv/bin/gunicorn --log-level warning -w "$NPROC" -b "127.0.0.1:$PEER_PORT" --chdir bench/peer app:app &
PIDS+=("$!")
# Wait until every worker answers (they import wechatpy after the port opens).
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$PEER_PORT/" && break; sleep 0.1; done
sleep 2
for _ in $(seq 1 20); do curl -s -o /dev/null "http://127.0.0.1:$PEER_PORT/"; done
ingest peer sqlite "$PEER_DB" $PEER_PORT "${CONNECTIONS[@]}"

say "report"
python3 bench/report.py "$RESULTS" "target/criterion" >"$OUT/report.md"
cat "$OUT/report.md"
