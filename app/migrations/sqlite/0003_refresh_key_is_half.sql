-- A correction to 0002's comment, which a migration may not change once applied (its checksum is
-- recorded): a session's `refresh_key` alone does not make its refresh tokens. Since `rt2.` tokens
-- their MAC is keyed by a secret derived from JWT_SECRET, which is never stored, over the
-- session's key, id and generation: a copy of this database (a backup, a replica) mints nothing.
-- No schema change: tokens of the old shape (`rt1.`) are refused by the code.
SELECT 1;
