-- Security activity: one row per security event, written in the same transaction as the
-- change it records (see identity/src/audit.rs). No foreign key to `users`: the row of an
-- account's deletion outlives the account (its other rows are deleted with it). `kind` and
-- `detail` are words from a fixed set; `address` is the client's address as the throttle saw
-- it, `user_agent` the device's (as the sessions keep it), `session_id` the session the event
-- is about (started, ended, or the one that made the change), `actor` who acted: `person`, or
-- `operator` (the server admin command; never read from anything a client sends). Kept for
-- AUDIT_RETENTION.
CREATE TABLE security_events (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    detail     TEXT    NOT NULL DEFAULT '',
    address    TEXT    NOT NULL DEFAULT '',
    user_agent TEXT    NOT NULL DEFAULT '',
    session_id BLOB,
    actor      TEXT    NOT NULL DEFAULT 'person'
);
CREATE INDEX security_events_user ON security_events (user_id, id);
CREATE INDEX security_events_at ON security_events (at);

-- Every ending of a session is an event, whichever statement ends it (signing out, the
-- sessions page, a reuse, a credential change, the operator), in that statement's
-- transaction: with the session's own address and device (the one signed out), and why it
-- ended (whether by the operator too). A deletion's endings are not (the account's events go
-- with it).
CREATE TRIGGER sessions_end_audited AFTER UPDATE OF revoked_at ON sessions
WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
    AND COALESCE(NEW.revoked_reason, '') <> 'account_deleted'
BEGIN
    INSERT INTO security_events (user_id, at, kind, detail, address, user_agent, session_id)
    VALUES (NEW.user_id, NEW.revoked_at, 'session_ended', COALESCE(NEW.revoked_reason, ''),
            NEW.address, NEW.user_agent, NEW.id);
END;

-- A disabled account: no sign-in, no session (the operator's `server admin disable`).
ALTER TABLE users ADD COLUMN disabled_at INTEGER;

-- Every ending of a session, in the order they were written, for a running server to follow
-- (as PostgreSQL's `revocations` are): what another process ended (the operator's `server
-- admin`, on the same file) is refused by it within a second. A session deleted while still
-- live (its account deleted) is an ending too; a row outlives its session (no foreign key)
-- until its access tokens have expired.
CREATE TABLE session_endings (
    -- AUTOINCREMENT: an id is never given again, even once the rows above it are purged (a
    -- follower's cursor would skip a new ending with a lower id).
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id BLOB    NOT NULL,
    access_exp INTEGER NOT NULL
);
CREATE INDEX session_endings_exp ON session_endings (access_exp);

CREATE TRIGGER sessions_end_followed AFTER UPDATE OF revoked_at ON sessions
WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
BEGIN
    INSERT INTO session_endings (session_id, access_exp) VALUES (NEW.id, NEW.access_exp);
END;

-- (Only while its access tokens could still be accepted: the purge deletes sessions long
-- over, which need no following.)
CREATE TRIGGER sessions_delete_followed AFTER DELETE ON sessions
WHEN OLD.revoked_at IS NULL AND OLD.access_exp >= CAST(strftime('%s', 'now') AS INTEGER)
BEGIN
    INSERT INTO session_endings (session_id, access_exp) VALUES (OLD.id, OLD.access_exp);
END;
