-- The sign-in and sign-up limits, shared by every instance (app::auth::throttle::Shared): one
-- row per key, holding GCRA's theoretical arrival time in microseconds on the database's clock.
-- Each attempt is one INSERT ... ON CONFLICT DO UPDATE that decides and records under the row's
-- lock, and says in `allowed` what it decided. Keys are keyed hashes (16 bytes), never a name
-- or an address. A row whose `tat` has passed is a full allowance, the same as no row: the
-- purge timer deletes those.
--
-- UNLOGGED: no WAL per attempt (it is written at every sign-in, beside an argon2 hash), and not
-- copied to replicas. After a crash of the database the table is emptied, which gives every
-- key a full allowance once: acceptable for limits that refill within the hour anyway.
CREATE UNLOGGED TABLE login_throttle (
    key     BYTEA   NOT NULL PRIMARY KEY,
    tat     BIGINT  NOT NULL,
    allowed BOOLEAN NOT NULL
);
