-- The credential stamp: a number that changes whenever the account's credentials do (today, its
-- password). A sign-in starts its session only if the stamp it read when it checked the password
-- is still the account's, in the statement that writes the session: a sign-in whose check ran
-- while the password changed, or the account was deleted, starts nothing. A new random number at
-- each change rather than a counter: SQLite hands a deleted account's id to the next account,
-- which must not hold the stamp a sign-in of the deleted one read. The server gives every account
-- it creates a random stamp; a row written without one (by hand, by the benchmarks' seed) gets 0.
ALTER TABLE users ADD COLUMN credential_stamp INTEGER NOT NULL DEFAULT 0;

UPDATE users SET credential_stamp = random();
