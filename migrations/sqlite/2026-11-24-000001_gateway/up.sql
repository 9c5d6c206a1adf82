-- Times are Unix milliseconds (BIGINT) so one schema serves SQLite and PostgreSQL.
CREATE TABLE providers (
    provider_corpid TEXT PRIMARY KEY NOT NULL,
    provider_secret TEXT NOT NULL,
    callback_token TEXT,
    encoding_aes_key TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE suites (
    suite_id TEXT PRIMARY KEY NOT NULL,
    provider_corpid TEXT NOT NULL REFERENCES providers (provider_corpid),
    suite_secret TEXT NOT NULL,
    callback_token TEXT NOT NULL,
    encoding_aes_key TEXT NOT NULL,
    ticket TEXT,
    ticket_updated_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE corps (
    suite_id TEXT NOT NULL REFERENCES suites (suite_id),
    corpid TEXT NOT NULL,
    corp_name TEXT NOT NULL DEFAULT '',
    agent_id BIGINT,
    permanent_code TEXT,
    status TEXT NOT NULL,
    auth_info TEXT NOT NULL DEFAULT '{}',
    auth_error TEXT,
    authorized_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (suite_id, corpid)
);

-- AUTOINCREMENT: ids are never reused, so a feed cursor (after=ID) never skips or repeats.
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    provider_corpid TEXT NOT NULL,
    suite_id TEXT,
    corpid TEXT,
    kind TEXT NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    ordering_key TEXT,
    plaintext TEXT,
    fields TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    processed_at BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error TEXT
);
CREATE INDEX events_pending ON events (id) WHERE status = 'pending';

CREATE TABLE leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Tokens live in the database so restarts and other instances reuse them. A refresh
-- is claimed by setting refreshing_until: one claimant at a time calls WeCom.
CREATE TABLE tokens (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    access_token TEXT,
    expires_at BIGINT,
    refreshing_until BIGINT,
    refresh_holder TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);

-- One row per auth code: whichever path (create_auth callback or install redirect)
-- claims it first exchanges it. Only a hash of the code is kept.
CREATE TABLE auth_codes (
    suite_id TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    corpid TEXT,
    claimed_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (suite_id, code_hash)
);

-- CSRF state of the install flow: issued with the install page, used once.
CREATE TABLE install_states (
    state TEXT PRIMARY KEY NOT NULL,
    suite_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT
);
