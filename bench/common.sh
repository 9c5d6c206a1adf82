# Shared by the bench scripts (source it): the bench suite's keys, and the server's
# settings as `env` arguments. Loopback only.
TOKEN=QDG6eK
AES_KEY=jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C
SUITE=wwbenchsuite
ADMIN=bench-admin-token-0123456789-abcdef
# A bench-only sealing key, the same in every step, so a seeded database opens anywhere.
BENCH_MASTER_KEY=OPJq1+DXBKIIqLGqMGZm+RRrnpjHYuSnsBYxyMH1e1M=
PG_ADMIN=${PG_ADMIN_URL:-postgres://root@127.0.0.1:5432/postgres}

server_env() { # DATABASE_URL LISTEN_PORT [NAME=VALUE ...] → the server's environment
  local url=$1 port=$2
  shift 2
  SERVER_ENV=(env -i PATH="$PATH" DATABASE_URL="$url" MASTER_KEY="$BENCH_MASTER_KEY"
    LISTEN_ADDR="127.0.0.1:$port" RUST_LOG=warn ADMIN_TOKEN="$ADMIN" WECOM_API_BASE=http://127.0.0.1:9
    WECOM_PROVIDER_CORPID=wwbenchprovider WECOM_PROVIDER_SECRET=bench-provider-secret
    WECOM_SUITE_ID="$SUITE" WECOM_SUITE_SECRET=bench-suite-secret
    WECOM_SUITE_TOKEN="$TOKEN" WECOM_SUITE_ENCODING_AES_KEY="$AES_KEY" "$@")
}

wait_answering() { # URL [SECONDS, default 30]: until anything answers there
  wait_for "$1" "${2:-30}" -s
}

wait_ready() { # URL [SECONDS, default 30]: until it answers 2xx; ours answers 503 while it migrates
  wait_for "$1" "${2:-30}" -sf
}

wait_for() { # URL SECONDS CURL_FLAGS
  for _ in $(seq 1 $(($2 * 20))); do
    curl "$3" -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$1 did not come up" >&2
  exit 1
}

ticks_of() { # PID... → their user + system clock ticks (one that has gone counts 0)
  local pid sum=0
  for pid in "$@"; do
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$sum"
}
