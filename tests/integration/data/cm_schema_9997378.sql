-- The Configuration Manager database (on-premises side): relayed records land here, durably,
-- before the cloud copy may be deleted (rule 2). Applied by services/stores/schema.py.
CREATE TABLE IF NOT EXISTS relayed_records (
    record_id   uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL,
    kind        text NOT NULL,
    device_id   uuid,
    event_time  timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    body        bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS relayed_records_tenant ON relayed_records (tenant_id);
