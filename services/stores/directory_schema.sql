-- The global tenant directory (docs/design.md section 3): tenant id -> region, country and
-- lifecycle state, and nothing else. A purged tenant keeps its row with state 'purged' (a
-- tombstone), so that a replayed or re-sent onboarding cannot bring it back (rule 7).
-- Applied by services/stores/schema.py.
CREATE TABLE IF NOT EXISTS tenant_directory (
    tenant_id        uuid PRIMARY KEY,
    region           text NOT NULL,
    country          text NOT NULL,
    state            text NOT NULL DEFAULT 'active'
                     CHECK (state IN ('active', 'retention', 'purged')),
    onboarded_at     timestamptz NOT NULL,
    ended_at         timestamptz,   -- subscription end
    read_only_until  timestamptz,
    purge_at         timestamptz,
    purged_at        timestamptz
);
CREATE INDEX IF NOT EXISTS tenant_directory_region ON tenant_directory (region, state);

-- Lifecycle events no region could apply (an unknown country, a tenant never onboarded, an
-- onboarding of a deleted tenant, bytes that are not a lifecycle record): lifecycle records
-- carry no personal data, so the refusal is kept here, globally, once per source message.
CREATE TABLE IF NOT EXISTS lifecycle_refusals (
    source_topic     text NOT NULL,
    source_partition integer NOT NULL,
    source_offset    bigint NOT NULL,
    reason           text NOT NULL,
    error            text NOT NULL,
    tenant_id        uuid,
    kind             text,
    refused_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (source_topic, source_partition, source_offset)
);
