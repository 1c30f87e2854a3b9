-- A region's store (the cloud service's data for tenants whose country maps to this region).
-- Applied idempotently by services/stores/schema.py at every process start.

-- Tenants onboarded in this region and where they are in the retention lifecycle (rule 4).
CREATE TABLE IF NOT EXISTS tenants (
    tenant_id             uuid PRIMARY KEY,
    country               text NOT NULL,
    region                text NOT NULL,
    state                 text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'retention')),
    onboarded_at          timestamptz NOT NULL,
    subscription_ended_at timestamptz,
    read_only_until       timestamptz,   -- end of the 90-day retention period
    purge_at              timestamptz    -- 30 days after that: every row of the tenant goes
);
CREATE INDEX IF NOT EXISTS tenants_purge_at ON tenants (purge_at) WHERE purge_at IS NOT NULL;

-- Tenants whose data was purged: the id only, so that late or replayed records of a deleted
-- tenant are refused at once as "tenant_deleted", in the writing transaction (rule 7).
CREATE TABLE IF NOT EXISTS purged_tenants (
    tenant_id  uuid PRIMARY KEY,
    purged_at  timestamptz NOT NULL
);

-- Every stored record, as the single-object-encoded bytes it arrived in (encrypted fields stay
-- opaque: the body is never decoded for storage). body IS NULL marks a relay record deleted
-- after download whose id is kept (with its tenant, nothing else) so that a replay or a
-- re-send cannot store it again; the tenant's purge deletes it.
-- A record is (tenant, record id): ids are chosen by producers, and two tenants may pick the
-- same one without either losing its record.
CREATE TABLE IF NOT EXISTS records (
    record_id     uuid NOT NULL,
    tenant_id     uuid NOT NULL,
    kind          text NOT NULL,          -- schema kind: U1..U14, R1..R6, inventory_cache, device_command, ...
    category      text NOT NULL,          -- upload | relay | inventory_cache | command
    device_id     uuid,
    session_id    uuid,
    event_time    timestamptz NOT NULL,
    stored_at     timestamptz NOT NULL,   -- shared (simulated) clock
    stored_at_real timestamptz NOT NULL DEFAULT clock_timestamp(),
    deadline      timestamptz,            -- NULL: kept until the tenant's purge
    deadline_rule text,
    body          bytea,
    PRIMARY KEY (tenant_id, record_id)
);
-- The tenant index is the key's prefix (stores made before records were keyed by tenant: their
-- key widens below, after device_sessions).
DROP INDEX IF EXISTS records_tenant;
-- Whether the row has a body (not the tombstone of a relay record CM acknowledged): what the
-- sweeper may know of a row, which may never read a body. (Stores made before it was named
-- has_body call it held: renamed in place, with its indexes, which follow the column.)
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
                WHERE table_schema = 'public' AND table_name = 'records'
                  AND column_name = 'held') THEN
        ALTER TABLE records RENAME COLUMN held TO has_body;
    END IF;
END $$;
ALTER INDEX IF EXISTS records_deadline_held RENAME TO records_deadline_has_body;
ALTER INDEX IF EXISTS records_relay_pending_held RENAME TO records_relay_pending_has_body;
ALTER TABLE records ADD COLUMN IF NOT EXISTS has_body boolean GENERATED ALWAYS AS (body IS NOT NULL) STORED;
DROP INDEX IF EXISTS records_deadline;
CREATE INDEX IF NOT EXISTS records_deadline_has_body ON records (deadline) WHERE deadline IS NOT NULL AND has_body;
DROP INDEX IF EXISTS records_device;
CREATE INDEX IF NOT EXISTS records_tenant_device ON records (tenant_id, device_id, category)
    WHERE device_id IS NOT NULL;

-- Active device sessions (temporary data, rule 3): commands live until expires_at.
-- Keyed by (tenant, device): device ids are the producers' too.
CREATE TABLE IF NOT EXISTS device_sessions (
    device_id   uuid NOT NULL,
    tenant_id   uuid NOT NULL,
    session_id  uuid NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, device_id)
);
-- Stores made before records and sessions were keyed by tenant: each key widens in place (every
-- existing id is unique on its own, so it is unique with its tenant).
DO $$
DECLARE t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('records', 'tenant_id, record_id'),
                                   ('device_sessions', 'tenant_id, device_id')) AS v(name, key)
    LOOP
        IF (SELECT array_length(conkey, 1) FROM pg_constraint
            WHERE conrelid = t.name::regclass AND contype = 'p') = 1 THEN
            EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I, ADD CONSTRAINT %I PRIMARY KEY (%s)',
                           t.name, t.name || '_pkey', t.name || '_pkey', t.key);
        END IF;
    END LOOP;
END $$;
CREATE INDEX IF NOT EXISTS device_sessions_expires ON device_sessions (expires_at);
DROP INDEX IF EXISTS device_sessions_tenant;

-- Every deletion, counted by rule, region and category: ids and counts, never the data.
CREATE TABLE IF NOT EXISTS deletion_audit (
    id              bigserial PRIMARY KEY,
    deleted_at      timestamptz NOT NULL,          -- shared (simulated) clock
    deleted_at_real timestamptz NOT NULL DEFAULT clock_timestamp(),
    rule            text NOT NULL,
    region          text NOT NULL,
    category        text NOT NULL,
    tenant_id       uuid,
    row_count       integer NOT NULL,
    record_ids      uuid[] NOT NULL,
    -- lag behind the deadline, real seconds (NULL where the rule has no deadline)
    max_lag_s       double precision
);
CREATE INDEX IF NOT EXISTS deletion_audit_rule ON deletion_audit (rule, deleted_at);

-- Refused records (docs/design.md section 5): the body (private key material redacted) kept for
-- operators until its deadline, under the same purges as any row of its tenant. No body is
-- kept for a tenant whose data was deleted, nor for a record that arrived in the wrong region.
-- One row per source message, so a replayed batch writes nothing twice; notified says whether
-- the notice on mdm.<region>.deadletter was sent.
CREATE TABLE IF NOT EXISTS dead_letters (
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    reason           text NOT NULL,
    path             text NOT NULL DEFAULT '',      -- the field at fault, where one is
    error            text NOT NULL,                 -- the full message (may quote values)
    tenant_id        uuid,
    record_id        uuid,
    kind             text,
    body             bytea,
    redacted         boolean NOT NULL DEFAULT false,
    stored_at        timestamptz NOT NULL,          -- shared (simulated) clock
    stored_at_real   timestamptz NOT NULL DEFAULT clock_timestamp(),
    deadline         timestamptz NOT NULL,
    notified         boolean NOT NULL DEFAULT false,
    PRIMARY KEY (source_topic, source_partition, source_offset)
);
CREATE INDEX IF NOT EXISTS dead_letters_deadline ON dead_letters (deadline);
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS body_kept boolean GENERATED ALWAYS AS (body IS NOT NULL) STORED;
-- Why the body is kept or not (mdmbus.contract.retention: scanned, redacted, raw_scanned,
-- withheld, not_kept), and the length and SHA-256 of the message as it arrived: a body is kept
-- only once scanned whole for private key material.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS body_basis text NOT NULL DEFAULT 'not_kept';
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS message_bytes integer NOT NULL DEFAULT 0;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS message_sha256 text;
CREATE INDEX IF NOT EXISTS dead_letters_tenant ON dead_letters (tenant_id) WHERE tenant_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS dead_letters_unnotified ON dead_letters (source_topic) WHERE NOT notified;

-- Erasure receipts of deletion requests (rule 4): ids and counts by category, never data. They
-- outlive the tenant's purge, as proof that it happened; the gateway serves them again.
CREATE TABLE IF NOT EXISTS erasure_receipts (
    receipt_id       uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL,
    requested_at     timestamptz NOT NULL,          -- shared (simulated) clock
    completed_at     timestamptz,
    counts           jsonb NOT NULL DEFAULT '{}',   -- category -> rows deleted
    record_ids       jsonb NOT NULL DEFAULT '{}'    -- category -> ids deleted
);
CREATE INDEX IF NOT EXISTS erasure_receipts_tenant ON erasure_receipts (tenant_id);
DROP INDEX IF EXISTS records_relay_pending;
CREATE INDEX IF NOT EXISTS records_relay_pending_has_body ON records (tenant_id, stored_at_real)
    WHERE category = 'relay' AND has_body;
