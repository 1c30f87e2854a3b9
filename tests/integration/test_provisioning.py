"""What `mdmbus stack up` declares is what the servers have."""

from __future__ import annotations

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from mdmbus.regions import CM_DATABASE, REGIONS, all_databases, region_database
from mdmbus.stack import provision
from mdmbus.topics import TOPICS

pytestmark = pytest.mark.integration


async def test_every_declared_topic_has_its_partitions_and_config(stack):
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics([t.name for t in TOPICS])}
    finally:
        await admin.close()
    configs = await provision.topic_configs(stack, [t.name for t in TOPICS])
    for spec in TOPICS:
        assert described[spec.name]["error_code"] == 0, spec.name
        assert len(described[spec.name]["partitions"]) == spec.partitions, spec.name
        for key, value in spec.config.items():
            assert configs[spec.name][key] == value, f"{spec.name}: {key}"


async def test_provisioning_is_idempotent_and_restores_drifted_config(stack):
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    spec = TOPICS[0]
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        drifted = dict(spec.config, **{"retention.ms": "12345"})
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, drifted)])
    finally:
        await admin.close()
    assert (await provision.topic_configs(stack, [spec.name]))[spec.name]["retention.ms"] == "12345"
    assert await provision.ensure_topics(stack) == []  # nothing created twice
    restored = (await provision.topic_configs(stack, [spec.name]))[spec.name]
    assert restored["retention.ms"] == spec.config["retention.ms"]


@pytest.mark.parametrize("database", [region_database(r) for r in REGIONS] + [CM_DATABASE])
async def test_each_region_database_accepts_connections(stack, database):
    conn = await asyncpg.connect(stack.pg_dsn(database))
    try:
        assert await conn.fetchval("SELECT current_database()") == database
        assert (await conn.fetchval("SHOW server_version")).startswith("15")
        listen = await conn.fetchval("SHOW listen_addresses")
        assert listen == "127.0.0.1"
    finally:
        await conn.close()


async def test_one_database_per_region_and_one_for_cm(stack):
    have = await provision.existing_databases(stack)
    assert set(all_databases()) <= have
    assert {"mdmbus_na", "mdmbus_eu", "mdmbus_ap", "mdmbus_cm"} <= have


async def test_every_topic_bounds_how_long_its_copies_stay_readable(stack):
    """Rule 6: the broker deletes whole segments, so a copy is unreadable at the latest
    segment.ms + retention.ms after it was written. Read those back from the broker."""
    configs = await provision.topic_configs(stack, [t.name for t in TOPICS])
    hour_ms = 3_600_000
    bound = {name: int(c["segment.ms"]) + int(c["retention.ms"]) for name, c in configs.items()}
    for spec in TOPICS:
        assert configs[spec.name]["cleanup.policy"] == "delete", spec.name
        assert spec.copies, f"{spec.name} must say how its copies become unreadable"
        assert bound[spec.name] <= 25 * hour_ms, f"{spec.name} keeps copies too long"
    # Temporary commands must be gone within an hour of the session's expiry; a command is
    # written before its session expires, so its copy must be unreadable within the hour.
    assert bound["mdm.device.commands"] <= hour_ms
    assert bound["mdm.device.sessions"] <= hour_ms
