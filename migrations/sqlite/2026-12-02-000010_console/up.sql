-- Admin console sign-ins. Only the SHA-256 (hex) of the session id is stored: the id
-- itself lives in the browser's cookie. `actor` is the name of the key that signed in
-- (what the audit log shows); `csrf_token` is the token every form of the session
-- carries. A session ends at `expires_at` (absolute) or when it signs out (row deleted).
CREATE TABLE console_sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    actor TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_expires_at ON console_sessions (expires_at);
