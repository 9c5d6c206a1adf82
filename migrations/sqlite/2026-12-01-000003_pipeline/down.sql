ALTER TABLE auth_codes DROP COLUMN sent_at;
ALTER TABLE auth_codes DROP COLUMN holder;
DROP INDEX events_pending_order;
ALTER TABLE events DROP COLUMN claimed_until;
ALTER TABLE events DROP COLUMN claimed_by;
