-- Every revocation, in the order the transactions that made them committed: each instance keeps
-- a cursor over `id`, reads what is past it when it is woken (NOTIFY revocations) and on a
-- timer, and adds it to its in-memory sets. Written by triggers, so every path that ends a
-- session or revokes a token (logout, ending a session, reuse, password change, account
-- deletion) is covered, inside its own transaction.
CREATE TABLE revocations (
    id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT   NOT NULL CHECK (kind IN ('token', 'session')),
    key  BYTEA  NOT NULL, -- the jti, or the session id
    exp  BIGINT NOT NULL  -- refused until then: the token's exp, or the session's access_exp
);

CREATE INDEX revocations_exp ON revocations (exp);

-- Ids are handed out when a row is inserted, but transactions commit in their own order: a
-- reader that saw id 11 committed could later miss id 10. So a transaction takes this lock
-- (held until it commits) before it takes an id: revocations commit one at a time, in id order,
-- and a cursor never skips one.
CREATE FUNCTION record_revocation(kind TEXT, key BYTEA, exp BIGINT) RETURNS VOID AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7411529433402510001);
    INSERT INTO revocations (kind, key, exp) VALUES (kind, key, exp);
    PERFORM pg_notify('revocations', '');
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION revoked_token_recorded() RETURNS TRIGGER AS $$
BEGIN
    PERFORM record_revocation('token', NEW.jti, NEW.exp);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER revoked_tokens_recorded AFTER INSERT ON revoked_tokens
    FOR EACH ROW EXECUTE FUNCTION revoked_token_recorded();

-- A session ended (revoked_at set), or deleted while it was live (its user's row deleted:
-- ON DELETE CASCADE; it may have started after the account's sessions were ended).
CREATE FUNCTION session_end_recorded() RETURNS TRIGGER AS $$
DECLARE
    gone sessions%ROWTYPE;
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- A purge deletes sessions whose tokens have all expired: nothing to refuse.
        IF OLD.access_exp < extract(epoch FROM now())::BIGINT - 60 THEN
            RETURN NULL;
        END IF;
        gone := OLD;
    ELSE
        gone := NEW;
    END IF;
    PERFORM record_revocation('session', gone.id, gone.access_exp);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER sessions_end_recorded AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION session_end_recorded();

CREATE TRIGGER sessions_delete_recorded AFTER DELETE ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL)
    EXECUTE FUNCTION session_end_recorded();
