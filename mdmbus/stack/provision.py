"""What the pipeline needs inside the servers: its topics and its per-region databases."""

from __future__ import annotations

import asyncio
import time
from typing import Iterable

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from mdmbus.connections import admin_options, kafka_options, librdkafka_config, pg_connect
from mdmbus.identities import ADMIN, kafka_acls, kafka_principals
from mdmbus.regions import REGIONS, all_databases
from mdmbus.settings import Settings
from mdmbus.stack import pg_identities
from mdmbus.stack.errors import StackError
from mdmbus.stack.kafka_admin import AclAdmin, KafkaAdminError
from mdmbus.topics import TOPICS, TopicSpec

__all__ = ["ensure_topics", "ensure_databases", "ensure_schemas", "topic_configs",
           "existing_databases", "clusters", "ensure_kafka_identities", "ensure_pg_identities"]


def clusters(settings: Settings) -> dict[str, list[tuple[str, TopicSpec]]]:
    """bootstrap -> the (name, spec) of every topic it holds: the global topics on the global
    cluster, each region's on its own (the same one on the embedded stack)."""
    out: dict[str, list[tuple[str, TopicSpec]]] = {}
    for spec in TOPICS:
        if spec.regional:
            for region in REGIONS:
                out.setdefault(settings.kafka_bootstrap_of(region), []).append(
                    (spec.name(region), spec))
        else:
            out.setdefault(settings.kafka_bootstrap, []).append((spec.name(), spec))
    return out


async def _admin(settings: Settings, deadline_s: float,
                 bootstrap: str | None = None) -> AIOKafkaAdminClient:
    """The provisioning admin's client (connections.admin_options), retried until the broker
    answers metadata requests or the deadline."""
    end = time.monotonic() + deadline_s
    bootstrap = bootstrap or settings.kafka_bootstrap
    while True:
        admin = AIOKafkaAdminClient(**admin_options(settings, bootstrap,
                                                    request_timeout_ms=10_000))
        try:
            await admin.start()
            await admin.list_topics()
            return admin
        except (KafkaError, OSError) as exc:
            await admin.close()
            if time.monotonic() > end:
                raise StackError(f"Kafka at {bootstrap} does not answer metadata "
                                 f"requests ({exc!r}); check the broker log") from exc
            await asyncio.sleep(0.5)


async def ensure_topics(settings: Settings) -> list[str]:
    """Creates the missing topics on every cluster and brings existing ones to the declared
    configuration; returns the names created."""
    created = []
    for bootstrap, topics in clusters(settings).items():
        admin = await _admin(settings, settings.start_timeout_s, bootstrap)
        try:
            existing = set(await admin.list_topics())
            missing = [(n, s) for n, s in topics if n not in existing]
            if missing:
                await admin.create_topics([NewTopic(n, s.partitions,
                                                    settings.kafka_replication_factor,
                                                    topic_configs=dict(s.config))
                                           for n, s in missing])
            present = [(n, s) for n, s in topics if n in existing]
            if present:
                await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, n,
                                                          dict(s.config)) for n, s in present])
            created += [n for n, _ in missing]
        finally:
            await admin.close()
    return created


async def ensure_kafka_identities(settings: Settings) -> str:
    """Every principal of mdmbus/identities.py as a SCRAM user with its password, and exactly
    the declared ACLs, on every cluster; returns once a principal can log in with them."""
    created = deleted = 0
    principals = [p.name for p in kafka_principals()]
    for bootstrap in clusters(settings):
        # Once the broker answers metadata requests (a cluster just started may not yet).
        await (await _admin(settings, settings.start_timeout_s, bootstrap)).close()
        admin = AclAdmin(librdkafka_config(settings, ADMIN, bootstrap))
        end = time.monotonic() + settings.start_timeout_s
        for name in principals:
            await _retried(lambda a=admin, n=name: a.set_scram_password(
                n, settings.password("kafka", n)), end)
        c, d = await _retried(lambda a=admin: a.sync_acls(kafka_acls()), end)
        created, deleted = created + c, deleted + d
        await _until_login(settings, bootstrap, ADMIN, settings.start_timeout_s)
    if not (created or deleted):
        return f"{len(principals)} SCRAM users, {len(kafka_acls())} ACLs as declared (no change)"
    return (f"{len(principals)} SCRAM users, {len(kafka_acls())} ACLs ({created} added, "
            f"{deleted} removed)")


async def _retried(call, end: float):
    """``call()`` again while the broker answers with a retriable error (a request timed out
    on a cluster just started on a loaded machine: seen on compose's three nodes), until the
    monotonic time ``end``. Only for requests that may be repeated: setting a password,
    bringing the ACLs to the declared set."""
    while True:
        try:
            return await call()
        except (KafkaError, KafkaAdminError) as exc:
            if not exc.retriable or time.monotonic() > end:
                raise
            await asyncio.sleep(0.5)


async def _until_login(settings: Settings, bootstrap: str, principal: str,
                       deadline_s: float) -> None:
    """A SCRAM user set a moment ago logs in once the broker has applied the controller's
    record: until then, and until ``deadline_s``, it is retried."""
    end = time.monotonic() + deadline_s
    while True:
        admin = AIOKafkaAdminClient(**kafka_options(settings, principal,
                                                    request_timeout_ms=10_000,
                                                    bootstrap_servers=bootstrap))
        try:
            await admin.start()
            return
        except (KafkaError, OSError) as exc:
            if time.monotonic() > end:
                raise StackError(f"{principal} cannot log in to Kafka at {bootstrap} after "
                                 f"its password was set ({exc!r})") from exc
            await asyncio.sleep(0.2)
        finally:
            await admin.close()


async def ensure_pg_identities(settings: Settings) -> str:
    """Every PostgreSQL role of mdmbus/identities.py with its rights (stack/pg_identities.py)."""
    return await pg_identities.sync(settings)


async def topic_configs(settings: Settings, names: Iterable[str],
                        bootstrap: str | None = None) -> dict[str, dict[str, str]]:
    """Each topic's effective configuration as the broker reports it."""
    admin = await _admin(settings, 30, bootstrap)
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        out: dict[str, dict[str, str]] = {}
        for response in responses:
            for resource in response.to_object()["resources"]:
                if resource["error_code"]:
                    raise StackError(f"describe configs of {resource['resource_name']}: "
                                     f"{resource['error_message']}")
                out[resource["resource_name"]] = {
                    e["config_names"]: e["config_value"] for e in resource["config_entries"]}
        return out
    finally:
        await admin.close()


async def existing_databases(settings: Settings) -> set[str]:
    """Every database on the servers that hold mdmbus's databases."""
    have: set[str] = set()
    for server_of in {settings.pg_server(db): db for db in all_databases()}.values():
        conn = await pg_connect(settings, server_of, connect_to="postgres")
        try:
            have |= {r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database")}
        finally:
            await conn.close()
    return have


async def ensure_databases(settings: Settings, deadline_s: float = 0) -> list[str]:
    """Create the region and CM databases that do not exist yet, each on its own server."""
    created = []
    for name in all_databases():
        conn = await _pg_connect(settings, name, deadline_s)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                # CREATE DATABASE takes no parameters; names come from mdmbus.regions only.
                await conn.execute(f'CREATE DATABASE "{name}"')
                created.append(name)
        finally:
            await conn.close()
    return created


async def ensure_schemas(settings: Settings) -> None:
    """Applies every database's DDL (idempotent) as the database's owner role, which owns the
    database and its tables and cannot log in (mdmbus/identities.py): provisioning, not the
    processes, changes tables, and no service role owns one."""
    from mdmbus.services.stores.schema import ensure_schema
    for name in all_databases():
        conn = await pg_connect(settings, name)
        try:
            owner = await pg_identities.ensure_owner(conn, name)
            await ensure_schema(conn, name, owner)
        finally:
            await conn.close()


async def _pg_connect(settings: Settings, database: str, deadline_s: float) -> asyncpg.Connection:
    """The server of ``database`` (its maintenance database), retried until ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            return await pg_connect(settings, database, connect_to="postgres")
        except (OSError, asyncpg.PostgresError) as exc:
            if time.monotonic() > end:
                host, port = settings.pg_server(database)
                raise StackError(f"PostgreSQL at {host}:{port} (for {database}) does not answer:"
                                 f" {exc}") from exc
            await asyncio.sleep(0.5)
