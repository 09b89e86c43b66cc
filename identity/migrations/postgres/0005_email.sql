-- E-mail: see migrations/sqlite/0005_email.sql for what each column holds. Addresses compare
-- without regard to case through the `nocase` collation of 0001, as usernames do.
ALTER TABLE users ADD COLUMN email TEXT COLLATE nocase;
ALTER TABLE users ADD COLUMN email_verified_at BIGINT;

CREATE UNIQUE INDEX users_verified_email ON users (email) WHERE email_verified_at IS NOT NULL;
CREATE INDEX users_email ON users (email);

CREATE TABLE email_links (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT   NOT NULL CHECK (purpose IN ('verify', 'reset')),
    token_hash BYTEA  NOT NULL UNIQUE,
    address    TEXT   NOT NULL,
    stamp      BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, purpose)
);

CREATE INDEX email_links_expires ON email_links (expires_at);

CREATE TABLE outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            TEXT   NOT NULL,
    user_id         BIGINT,
    recipient       TEXT   NOT NULL,
    subject         TEXT   NOT NULL,
    body_text       TEXT   NOT NULL,
    body_html       TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    sent_at         BIGINT,
    failed_at       BIGINT,
    last_error      TEXT,
    link_hash       BYTEA
);

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_created ON outbox (created_at);
