-- Passkeys (WebAuthn).
--
-- `users.webauthn_handle` is the account's user handle as authenticators store it: 16 random
-- bytes, made at its first passkey (never derived from the name, and the same for all its
-- passkeys). A usernameless sign-in names the account by it.
ALTER TABLE users ADD COLUMN webauthn_handle BLOB;
CREATE UNIQUE INDEX users_webauthn_handle ON users (webauthn_handle) WHERE webauthn_handle IS NOT NULL;

-- One row per passkey: the credential as webauthn-rs keeps it (JSON: the public key, the
-- signature counter, the backup flags), its id apart (unique: a credential is one account's),
-- and what the account page shows. `sign_count` and `backed_up` are written at each sign-in.
CREATE TABLE passkeys (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    cred_id         BLOB    NOT NULL UNIQUE,
    credential      TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    sign_count      INTEGER NOT NULL DEFAULT 0,
    backup_eligible INTEGER NOT NULL DEFAULT 0,
    backed_up       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX passkeys_user ON passkeys (user_id);

-- A WebAuthn ceremony between its two requests: the challenge state webauthn-rs made (JSON),
-- kept on the server only, for a few minutes, and spent once (deleted as it is read). Only a
-- SHA-256 of its token is kept. A registration belongs to the session that began it.
CREATE TABLE webauthn_ceremonies (
    token_hash BLOB    NOT NULL PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('register', 'sign_in')),
    user_id    INTEGER REFERENCES users (id) ON DELETE CASCADE,
    session_id BLOB,
    state      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX webauthn_ceremonies_expires ON webauthn_ceremonies (expires_at);
