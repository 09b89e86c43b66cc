-- E-mail: an address per account, links sent to it, and the mail waiting to be sent.
--
-- `users.email` is the account's address, normalised (trimmed, its domain lower-cased), compared
-- without regard to case. It is unverified until a link sent to it is followed
-- (`email_verified_at`). Only verified addresses are unique: an address someone typed but never
-- confirmed holds nothing, so nobody can take an address away from its owner by signing up with
-- it first. Only a verified address receives a reset link or signs in.
ALTER TABLE users ADD COLUMN email TEXT COLLATE NOCASE;
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;

CREATE UNIQUE INDEX users_verified_email ON users (email) WHERE email_verified_at IS NOT NULL;
CREATE INDEX users_email ON users (email);

-- Links sent by mail: one live link per account and purpose (`verify`: confirm `address`, the
-- account's own or the one it is changing to; `reset`: set a new password). Only a SHA-256 of
-- the token is kept, so a copy of the database holds no usable link. A reset link is bound to
-- the credential stamp it was issued under: a password change in between kills it. A spent
-- link keeps its row (`used_at`) until it is purged, so that following it again is answered
-- "already used" rather than "not valid".
CREATE TABLE email_links (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT    NOT NULL CHECK (purpose IN ('verify', 'reset')),
    token_hash BLOB    NOT NULL UNIQUE,          -- SHA-256 of the token, 32 bytes
    address    TEXT    NOT NULL,                 -- where the link was sent
    stamp      INTEGER NOT NULL,                 -- the account's credential stamp when issued
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, purpose)
) WITHOUT ROWID;

CREATE INDEX email_links_expires ON email_links (expires_at);

-- The outbox: each mail is written here in the transaction of the change that causes it, and
-- delivered by a background sender. A sender claims a mail (`claimed_until`) before it talks to
-- the mail server, so each mail goes out once however many senders there are; a claim that
-- outlives its sender (a crash) lapses and the mail is tried again. Once delivered or given
-- up on, the bodies are blanked: the links in them live no longer than they must.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL,            -- verify_address, reset_password, new_sign_in, ...
    user_id         INTEGER,                     -- the account it is about (no foreign key: a deletion notice outlives it)
    recipient       TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body_text       TEXT    NOT NULL,
    body_html       TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,            -- not tried before then
    claimed_until   INTEGER,                     -- a sender holds it until then
    sent_at         INTEGER,
    failed_at       INTEGER,                     -- given up on (a permanent refusal, or too many attempts)
    last_error      TEXT,                        -- the mail server's last answer, for the operator
    link_hash       BLOB                         -- the link it carries (email_links.token_hash): not sent once that is dead
);

CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_created ON outbox (created_at);
