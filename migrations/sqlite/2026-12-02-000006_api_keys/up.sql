-- Named API keys of /api/v1. Only the SHA-256 (hex) of a key is stored: the key itself
-- is shown once, when it is made. A revoked key keeps its row, and so its name.
-- `scopes` is a JSON array of scope names; `suites` a JSON array of the suite ids the
-- key is restricted to, NULL for every suite.
CREATE TABLE api_keys (
    name TEXT PRIMARY KEY NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    suites TEXT,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
