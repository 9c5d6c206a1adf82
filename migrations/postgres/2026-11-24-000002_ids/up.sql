-- Ciphertext-ID conversions, kept forever: WeCom's mapping of a plaintext ID never
-- changes. Scoped by provider (two providers never share a row) and, for userids and
-- external_userids, by the corp ('' for corpids). IDs are case-sensitive as stored.
CREATE TABLE id_mappings (
    provider_corpid TEXT NOT NULL,
    kind TEXT NOT NULL,
    corpid TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (provider_corpid, kind, corpid, source)
);

-- The identity graph: a WeChat user (unionid of the provider's or corp's MP/mini
-- program) linked per corp to an external_userid, or to a pending_id until the user
-- becomes a customer.
CREATE TABLE identities (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    provider_corpid TEXT NOT NULL,
    unionid TEXT NOT NULL,
    openid TEXT NOT NULL,
    subject_type INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (provider_corpid, unionid)
);

CREATE TABLE identity_links (
    identity_id BIGINT NOT NULL REFERENCES identities (id),
    corpid TEXT NOT NULL,
    suite_id TEXT NOT NULL,
    external_userid TEXT,
    pending_id TEXT,
    pending_since BIGINT,
    status TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (identity_id, corpid)
);
CREATE INDEX identity_links_by_external_userid ON identity_links (corpid, external_userid);
CREATE INDEX identity_links_by_pending_id ON identity_links (pending_id);

-- external_userids of new customers waiting to be matched to pending_ids; the worker
-- asks WeCom for many at once.
CREATE TABLE pending_matches (
    suite_id TEXT NOT NULL,
    corpid TEXT NOT NULL,
    external_userid TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before BIGINT NOT NULL,
    PRIMARY KEY (suite_id, corpid, external_userid)
);
