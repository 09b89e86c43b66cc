-- Second factors, and what each session knows of how it was signed in.
--
-- `sessions.auth_method` is how the session was signed in (password, password_totp,
-- recovery_code, passkey, reset_link) and `authenticated_at` when its holder last proved who
-- they are: the sign-in, or a later confirmation with the password (`POST /api/reauth`). A
-- refresh changes neither: dangerous changes ask for an authentication within REAUTH_WINDOW.
ALTER TABLE sessions ADD COLUMN auth_method TEXT NOT NULL DEFAULT 'password';
ALTER TABLE sessions ADD COLUMN authenticated_at INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET authenticated_at = created_at;

-- An authenticator app's secret (TOTP, RFC 6238: SHA-1, 6 digits, 30-second steps). The secret
-- is stored sealed (XChaCha20-Poly1305) under a key the server holds (FACTOR_KEY, else derived
-- from JWT_SECRET), bound to the user's id: a copy of the database alone does not yield it.
-- `confirmed_at` is NULL while the enrolment waits for its first code; only a confirmed secret
-- is asked for at sign-in. `last_step` is the last time step whose code was accepted: a code is
-- accepted once, and no code of an earlier step after it.
CREATE TABLE totp_secrets (
    user_id      INTEGER NOT NULL PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed       BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    confirmed_at INTEGER,
    last_step    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Recovery codes: ten per account, each accepted once in place of an authenticator's code. Only
-- an HMAC-SHA256 of each (under the server's factor key) is kept. A new set replaces the old.
CREATE TABLE recovery_codes (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, code_hash)
) WITHOUT ROWID;

-- A sign-in half-way: the password was right, the second factor is still to come. It carries no
-- session and no token; its own token (only its SHA-256 is kept) lives in the browser's cookie
-- (or an API client's hands) for a few minutes, and finishes the sign-in once. It is bound to
-- the credential stamp it read: a change of credentials in between kills it.
CREATE TABLE pending_sign_ins (
    token_hash BLOB    NOT NULL PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    stamp      INTEGER NOT NULL,
    device     TEXT,                              -- the device proof's id the password was counted on
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) WITHOUT ROWID;

CREATE INDEX pending_sign_ins_expires ON pending_sign_ins (expires_at);
CREATE INDEX pending_sign_ins_user ON pending_sign_ins (user_id);
