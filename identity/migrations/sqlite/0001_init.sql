-- Users: usernames are unique regardless of case ("Alice" and "alice" are the same account).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT    NOT NULL,          -- argon2id PHC string
    created_at    INTEGER NOT NULL           -- unix seconds
);

-- Revoked tokens: one row per signed-out token, kept until the token would have expired anyway.
CREATE TABLE revoked_tokens (
    jti        BLOB    NOT NULL PRIMARY KEY, -- the token's UUID, 16 bytes
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    exp        INTEGER NOT NULL,             -- the token's own expiry, unix seconds
    revoked_at INTEGER NOT NULL              -- unix seconds
) WITHOUT ROWID;

CREATE INDEX revoked_tokens_exp ON revoked_tokens (exp);
