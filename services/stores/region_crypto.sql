-- Cryptographic erasure (docs/design.md section 9), a migration step of its own after
-- region_schema.sql. Every body (records.body, dead_letters.body and the dead letter's error
-- text, which may quote values) is stored sealed under a data key of its own: body is
-- nonce || AES-256-GCM ciphertext, wrapped_key is the data key wrapped by the region's KEK,
-- kek_id names that KEK (the keys live outside PostgreSQL). kek_id IS NULL: a row stored
-- before sealing, in clear until `mdmbus crypto upgrade` seals it.
ALTER TABLE records ADD COLUMN IF NOT EXISTS wrapped_key bytea;
ALTER TABLE records ADD COLUMN IF NOT EXISTS kek_id text;
-- The rotation job re-wraps by KEK and the gauge counts by KEK: both walk this index.
CREATE INDEX IF NOT EXISTS records_kek ON records (kek_id) WHERE has_body;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS wrapped_key bytea;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS kek_id text;
-- A dead letter's error text may quote values of the refused record: it is sealed too, under
-- the letter's data key (error then holds ''), with or without a body.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS error_sealed bytea;
CREATE INDEX IF NOT EXISTS dead_letters_kek ON dead_letters (kek_id);
