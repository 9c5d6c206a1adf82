-- Effects run in parallel: each pending event is claimed by one worker (of any
-- instance) until claimed_until, renewed while its effect runs; a dead holder's
-- claim lapses by itself.
ALTER TABLE events ADD COLUMN claimed_by TEXT;
ALTER TABLE events ADD COLUMN claimed_until BIGINT;
-- "Is an earlier event of this corp still pending?", asked for every candidate.
CREATE INDEX events_pending_order ON events (ordering_key, id) WHERE status = 'pending';

-- A single-use auth code is sent to WeCom at most once: sent_at is written before
-- the request leaves, so a claim that lapsed after it was sent is known lost.
ALTER TABLE auth_codes ADD COLUMN holder TEXT;
ALTER TABLE auth_codes ADD COLUMN sent_at BIGINT;
