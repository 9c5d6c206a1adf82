#!/usr/bin/env bash
# Several instances on one PostgreSQL behind haproxy, on loopback: INSTANCES servers
# share a fresh database and a stateful fake WeCom (bench/fake_wecom.py); haproxy
# balances round-robin. Three checks, one JSON line:
#   ingest   realistic change_contact callbacks for DURATION s at 64 connections
#            through haproxy: every acknowledged callback stored once;
#   installs a suite_ticket, then INSTALLS create_auth callbacks, each posted twice
#            (as WeCom retries) to whichever instance haproxy picks: every corp active,
#            every auth code exchanged exactly once;
#   storm    the corp tokens dropped, then 64 connections ask STORM_CORPS corps' tokens
#            for 5 s through every instance (the per-key rate limit raised for it): one
#            get_corp_token per corp.
#
# Usage: bench/cluster.sh INSTANCES      (DURATION default 20, INSTALLS default 300,
#        STORM_CORPS default 20, BIN_DIR default target/release)
set -euo pipefail
cd "$(dirname "$0")/.."

INSTANCES=$1
DURATION=${DURATION:-20}
INSTALLS=${INSTALLS:-300}
STORM_CORPS=${STORM_CORPS:-20}
BIN_DIR=${BIN_DIR:-target/release}
BIN=$BIN_DIR/wecom-provider
GEN=$BIN_DIR/examples/bench_callbacks
LB_PORT=18100 FAKE_PORT=18200
source bench/common.sh
PG_DB=wecom_bench_cluster_$$
DB=${PG_ADMIN%/*}/$PG_DB
WORK=$(mktemp -d -p "${BENCH_WORK:-/tmp}")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
sql() { psql -tA "$DB" -c "$1"; }

psql -q "$PG_ADMIN" -c "CREATE DATABASE $PG_DB" >/dev/null
python3 bench/fake_wecom.py $FAKE_PORT 0.2 &
PIDS+=("$!")
wait_answering "http://127.0.0.1:$FAKE_PORT/_stats"

# The instances share this machine's cores: each gets its share of HTTP workers, as
# several instances on one host would be deployed (more threads than cores only switch).
HTTP_WORKERS=$(($(nproc) / INSTANCES > 0 ? $(nproc) / INSTANCES : 1))
SERVERS=
for i in $(seq 1 "$INSTANCES"); do
  port=$((LB_PORT + i))
  server_env "$DB" "$port" WECOM_API_BASE=http://127.0.0.1:$FAKE_PORT API_RATE_LIMIT_PER_MINUTE=10000000 HTTP_WORKERS="$HTTP_WORKERS"
  "${SERVER_ENV[@]}" "$BIN" serve >"$WORK/server-$i.log" 2>&1 &
  PIDS+=("$!")
  wait_ready "http://127.0.0.1:$port/healthz" # one at a time: they share the migration
  SERVERS+="  server s$i 127.0.0.1:$port"$'\n'
done
cat >"$WORK/haproxy.cfg" <<CFG
global
  maxconn 4096
defaults
  mode http
  option http-keep-alive
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend callbacks
  bind 127.0.0.1:$LB_PORT
  default_backend instances
backend instances
  balance roundrobin
  http-reuse always
$SERVERS
CFG
haproxy -f "$WORK/haproxy.cfg" -db &
PIDS+=("$!")
wait_ready "http://127.0.0.1:$LB_PORT/healthz"

# Where the CPU goes during the ingest: the instances, PostgreSQL, haproxy, and what
# the machine left idle.
cpu_snapshot() {
  echo "$(ticks_of "${PIDS[@]:1:$INSTANCES}") $(ticks_of $(pgrep -x postgres)) $(ticks_of "${PIDS[-1]}")" \
    "$(awk '/^cpu / {print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $5 + $6}' /proc/stat)"
}

# Ingest through the balancer.
"$GEN" "$TOKEN" "$AES_KEY" "$SUITE" $((30000 * DURATION)) "cluster-$$" "$WORK/callbacks.txt" advancing
sync
CPU_BEFORE=$(cpu_snapshot)
INGEST=$(wrk -t2 -c64 -d"${DURATION}s" --timeout 10s -s bench/callbacks.lua "http://127.0.0.1:$LB_PORT/" -- "$WORK/callbacks.txt" 2 |
  awk '/^RESULT / {sub(/^RESULT /, ""); print}')
CPU_AFTER=$(cpu_snapshot)
sleep 1
STORED=$(sql "SELECT count(*) FROM events WHERE kind = 'change_contact'")
# The servers' own clock beside wrk's count (see callbacks.lua).
SPAN_MS=$(sql "SELECT max(received_at) - min(received_at) FROM events WHERE kind = 'change_contact'")
DISTINCT=$(sql "SELECT count(DISTINCT dedupe_key) FROM events")
ROWS=$(sql "SELECT count(*) FROM events")
rm -f "$WORK/callbacks.txt"

# An install wave, every create_auth posted twice, in an order that spreads the two
# copies over different instances.
"$GEN" "$TOKEN" "$AES_KEY" "$SUITE" $((INSTALLS + 1)) "$$" "$WORK/installs.txt" advancing install
INSTALL_START=$(date +%s.%N)
python3 - "$LB_PORT" "$WORK/installs.txt" <<'PY'
import http.client, random, sys, threading
port, lines = int(sys.argv[1]), open(sys.argv[2], encoding="utf-8").read().splitlines()
def post(conn, line):
    path, body = line.split("\t", 1)
    conn.request("POST", path, body.encode(), {"Content-Type": "text/xml"})
    answer = conn.getresponse()
    if answer.read() != b"success":
        sys.exit(f"callback not acknowledged: {answer.status}")
post(http.client.HTTPConnection("127.0.0.1", port, timeout=30), lines[0])  # the suite_ticket first
wave = lines[1:] * 2
random.Random(7).shuffle(wave)
failures = []
def send(part):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for line in part:
        try:
            post(conn, line)
        except SystemExit as error:
            failures.append(str(error))
threads = [threading.Thread(target=send, args=(wave[i::16],)) for i in range(16)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"{len(failures)} install callbacks failed: {failures[:3]}")
PY
ACTIVE=0
for _ in $(seq 1 600); do
  ACTIVE=$(sql "SELECT count(*) FROM corps WHERE status = 'active'")
  [[ $ACTIVE -ge $INSTALLS ]] && break
  sleep 0.1
done
for _ in $(seq 1 600); do # the install effects (admin lists, first corp tokens) finish too
  [[ $(sql "SELECT count(*) FROM events WHERE status <> 'done'") == 0 ]] && break
  sleep 0.1
done
INSTALL_S=$(python3 -c "import sys,time; print(round(time.time() - float(sys.argv[1]), 2))" "$INSTALL_START")
AFTER_INSTALLS=$(curl -s "http://127.0.0.1:$FAKE_PORT/_stats")

# Token storm: every corp token gone from the database (and, after the 1 s memory
# TTL, from every instance), then many callers at once through the balancer.
sql "DELETE FROM tokens WHERE scope = 'corp'" >/dev/null
sleep 1.5
cat >"$WORK/storm.lua" <<LUA
local corps, n = {}, 0
for i = 1, $STORM_CORPS do corps[i] = "/api/v1/suites/$SUITE/corps/wpBench" .. i .. "/token" end
wrk.headers["Authorization"] = "Bearer $ADMIN"
function request()
  n = n + 1
  return wrk.format("GET", corps[n % #corps + 1])
end
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format('RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, errors.status, errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
LUA
STORM=$(wrk -t2 -c64 -d5s --timeout 40s -s "$WORK/storm.lua" "http://127.0.0.1:$LB_PORT/" |
  awk '/^RESULT / {sub(/^RESULT /, ""); print}')
AFTER_STORM=$(curl -s "http://127.0.0.1:$FAKE_PORT/_stats")

python3 - "$INSTANCES" "$INSTALLS" "$STORM_CORPS" "$STORED" "$DISTINCT" "$ROWS" "$ACTIVE" "$INSTALL_S" \
  "$INGEST" "$AFTER_INSTALLS" "$AFTER_STORM" "$STORM" "$SPAN_MS" "$CPU_BEFORE" "$CPU_AFTER" "$(getconf CLK_TCK)" <<'PY'
import json, sys
instances, installs, storm_corps, stored, distinct, rows, active = map(int, sys.argv[1:8])
install_s = float(sys.argv[8])
ingest, after_installs, after_storm, storm = (json.loads(a) for a in sys.argv[9:13])
span_ms = int(sys.argv[13] or 0)
cpu = [int(a) - int(b) for a, b in zip(sys.argv[15].split(), sys.argv[14].split())]
hz, requests = int(sys.argv[16]), max(ingest["requests"], 1)
us_per_callback = lambda ticks: round(ticks / hz * 1e6 / requests, 1)
acked = ingest["requests"] - ingest["non2xx"] - ingest["socket_errors"]
refreshes_before = after_installs["corp_token_refreshes"]
storm_refreshes = {corp: n - refreshes_before.get(corp, 0) for corp, n in after_storm["corp_token_refreshes"].items()}
storm_refreshes = {corp: n for corp, n in storm_refreshes.items() if n}
print(json.dumps({
    "kind": "cluster", "instances": instances, "backend": "postgres", "balancer": "haproxy",
    "ingest": {
        "per_s": round(ingest["requests"] / (ingest["duration_us"] / 1e6)),
        "stored_per_s": round(stored / (span_ms / 1e3)) if span_ms else None,
        "p50_us": ingest["p50_us"], "p99_us": ingest["p99_us"], "p999_us": ingest["p999_us"],
        "max_us": ingest["max_us"], "acknowledged_at_most": acked, "stored": stored,
        "stored_once": rows == distinct, "nothing_acknowledged_lost": stored >= acked,
        "non2xx": ingest["non2xx"], "socket_errors": ingest["socket_errors"],
        "cpu_us_per_callback": {
            "instances": us_per_callback(cpu[0]), "postgres": us_per_callback(cpu[1]), "haproxy": us_per_callback(cpu[2]),
        },
        "machine_idle": round(cpu[4] / max(cpu[3], 1), 3),
    },
    "installs": {
        "corps": installs, "callbacks_posted": 2 * installs, "active": active, "seconds": install_s,
        "codes_exchanged": len(after_installs["exchanges"]),
        "codes_exchanged_twice": after_installs["codes_exchanged_twice"],
        "rejected_tokens": sum(after_installs["rejected"].values()),
    },
    "storm": {
        "corps": storm_corps, "requests": storm["requests"], "non2xx": storm["non2xx"],
        "p99_us": storm["p99_us"], "max_us": storm["max_us"],
        "corps_refreshed": len(storm_refreshes), "max_refreshes_per_corp": max(storm_refreshes.values(), default=0),
    },
}))
PY
