-- The Configuration Manager database (on-premises side): relayed records land here, durably,
-- before the cloud copy may be deleted (rule 2). Applied by services/stores/schema.py.
-- Keyed by (tenant, record id), as in the cloud: a record id another tenant used is no conflict.
CREATE TABLE IF NOT EXISTS relayed_records (
    record_id   uuid NOT NULL,
    tenant_id   uuid NOT NULL,
    kind        text NOT NULL,
    device_id   uuid,
    event_time  timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    body        bytea NOT NULL,
    PRIMARY KEY (tenant_id, record_id)
);
DO $$
BEGIN
    IF (SELECT array_length(conkey, 1) FROM pg_constraint
        WHERE conrelid = 'relayed_records'::regclass AND contype = 'p') = 1 THEN
        ALTER TABLE relayed_records DROP CONSTRAINT relayed_records_pkey,
            ADD CONSTRAINT relayed_records_pkey PRIMARY KEY (tenant_id, record_id);
    END IF;
END $$;
DROP INDEX IF EXISTS relayed_records_tenant;
-- Ids whose CM copy differs from what the cloud relayed under the same (tenant, id): reported,
-- never acknowledged, so the cloud keeps its copy until an operator decides.
CREATE TABLE IF NOT EXISTS relay_conflicts (
    tenant_id   uuid NOT NULL,
    record_id   uuid NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, record_id)
);
