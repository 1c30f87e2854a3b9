"""What `mdmbus stack up` declares is what the servers have."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from mdmbus.connections import kafka_options, pg_connect
from mdmbus.identities import ADMIN
from mdmbus.regions import CM_DATABASE, DIRECTORY_DATABASE, REGIONS, all_databases, region_database
from mdmbus.stack import provision
from mdmbus.topics import RETENTION_CHECK_MS, TRUNCATE_INTERVAL_S, TopicKind, all_topics

pytestmark = pytest.mark.integration


TOPICS = all_topics()
NAMES = [name for name, _ in TOPICS]


async def test_every_declared_topic_has_its_partitions_and_config(stack):
    admin = AIOKafkaAdminClient(**kafka_options(stack, ADMIN))
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(NAMES)}
    finally:
        await admin.close()
    configs = await provision.topic_configs(stack, NAMES)
    # six per region (upload, relay, sessions, commands, dead letters, deletion requests), the
    # lifecycle and smoke topics
    assert len(NAMES) == 6 * len(REGIONS) + 2
    for name, spec in TOPICS:
        assert described[name]["error_code"] == 0, name
        assert len(described[name]["partitions"]) == spec.partitions, name
        for key, value in spec.config.items():
            assert configs[name][key] == value, f"{name}: {key}"


async def test_provisioning_is_idempotent_and_restores_drifted_config(stack):
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    name, spec = TOPICS[0]
    admin = AIOKafkaAdminClient(**kafka_options(stack, ADMIN))
    await admin.start()
    try:
        drifted = dict(spec.config, **{"retention.ms": "12345"})
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, drifted)])
    finally:
        await admin.close()
    assert (await provision.topic_configs(stack, [name]))[name]["retention.ms"] == "12345"
    assert await provision.ensure_topics(stack) == []  # nothing created twice
    restored = (await provision.topic_configs(stack, [name]))[name]
    assert restored["retention.ms"] == spec.config["retention.ms"]


@pytest.mark.parametrize("database", [region_database(r) for r in REGIONS]
                         + [DIRECTORY_DATABASE, CM_DATABASE])
async def test_each_region_database_accepts_connections(stack, database):
    conn = await pg_connect(stack, database)
    try:
        assert await conn.fetchval("SELECT current_database()") == database
        assert (await conn.fetchval("SHOW server_version")).startswith("15")
        listen = await conn.fetchval("SHOW listen_addresses")
        assert listen == "127.0.0.1"
    finally:
        await conn.close()


async def test_one_database_per_region_the_directory_and_cm(stack):
    have = await provision.existing_databases(stack)
    assert set(all_databases()) <= have
    assert {"mdmbus_na", "mdmbus_eu", "mdmbus_ap", "mdmbus_directory", "mdmbus_cm"} <= have


async def test_every_topic_bounds_how_long_its_copies_stay_readable_and_on_disk(stack):
    """Rules 6 and 7: each topic's declared bounds, recomputed from what the broker reports.
    Whatever happens, a copy is gone from disk at most retention.ms + segment.ms + the
    retention check + the file delete delay after it was written; a transit topic's processed
    copy is unreadable within two truncation intervals of its commit and off the disk within
    a segment's time more."""
    configs = await provision.topic_configs(stack, NAMES)
    broker = await _broker_config(stack)
    assert int(broker["log.retention.check.interval.ms"]) == RETENTION_CHECK_MS
    hour_ms = 3_600_000
    for name, spec in TOPICS:
        c = configs[name]
        assert c["cleanup.policy"] == "delete", name
        assert spec.copies, f"{name} must say how its copies become unreadable"
        bound_ms = (int(c["retention.ms"]) + int(c["segment.ms"]) + RETENTION_CHECK_MS
                    + int(c["file.delete.delay.ms"]))
        assert spec.bound_s == bound_ms / 1000, name
        assert bound_ms <= 8 * 24 * hour_ms, f"{name} keeps copies too long"
        if spec.transit:
            assert spec.unreadable_s == 2 * TRUNCATE_INTERVAL_S
            assert spec.removed_s == (2 * spec.unreadable_s + int(c["segment.ms"]) / 1000
                                      + 2 * RETENTION_CHECK_MS / 1000
                                      + int(c["file.delete.delay.ms"]) / 1000), name
            assert spec.removed_s <= 5 * 60, f"{name}: processed copies on disk for minutes"
        else:
            assert spec.unreadable_s == spec.removed_s == spec.bound_s
    transit = {spec.kind for _, spec in TOPICS if spec.transit}
    assert transit == {TopicKind.UPLOAD, TopicKind.RELAY, TopicKind.DEVICE_SESSIONS,
                       TopicKind.DEVICE_COMMANDS, TopicKind.DELETION_REQUESTS}
    # Temporary commands must be gone within an hour of the session's expiry; a command is
    # written before its session expires, so its copy must be off the disk within the hour.
    for region in REGIONS:
        for kind in (TopicKind.DEVICE_COMMANDS, TopicKind.DEVICE_SESSIONS):
            c = configs[f"mdm.{region}.{kind}"]
            assert int(c["segment.ms"]) + int(c["retention.ms"]) <= hour_ms


async def _broker_config(stack) -> dict[str, str]:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    admin = AIOKafkaAdminClient(**kafka_options(stack, ADMIN))
    await admin.start()
    try:
        response, = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")])
        resource, = response.to_object()["resources"]
        return {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
    finally:
        await admin.close()
