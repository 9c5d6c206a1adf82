-- Suites and providers become managed records: a stored kind (the `dk` prefix was
-- only ever a guess, kept here once for rows that predate the column), a display
-- name, an on/off switch, and a version that each change increments so every
-- instance knows when its derived keys are stale.
ALTER TABLE suites ADD COLUMN kind TEXT NOT NULL DEFAULT 'third_party';
UPDATE suites SET kind = 'customized_template' WHERE suite_id LIKE 'dk%';
ALTER TABLE suites ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE suites ADD COLUMN enabled BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE suites ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE providers ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE providers ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

-- Who changed what, never with a secret value.
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL
);

-- The master key every secret column is sealed under, once all of them are: a
-- start with the same key skips the scan; a start with a key that cannot open
-- them stops.
CREATE TABLE sealing_state (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    key_id TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
