-- Passkeys (WebAuthn): see migrations/sqlite/0007_passkeys.sql for what each column holds.
ALTER TABLE users ADD COLUMN webauthn_handle BYTEA;
CREATE UNIQUE INDEX users_webauthn_handle ON users (webauthn_handle) WHERE webauthn_handle IS NOT NULL;

CREATE TABLE passkeys (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    cred_id         BYTEA   NOT NULL UNIQUE,
    credential      TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    last_used_at    BIGINT,
    sign_count      BIGINT  NOT NULL DEFAULT 0,
    backup_eligible BIGINT  NOT NULL DEFAULT 0,
    backed_up       BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX passkeys_user ON passkeys (user_id);

CREATE TABLE webauthn_ceremonies (
    token_hash BYTEA  NOT NULL PRIMARY KEY,
    kind       TEXT   NOT NULL CHECK (kind IN ('register', 'sign_in')),
    user_id    BIGINT REFERENCES users (id) ON DELETE CASCADE,
    session_id BYTEA,
    state      TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX webauthn_ceremonies_expires ON webauthn_ceremonies (expires_at);
