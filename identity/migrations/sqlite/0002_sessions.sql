-- Sessions: one row per sign-in. Every access token names its session (the `sid` claim); a
-- session that ends is refused at once, whatever access tokens of it are still unexpired.
--
-- Refresh tokens are not stored: a refresh token is (id, generation, HMAC-SHA256 over both
-- with the session's own key). Only the key and the current generation are kept, so a stolen
-- database holds no usable refresh token, and a genuine but superseded token is recognised as
-- one (reuse) rather than as garbage.
CREATE TABLE sessions (
    id             BLOB    NOT NULL PRIMARY KEY,  -- 16 random bytes
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_key    BLOB    NOT NULL,              -- 32 random bytes, the HMAC key of its refresh tokens
    generation     INTEGER NOT NULL,              -- the current refresh token's number; +1 per rotation
    confirmed_generation INTEGER NOT NULL,        -- the newest generation known to have reached its holder
    rotated_at     INTEGER NOT NULL,              -- when the current generation was issued (0: no grace)
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER NOT NULL,              -- written at most once a minute
    expires_at     INTEGER NOT NULL,              -- absolute end: created_at + SESSION_TTL
    access_exp     INTEGER NOT NULL,              -- the latest expiry of any access token issued for it
    user_agent     TEXT    NOT NULL,              -- trimmed
    address        TEXT    NOT NULL,              -- the client's address at sign-in, then at each refresh
    revoked_at     INTEGER,                       -- when it was ended, if it was
    revoked_reason TEXT                           -- logout, revoked, signed_out_elsewhere, reuse, password_changed, account_deleted
) WITHOUT ROWID;

CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_access_exp ON sessions (access_exp);
