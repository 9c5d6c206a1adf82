-- The x-request-id of the callback that brought an event whose effect is still to
-- run: the effect's log lines and WeCom calls carry it.
ALTER TABLE events ADD COLUMN request_id TEXT;
