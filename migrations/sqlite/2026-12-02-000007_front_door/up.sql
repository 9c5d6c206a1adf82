-- Which get_permanent_code a suite exchanges auth codes with: 'v2' (fast, then
-- get_auth_info for the agent, privileges and edition) or 'v1'.
ALTER TABLE suites ADD COLUMN permanent_code_api TEXT NOT NULL DEFAULT 'v2';

-- Single-use login codes (OAuth, web login, admin login) recorded before they are
-- sent to WeCom, so a second exchange is refused without calling WeCom. Only the
-- SHA-256 (hex) of a code is stored. `owner` is the suite id, or the provider corpid
-- of an admin login. Rows are pruned an hour after use (codes live 5 minutes).
CREATE TABLE login_codes (
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (kind, owner, code_hash)
);
CREATE INDEX login_codes_created_at ON login_codes (created_at);

-- WeCom's hourly limits on JS-SDK ticket fetches, counted across every instance:
-- `fetched_at` is a JSON array of the fetch times (Unix ms) of the last hour;
-- `version` makes each update a compare-and-set.
CREATE TABLE ticket_budgets (
    counter TEXT PRIMARY KEY NOT NULL,
    fetched_at TEXT NOT NULL,
    version BIGINT NOT NULL
);

-- Registrations through a promotion package (register_corp and
-- enter_register_package on the provider's system-event URL), one row per event.
-- The contact-sync token (full contact read/write) is sealed like every secret.
CREATE TABLE registrations (
    event_id BIGINT PRIMARY KEY NOT NULL,
    provider_corpid TEXT NOT NULL,
    kind TEXT NOT NULL,
    corpid TEXT NOT NULL,
    register_code TEXT NOT NULL,
    template_id TEXT NOT NULL,
    state TEXT NOT NULL,
    userid TEXT NOT NULL,
    contact_sync_token TEXT,
    contact_sync_expires_at BIGINT,
    created_at BIGINT NOT NULL
);
