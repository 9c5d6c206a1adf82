-- Webhook subscriptions. `cursor` is the id of the last event handled (delivered, or
-- recorded below as failed); a new subscription starts at the newest committed event.
-- `kinds` is a JSON array of event kinds, empty for all.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    kinds TEXT NOT NULL,
    suite_id TEXT,
    enabled BOOLEAN NOT NULL,
    secret TEXT NOT NULL,
    cursor BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Only deliveries that did not succeed at once (or were queued by a replay) have a
-- row: delivering costs no write per event. `status` is queued, failed or dead.
CREATE TABLE webhook_deliveries (
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    next_attempt_at BIGINT,
    first_attempt_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (webhook_id, event_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, next_attempt_at) WHERE next_attempt_at IS NOT NULL;
