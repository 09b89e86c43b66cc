-- A correction to 0002's comment, which a migration may not change once applied (its checksum is
-- recorded): a session's `refresh_key` alone does not make its refresh tokens. A refresh token
-- (`rt2.`) carries a MAC over the session's key, id and generation, keyed by a secret derived
-- from JWT_SECRET, which is never stored: a copy of this database (a backup, a replica) mints
-- nothing. No schema change: tokens of the old shape (`rt1.`) are refused by the code.
SELECT 1;
