#!/usr/bin/env bash
# The load benchmark of wecom-provider on this machine, against a wechatpy + gunicorn
# peer doing the same durable work in the same run. Loopback only.
#
#   bench/run.sh            the full run, about 45 minutes
#   bench/run.sh --quick    a smoke run (3 s steps, 100,000-event seeds), a few minutes
#
# Steps (STEPS="micro ingest prune scale cluster instructions" by default; a subset
# runs only those):
#   micro         criterion micro-benchmarks and the openssl floor
#   ingest        realistic change_contact callbacks (bench_callbacks), 64 connections,
#                 20 s per step; both stamp patterns (advancing one second per 20,000,
#                 all in one second), each on a fresh database and on one holding 1 M
#                 events: ours on SQLite, the peer on SQLite, ours on PostgreSQL
#   prune         ingest on 1 M events two days old with EVENT_RETENTION_DAYS=1 (the
#                 pruner deleting them meanwhile) against the same without pruning
#   scale         ingest and feed-page latency on SQLite holding 10 M events
#   cluster       1, 2 and 3 instances on one PostgreSQL behind haproxy (bench/cluster.sh)
#   instructions  CPU instructions per durable callback under callgrind
#
# Installs what it needs (wrk, haproxy, valgrind from Debian; the peer's virtualenv
# from PyPI). Results: bench/results/results.jsonl and report.md (BENCHMARKS.md quotes it).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
export DURATION=${DURATION:-$([[ $QUICK == 1 ]] && echo 3 || echo 20)}
SEED_EVENTS=$([[ $QUICK == 1 ]] && echo 100000 || echo 1000000)
LARGE_EVENTS=$([[ $QUICK == 1 ]] && echo 300000 || echo 10000000)
STEPS=${STEPS:-micro ingest prune scale cluster instructions}
step() { [[ " $STEPS " == *" $1 "* ]]; }
OUT=bench/results
RESULTS=$OUT/results.jsonl
export BENCH_WORK=${BENCH_WORK:-/tmp}
SEEDS=$(mktemp -d -p "$BENCH_WORK")
source bench/common.sh
PG_SEED=wecom_bench_seed_$$
mkdir -p "$OUT"
: >"$RESULTS"
cleanup() {
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PG_SEED WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$SEEDS"
}
trap cleanup EXIT
say() { printf '\n== %s (%s)\n' "$*" "$(date -u +%T)"; }
record() { echo "$1" >>"$RESULTS"; echo "$1" | cut -c1-240; }

say "tools"
missing=()
for tool in wrk haproxy valgrind; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]})); then apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; fi
if [[ ! -x bench/.venv/bin/gunicorn ]]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q -r bench/peer/requirements.txt
fi
cargo build --release --locked -q
cargo build --release --locked -q --example bench_callbacks
PG=0
(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && PG=1

# The machine's durable-commit rate today: one-row SQLite commits with fsync, in the
# directory the steps use. Every durable figure below is bounded by it.
FSYNC=$(python3 - "$SEEDS/fsync.db" <<'PY'
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL"); conn.execute("PRAGMA synchronous=FULL")
conn.execute("CREATE TABLE t (v BLOB)")
n, start = 0, time.time()
while time.time() - start < 3:
    conn.execute("INSERT INTO t VALUES (randomblob(1000))"); n += 1
print(round(n / (time.time() - start)))
PY
)
record "{\"kind\":\"machine\",\"date\":\"$(date -u +%F)\",\"commit\":\"$(git rev-parse --short HEAD)\",\"cores\":$(nproc),\"cpu\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\",\"duration_s\":$DURATION,\"fsync_commits_per_s\":$FSYNC,\"postgres\":$PG}"

if step micro; then
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
fi

if step ingest || step prune; then
  say "seeding $SEED_EVENTS events"
  bench/seed.sh sqlite "$SEED_EVENTS" "$SEEDS/ours.db"
  bench/seed.sh peer "$SEED_EVENTS" "$SEEDS/peer.db"
  END_AGO=$((2 * 86400)) bench/seed.sh sqlite "$SEED_EVENTS" "$SEEDS/old.db"
  ((PG)) && bench/seed.sh postgres "$SEED_EVENTS" "$PG_SEED"
fi

if step ingest; then
  for stamps in advancing same; do
    for seeded in fresh seeded; do
      say "ingest: $stamps stamps, $seeded database"
      ours_seed= peer_seed= pg_seed=
      [[ $seeded == seeded ]] && ours_seed=$SEEDS/ours.db peer_seed=$SEEDS/peer.db pg_seed=$PG_SEED
      record "$(bench/ingest.sh ours sqlite "$stamps" 64 $ours_seed)"
      record "$(bench/ingest.sh peer sqlite "$stamps" 64 $peer_seed)"
      if ((PG)); then
        record "$(bench/ingest.sh ours postgres "$stamps" 64 $pg_seed)"
      fi
    done
  done
  ((PG)) || say "no PostgreSQL on 127.0.0.1:5432: PostgreSQL steps SKIPPED"
fi

if step prune; then
  # The pruner starts with the server and deletes in batches of 2,000 with pauses, so
  # a 20 s step on 1 M prunable events prunes throughout the load.
  for _ in 1 2; do
    say "ingest beside the pruner (1 M events past a 1-day retention), and without it"
    record "$(EXTRA_ENV=EVENT_RETENTION_DAYS=1 bench/ingest.sh ours sqlite advancing 64 "$SEEDS/old.db")"
    record "$(EXTRA_ENV=EVENT_RETENTION_DAYS=30 bench/ingest.sh ours sqlite advancing 64 "$SEEDS/old.db")"
  done
fi

if step scale; then
  say "scale: feed latency and ingest with $SEED_EVENTS and $LARGE_EVENTS events (SQLite)"
  [[ -f $SEEDS/ours.db ]] || bench/seed.sh sqlite "$SEED_EVENTS" "$SEEDS/ours.db"
  record "$(FEED=1 bench/ingest.sh ours sqlite advancing 64 "$SEEDS/ours.db")"
  rm -f "$SEEDS"/*.db
  bench/seed.sh sqlite "$LARGE_EVENTS" "$SEEDS/large.db"
  record "$(FEED=1 SEED_MOVE=1 bench/ingest.sh ours sqlite advancing 64 "$SEEDS/large.db")"
  rm -f "$SEEDS/large.db"
fi

if step cluster; then
  if ((PG)); then
    for instances in 1 2 3; do
      say "cluster: $instances instance(s) on PostgreSQL behind haproxy"
      record "$(bench/cluster.sh "$instances")"
    done
  else
    say "no PostgreSQL on 127.0.0.1:5432: cluster steps SKIPPED"
  fi
fi

if step instructions; then
  say "instructions per durable callback (callgrind)"
  for stamps in advancing same; do
    record "$(N=$([[ $QUICK == 1 ]] && echo 300 || echo 1000) STAMPS=$stamps bench/instructions.sh)"
  done
fi

say "report"
python3 bench/report.py "$RESULTS" target/criterion >"$OUT/report.md"
cat "$OUT/report.md"
