-- Callbacks are deduplicated without a unique index on events: that index made
-- each callback of a commit dirty its own random page (the key is a hash after its
-- send time), one more WAL frame each (BENCHMARKS.md). The event writer keeps the
-- keys of its recent appends in memory and moves them here in sorted slices;
-- derived events put theirs here directly (src/store/event_keys.rs).
CREATE TABLE event_keys (
    dedupe_key TEXT PRIMARY KEY NOT NULL
) WITHOUT ROWID;

-- Every event through `through_id` has its key in event_keys; a restart reloads
-- the keys of the events after it from the log.
CREATE TABLE event_key_merges (
    singleton INTEGER PRIMARY KEY NOT NULL CHECK (singleton = 1),
    through_id BIGINT NOT NULL
);

-- SQLite cannot drop a column's UNIQUE: the table is rebuilt, keeping its ids and
-- its AUTOINCREMENT sequence (pruned ids are never handed out again).
CREATE TABLE events_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    provider_corpid TEXT NOT NULL,
    suite_id TEXT,
    corpid TEXT,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    ordering_key TEXT,
    plaintext TEXT,
    fields TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    processed_at BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error TEXT,
    claimed_by TEXT,
    claimed_until BIGINT,
    request_id TEXT
);
INSERT INTO events_rebuilt (id, provider_corpid, suite_id, corpid, kind, dedupe_key, ordering_key, plaintext,
                            fields, received_at, status, processed_at, attempts, next_attempt_at, last_error,
                            claimed_by, claimed_until, request_id)
SELECT id, provider_corpid, suite_id, corpid, kind, dedupe_key, ordering_key, plaintext,
       fields, received_at, status, processed_at, attempts, next_attempt_at, last_error,
       claimed_by, claimed_until, request_id
FROM events ORDER BY id;
DELETE FROM sqlite_sequence WHERE name = 'events_rebuilt';
INSERT INTO sqlite_sequence (name, seq) SELECT 'events_rebuilt', seq FROM sqlite_sequence WHERE name = 'events';

INSERT INTO event_keys (dedupe_key) SELECT dedupe_key FROM events ORDER BY dedupe_key;
INSERT INTO event_key_merges (singleton, through_id) SELECT 1, coalesce(max(id), 0) FROM events;

DROP TABLE events;
ALTER TABLE events_rebuilt RENAME TO events;
CREATE INDEX events_pending ON events (id) WHERE status = 'pending';
CREATE INDEX events_pending_order ON events (ordering_key, id) WHERE status = 'pending';
