#!/usr/bin/env bash
# A migrated database already holding COUNT done change_contact events, generated
# inside the database (no HTTP): a day of history ending END_AGO seconds ago (default
# 0: now), keyed as the service keys them (send time, then a hash), each with fields
# of a realistic callback's size. bench/ingest.sh copies it as a step's starting database.
#
# Usage: bench/seed.sh sqlite COUNT FILE        → FILE, a SQLite database
#        bench/seed.sh postgres COUNT DBNAME    → DBNAME on 127.0.0.1:5432, usable as TEMPLATE
#        bench/seed.sh peer COUNT FILE          → FILE, the peer's SQLite database
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=$1 COUNT=$2 TARGET=$3
NOW=$(($(date +%s) - ${END_AGO:-0}))
BIN=${BIN_DIR:-target/release}/wecom-provider
source bench/common.sh

if [[ $BACKEND == peer ]]; then
  # The peer's table (bench/peer): the whole plaintext per row, as wechatpy decrypts it.
  rm -f "$TARGET" "$TARGET-wal" "$TARGET-shm"
  python3 - "$TARGET" "$COUNT" "$NOW" <<'PY'
import sqlite3, sys
path, count, now = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conn = sqlite3.connect(path)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=OFF")
conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, dedupe_key TEXT NOT NULL UNIQUE, plaintext TEXT NOT NULL)")
conn.execute(f"""
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {count} - 1)
INSERT INTO events (dedupe_key, plaintext)
SELECT lower(hex(randomblob(32))), '<xml><SuiteId><![CDATA[wwbenchsuite]]></SuiteId><TimeStamp>'
       || ({now} - 86400 + i * 86400 / {count}) || '</TimeStamp><UserID><![CDATA[seed-' || i || ']]></UserID>'
       || printf('%.1200c', ' ') || '</xml>'
FROM n""")
conn.commit()
conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
  echo "seeded $COUNT peer events into $TARGET"
  exit 0
fi
if [[ $BACKEND == sqlite ]]; then
  rm -f "$TARGET" "$TARGET-wal" "$TARGET-shm"
  URL=sqlite://$TARGET
else
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $TARGET WITH (FORCE)" -c "CREATE DATABASE $TARGET" >/dev/null
  URL=${PG_ADMIN%/*}/$TARGET
fi
server_env "$URL" 0
"${SERVER_ENV[@]}" "$BIN" migrate >/dev/null

# The redacted fields of one bench_callbacks message, with the user varied per row.
FIELDS_HEAD='{"Address":"广东省深圳市南山区科技园科苑路88号","Alias":"王伟（产品经理）","AuthCorpId":"wpBenchCorp","Avatar":"http://wx.qlogo.cn/mmopen/ajNVdqHZLLA3WJ6DSZUfiakYe37PKnQhBIeOQBO4czqrnZDS79FH5Wm5m4X69TBicnHFlhiafvDwklOpZeXYQQ2icg/0","BizMail":"user@bench-corp.wecom.work","ChangeType":"update_user","Department":"1,12,345","DirectLeader":"seed-leader-12","Email":"user@bench-corp.example","ExtAttr":{"Item":[{"Name":"爱好","Text":{"Value":"旅游、摄影"},"Type":"0"},{"Name":"工号","Type":"1","Web":{"Title":"员工主页","Url":"https://bench-corp.example/staff/1"}}]},"Gender":"1","InfoType":"change_contact","IsLeaderInDept":"0,0,0","MainDepartment":"12","Mobile":"13800000001","Name":"王伟","OpenUserID":"woAJ2GCAAA000000000001ACAAAA","Position":"产品经理","Status":"1","SuiteId":"wwbenchsuite","Telephone":"020-00000001","TimeStamp":"'
if [[ $BACKEND == sqlite ]]; then
  python3 - "$TARGET" "$COUNT" "$NOW" "$FIELDS_HEAD" <<'PY'
import sqlite3, sys
path, count, now, head = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
conn = sqlite3.connect(path)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=OFF")
conn.execute("PRAGMA cache_size=-262144")
start = now - 86400
conn.execute(f"""
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {count} - 1)
INSERT INTO events (provider_corpid, suite_id, corpid, kind, dedupe_key, ordering_key, fields,
                    received_at, status, processed_at, attempts)
SELECT 'wwbenchprovider', 'wwbenchsuite', 'wpBenchCorp', 'change_contact',
       printf('%010d-', {start} + i * 86400 / {count}) || lower(hex(randomblob(16))),
       'suite:wwbenchsuite/corp:wpBenchCorp',
       ? || ({start} + i * 86400 / {count}) || '","UserID":"seed-' || i || '"}}',
       ({start} + i * 86400 / {count}) * 1000, 'done', ({start} + i * 86400 / {count}) * 1000, 0
FROM n""", (head,))
# As the service leaves them: every stored key in its index, the writer's watermark at the end.
conn.execute("INSERT INTO event_keys (dedupe_key) SELECT dedupe_key FROM events ORDER BY dedupe_key")
conn.execute("UPDATE event_key_merges SET through_id = (SELECT max(id) FROM events)")
conn.commit()
conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
else
  psql -q -v ON_ERROR_STOP=1 "${PG_ADMIN%/*}/$TARGET" -v head="$FIELDS_HEAD" >/dev/null <<SQL
INSERT INTO events (provider_corpid, suite_id, corpid, kind, dedupe_key, ordering_key, fields,
                    received_at, status, processed_at, attempts)
SELECT 'wwbenchprovider', 'wwbenchsuite', 'wpBenchCorp', 'change_contact',
       lpad(t::text, 10, '0') || '-' || md5(i::text || random()::text),
       'suite:wwbenchsuite/corp:wpBenchCorp',
       :'head' || t || '","UserID":"seed-' || i || '"}',
       t * 1000, 'done', t * 1000, 0
FROM (SELECT i, $((NOW - 86400))::bigint + i::bigint * 86400 / $COUNT AS t FROM generate_series(0, $COUNT - 1) AS i) AS s;
VACUUM ANALYZE events;
SQL
fi
echo "seeded $COUNT events into $TARGET"
