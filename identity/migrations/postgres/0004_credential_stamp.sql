-- The credential stamp: see migrations/sqlite/0004_credential_stamp.sql. The accounts there
-- already get a random one each (any value will do: the server gives every new account a 64-bit
-- random stamp).
ALTER TABLE users ADD COLUMN credential_stamp BIGINT NOT NULL DEFAULT 0;

UPDATE users SET credential_stamp = floor(random() * 9007199254740992)::BIGINT;
