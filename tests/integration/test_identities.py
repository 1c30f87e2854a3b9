"""Who may do what (mdmbus/identities.py), held against the running servers.

Two halves. First, what the servers hold is read back and compared with the declaration: the
broker's ACLs and SCRAM users, every database's table, column and sequence privileges, its
CONNECT and TEMPORARY rights, its row-level security policies, and the login roles'
attributes. Second, security is tested by trying what must fail: every (principal, topic,
operation) and every (role, table, column, privilege) pair the declaration does not allow is
attempted against the real broker and database and must be refused with an authorization
error; the allowed pairs are tried too (harmlessly, below), so that a refusal is known to
come from the rules, not from a broken client. Logging in without credentials, with a wrong
password, without TLS or with a certificate of another CA is refused as well.

Attempts that would change something if they were (wrongly) allowed are made harmless where
the protocol permits: PostgreSQL statements run in a transaction that is rolled back, Kafka
records are deleted "before offset 0" (nothing), configurations are altered with validate_only,
an allowed write goes to a partition that does not exist (the broker authorizes the topic
first, then answers UNKNOWN_TOPIC_OR_PARTITION). A forbidden write sends a recognizable junk
record, and the test then checks it did not land.
"""

from __future__ import annotations

import asyncio
import hashlib
import datetime as dt
import os
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import (KafkaConnectionError, KafkaError, SaslAuthenticationFailed,
                             TopicAuthorizationFailedError, UnsupportedSaslMechanismError)
from aiokafka.protocol.admin import (AlterConfigsRequest, DeleteRecordsRequest,
                                     DescribeConfigsRequest)
from aiokafka.protocol.commit import OffsetCommitRequest
from aiokafka.protocol.coordination import FindCoordinatorRequest
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.produce import ProduceRequest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import TopicPartition

from mdmbus.connections import (admin_options, ca_context, kafka_options, librdkafka_config,
                                pg_connect)
from mdmbus.identities import (ADMIN, SUPER_USERS, Acl, Op, Pattern, Resource, TABLES,
                               kafka_acls, kafka_principals, pg_database_privileges, pg_grants,
                               owner_of, pg_policies, pg_roles, pg_sequences, policy_name,
                               role_of)
from mdmbus.regions import (CM_DATABASE, DIRECTORY_DATABASE, REGIONS, all_databases,
                            database_kind, region_database)
from mdmbus.settings import Settings
from mdmbus.stack.kafka_admin import SCRAM_MECHANISM, AclAdmin, binding
from mdmbus.stack.pg_identities import (MAINTENANCE, read_connect, read_grants, read_policies,
                                        read_roles, read_sequence_grants)
from mdmbus.topics import all_topics
from tests.conftest import wait_for
from tests.integration.kafka_requests import (AlterScram, CreateAcls, DeleteAcls, DescribeAcls,
                                              DescribeScram, acl_tuple)
from tests.integration.rights_table import (KAFKA, PG, SEQUENCE_USERS, kafka_may, pg_may)

pytestmark = pytest.mark.integration

TOPICS = all_topics()
NAMES = [name for name, _ in TOPICS]
ACLS = kafka_acls()
#: Every principal but the super user, which may do everything by design.
PRINCIPALS = [p.name for p in kafka_principals() if p.name not in SUPER_USERS]
ROLES = pg_roles()
#: One id per run: test data and junk records of concurrent runs never collide.
RUN = uuid.uuid4().hex
JUNK = f"mdmbus identity test: junk that must never land ({RUN})".encode()

# Kafka error codes the broker answers with.
NONE, OUT_OF_RANGE, UNKNOWN_PARTITION = 0, 1, 3
TOPIC_DENIED, GROUP_DENIED, CLUSTER_DENIED = 29, 30, 31
DENIED = {TOPIC_DENIED, GROUP_DENIED, CLUSTER_DENIED}
#: What Kafka's DESCRIBE is implied by (so is every op by ALL, which mdmbus never grants).
_IMPLIES = {Op.DESCRIBE: {Op.READ, Op.WRITE, Op.DELETE},
            Op.DESCRIBE_CONFIGS: {Op.ALTER_CONFIGS}}


def allows(principal: str, resource: Resource, name: str, op: Op) -> bool:
    """Whether ``principal`` may do ``op`` on the resource ``name``: the hand-written table
    (tests/integration/rights_table.py), not the declaration under test, with Kafka's
    StandardAuthorizer's rules (literal and prefixed patterns; READ, WRITE and DELETE imply
    DESCRIBE)."""
    return kafka_may(principal, resource.name, name, op.name)


def _error_name(code: int) -> str:
    from aiokafka.errors import for_code
    return f"{code} ({for_code(code).__name__})" if code else "0 (no error)"


# ================================================================= Kafka: clients

@dataclass
class Kafka:
    admin: AIOKafkaAdminClient
    #: the ACL and SCRAM administration, as the provisioning admin
    acl: AclAdmin
    clients: dict[str, AIOKafkaAdminClient]
    #: topic -> the broker that leads its partition 0 (where fetches and writes go)
    leaders: dict[str, int]
    settings: Settings

    async def send(self, principal: str, node: int, request):
        return await self.clients[principal]._client.send(node, request)

    def by_leader(self, topics) -> dict[int, list[str]]:
        out: dict[int, list[str]] = defaultdict(list)
        for t in topics:
            out[self.leaders[t]].append(t)
        return out

    async def offsets(self, which: str) -> dict[str, int]:
        """Partition 0's earliest or latest offset of every topic, as the admin sees it."""
        consumer = AIOKafkaConsumer(**admin_options(self.settings))
        await consumer.start()
        try:
            tps = [TopicPartition(t, 0) for t in NAMES]
            got = await (consumer.beginning_offsets(tps) if which == "earliest"
                         else consumer.end_offsets(tps))
            return {tp.topic: offset for tp, offset in got.items()}
        finally:
            await consumer.stop()


@pytest.fixture(scope="module")
async def kafka(stack) -> Kafka:
    """One connected client per principal (and the admin), shared by the module's tests."""
    admin = AIOKafkaAdminClient(**admin_options(stack))
    await admin.start()
    clients: dict[str, AIOKafkaAdminClient] = {}
    try:
        async def connect(principal: str) -> None:
            client = AIOKafkaAdminClient(**kafka_options(stack, principal))
            await client.start()
            clients[principal] = client
        await asyncio.gather(*(connect(p) for p in PRINCIPALS))
        described = await admin.describe_topics(NAMES)
        leaders = {}
        for t in described:
            assert t["error_code"] == 0, f"the admin cannot describe {t['topic']}: {t}"
            leaders[t["topic"]] = next(p["leader"] for p in t["partitions"] if p["partition"] == 0)
        yield Kafka(admin, AclAdmin(librdkafka_config(stack)), clients, leaders, stack)
    finally:
        await asyncio.gather(*(c.close() for c in clients.values()), return_exceptions=True)
        await admin.close()


def _batch(value: bytes) -> bytes:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    builder.append(0, timestamp=None, key=None, value=value, headers=[])
    return bytes(builder.build())


def _check(observed: dict[tuple[str, str], int], op: str, allowed_code: set[int],
           decide) -> list[str]:
    """Failure lines for (principal, topic) -> broker error code: a pair the declaration
    allows must get one of ``allowed_code``, any other pair an authorization error."""
    problems = [f"{op}: no answer for {principal} on {topic}" for principal in PRINCIPALS
                for topic in NAMES if (principal, topic) not in observed and op != "CREATE"]
    for (principal, topic), code in sorted(observed.items()):
        if decide(principal, topic):
            if code not in allowed_code:
                problems.append(f"{principal} {op} {topic}: declared allowed, but the broker "
                                f"answered {_error_name(code)}")
        elif code not in DENIED:
            problems.append(f"{principal} {op} {topic}: NOT declared, but the broker answered "
                            f"{_error_name(code)} instead of an authorization error")
    return problems


# ================================================================= Kafka: read-back

async def test_broker_holds_exactly_the_declared_acls_and_every_scram_user(kafka, stack):
    held = await kafka.acl.acls()
    declared = set(ACLS)
    assert held == declared, (
        "the broker's ACLs differ from mdmbus/identities.py:\n"
        + "".join(f"  held, not declared: {a}\n" for a in sorted(held - declared))
        + "".join(f"  declared, not held: {a}\n" for a in sorted(declared - held)))
    assert await kafka.acl.foreign_acls() == [], "DENY, host-limited or cluster ACLs exist"
    users = await kafka.acl.scram_users([p.name for p in kafka_principals()])
    for p in kafka_principals():
        assert SCRAM_MECHANISM in users.get(p.name, []), \
            f"principal {p.name} has no {SCRAM_MECHANISM} credential on the broker: {users}"
    # allow.everyone.if.no.acl.found=false and super.users are not readable (DescribeConfigs
    # hides them): the matrices below show them at work (mdm.smoke has no ACL at all).
    assert not any(a.name == "mdm.smoke" for a in ACLS)


async def test_broker_holds_exactly_the_rights_of_the_hand_written_table(kafka):
    """The broker's ACLs, read back, against tests/integration/rights_table.py: a right the
    declaration gained by mistake shows here even though the broker holds what was declared."""
    held = {(a.principal.removeprefix("User:"), a.resource.name, a.name, a.pattern.name,
             a.op.name) for a in await kafka.acl.acls()}
    assert held == set(KAFKA), (
        "".join(f"  held, not in the table: {a}\n" for a in sorted(held - KAFKA))
        + "".join(f"  in the table, not held: {a}\n" for a in sorted(KAFKA - held)))


async def test_the_gateway_writes_no_relay_or_device_record(kafka, stack):
    """The gateway serves relay records from the store; a WRITE on a relay topic would let it
    forge records that reach CM. Its principal's producer is refused on every relay, device
    and dead-letter topic of every region."""
    problems = []
    for region in REGIONS:
        principal = f"gateway-{region}"
        client = AIOKafkaProducer(**kafka_options(stack, principal, request_timeout_ms=10_000))
        await client.start()
        try:
            for kind in ("relay", "device.sessions", "device.commands", "deadletter"):
                for r in REGIONS:
                    topic = f"mdm.{r}.{kind}"
                    try:
                        await asyncio.wait_for(client.send_and_wait(topic, JUNK, partition=0), 15)
                    except TopicAuthorizationFailedError:
                        continue
                    problems.append(f"{principal} wrote to {topic}")
        finally:
            await client.stop()
    assert not problems, problems


# ================================================================= Kafka: every pair

async def test_describe_of_every_topic_is_refused_unless_declared(kafka):
    """Metadata (DESCRIBE): a principal does not even learn that another region's topics
    exist."""
    observed: dict[tuple[str, str], int] = {}

    async def one(principal: str) -> None:
        response = await kafka.send(principal, next(iter(kafka.leaders.values())),
                                    MetadataRequest(NAMES, False))
        answered = {t[1]: t[0] for t in response.topics}
        for topic in NAMES:
            observed[(principal, topic)] = answered.get(topic, -1)

    await asyncio.gather(*(one(p) for p in PRINCIPALS))
    problems = _check(observed, "DESCRIBE", {NONE},
                      lambda p, t: allows(p, Resource.TOPIC, t, Op.DESCRIBE))
    assert not problems, "\n".join(problems)


async def test_read_of_every_topic_is_refused_unless_declared(kafka):
    """One fetch of partition 0 from the beginning, no group, for every (principal, topic)."""
    earliest = await kafka.offsets("earliest")
    observed: dict[tuple[str, str], int] = {}

    async def one(principal: str) -> None:
        for node, topics in kafka.by_leader(NAMES).items():
            response = await kafka.send(principal, node, FetchRequest(
                0, 0, 1 << 16, 0, [(t, [(0, earliest[t], 1024)]) for t in topics]))
            for topic, partitions in response.topics:
                for _partition, code, *_ in partitions:
                    observed[(principal, topic)] = code

    await asyncio.gather(*(one(p) for p in PRINCIPALS))
    # A transit topic may have been truncated since its earliest offset was asked for.
    problems = _check(observed, "READ", {NONE, OUT_OF_RANGE},
                      lambda p, t: allows(p, Resource.TOPIC, t, Op.READ))
    assert not problems, "\n".join(problems)


async def test_allowed_reads_work_with_a_real_consumer_and_describe_only_is_refused(kafka, stack):
    """The pipelines read their topics with aiokafka's consumer (assigned, no group, nothing
    committed), to the end; a principal that may DESCRIBE a topic but not READ it (the
    sweeper on its transit topics) gets TopicAuthorizationFailedError from the consumer."""
    readers = {p: [t for t in NAMES if allows(p, Resource.TOPIC, t, Op.READ)] for p in PRINCIPALS}
    readers = {p: ts for p, ts in readers.items() if ts}
    assert set(readers) == {f"pipeline-{r}" for r in REGIONS}, readers
    latest = await kafka.offsets("latest")

    async def read(principal: str, topics: list[str]) -> None:
        consumer = AIOKafkaConsumer(**kafka_options(stack, principal, group_id=None,
                                                    enable_auto_commit=False,
                                                    auto_offset_reset="earliest"))
        await consumer.start()
        try:
            tps = [TopicPartition(t, 0) for t in topics]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)

            async def at_end() -> bool:
                await consumer.getmany(timeout_ms=100)
                return all([await consumer.position(tp) >= latest[tp.topic] for tp in tps])
            await wait_for(at_end, 15, f"{principal} reading {topics} to their end")
        finally:
            await consumer.stop()

    async def refused(principal: str, topic: str) -> str | None:
        consumer = AIOKafkaConsumer(**kafka_options(stack, principal, group_id=None,
                                                    enable_auto_commit=False,
                                                    auto_offset_reset="earliest"))
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, 0)])
            try:
                await asyncio.wait_for(consumer.getmany(timeout_ms=5000), 10)
            except TopicAuthorizationFailedError:
                return None
            return f"{principal} READ {topic}: the consumer got no authorization error"
        finally:
            await consumer.stop()

    describe_only = [(p, t) for p in PRINCIPALS for t in NAMES
                     if allows(p, Resource.TOPIC, t, Op.DESCRIBE)
                     and not allows(p, Resource.TOPIC, t, Op.READ)]
    assert any(p.startswith("sweeper-") for p, _ in describe_only)
    results = await asyncio.gather(*(read(p, ts) for p, ts in readers.items()),
                                   *(refused(p, t) for p, t in describe_only))
    problems = [r for r in results if r]
    assert not problems, "\n".join(problems)


async def test_write_to_every_topic_is_refused_unless_declared_and_nothing_lands(kafka, stack):
    """Every forbidden (principal, topic) is sent a junk record twice: by a raw produce
    request to partition 0 and by aiokafka's producer; both are refused and the junk is on no
    partition afterwards. An allowed pair is proven by a write to a partition that does not
    exist: the broker checks the ACL first (29 if refused), then answers
    UNKNOWN_TOPIC_OR_PARTITION; nothing is written to a real topic."""
    before = await kafka.offsets("latest")
    observed: dict[tuple[str, str], int] = {}
    problems: list[str] = []

    async def raw(principal: str) -> None:
        for node, topics in kafka.by_leader(NAMES).items():
            data = []
            for t in topics:
                allowed = allows(principal, Resource.TOPIC, t, Op.WRITE)
                data.append((t, [(9999 if allowed else 0, _batch(JUNK))]))
            response = await kafka.send(principal, node, ProduceRequest(None, 1, 10_000, data))
            for topic, partitions in response.topics:
                for _partition, code, *_ in partitions:
                    observed[(principal, topic)] = code

    async def producer(principal: str) -> None:
        client = AIOKafkaProducer(**kafka_options(stack, principal, request_timeout_ms=10_000))
        await client.start()
        try:
            for topic in NAMES:
                if allows(principal, Resource.TOPIC, topic, Op.WRITE):
                    continue
                try:
                    await asyncio.wait_for(client.send_and_wait(topic, JUNK, partition=0), 15)
                except TopicAuthorizationFailedError:
                    continue
                except Exception as e:  # noqa: BLE001 - named in the failure
                    problems.append(f"{principal} WRITE {topic}: producer failed with "
                                    f"{type(e).__name__}: {e}, not an authorization error")
                else:
                    problems.append(f"{principal} WRITE {topic}: the producer's record was "
                                    f"ACCEPTED although not declared")
        finally:
            await client.stop()

    await asyncio.gather(*(raw(p) for p in PRINCIPALS), *(producer(p) for p in PRINCIPALS))
    problems += _check(observed, "WRITE", {UNKNOWN_PARTITION},
                       lambda p, t: allows(p, Resource.TOPIC, t, Op.WRITE))
    problems += await _junk_landed(kafka, before)
    assert not problems, "\n".join(problems)


async def _junk_landed(kafka: Kafka, before: dict[str, int]) -> list[str]:
    """Where a junk record of this run is, among what partition 0 of every topic received
    since ``before`` (other tests may write meanwhile; only the junk counts)."""
    after = await kafka.offsets("latest")
    grown = [t for t in NAMES if after[t] > before[t]]
    if not grown:
        return []
    consumer = AIOKafkaConsumer(**admin_options(kafka.settings, enable_auto_commit=False,
                                                auto_offset_reset="earliest"))
    await consumer.start()
    found: list[str] = []
    try:
        tps = [TopicPartition(t, 0) for t in grown]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, before[tp.topic])

        async def read_all() -> bool:
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                found.extend(f"junk landed on {tp.topic}[0] at offset {r.offset}"
                             for r in records if r.value == JUNK)
            return all([await consumer.position(tp) >= after[tp.topic] for tp in tps])
        await wait_for(read_all, 15, f"reading what {grown} received during the test")
    finally:
        await consumer.stop()
    return found


async def test_delete_records_of_every_topic_is_refused_unless_declared(kafka):
    """DeleteRecords "before offset 0" (which deletes nothing even where allowed)."""
    observed: dict[tuple[str, str], int] = {}

    async def one(principal: str) -> None:
        for node, topics in kafka.by_leader(NAMES).items():
            response = await kafka.send(principal, node, DeleteRecordsRequest(
                [(t, [(0, 0)]) for t in topics], 10_000))
            for topic, partitions, *_ in response.topics:
                for _partition, _low_watermark, code, *_ in partitions:
                    observed[(principal, topic)] = code

    await asyncio.gather(*(one(p) for p in PRINCIPALS))
    problems = _check(observed, "DELETE", {NONE},
                      lambda p, t: allows(p, Resource.TOPIC, t, Op.DELETE))
    assert not problems, "\n".join(problems)


async def test_no_principal_can_delete_a_topic(kafka):
    """Kafka's DELETE operation authorizes DeleteRecords (the pipeline's truncation of what it
    stored) and DeleteTopics alike: holding it, the pipeline could delete its transit topics
    outright, unless the broker refuses every topic deletion (delete.topic.enable=false).
    Deletion is attempted only where the broker refuses it anyway: otherwise the attempt
    would delete a real topic, and the test fails naming who could."""
    broker = str(next(iter(kafka.leaders.values())))
    response, = await kafka.admin.describe_configs(
        [ConfigResource(ConfigResourceType.BROKER, broker, {"delete.topic.enable": None})])
    enabled = {e[0]: e[1] for e in response.resources[0][4]}["delete.topic.enable"]
    deleters = sorted((p, t) for p in PRINCIPALS for t in NAMES
                      if allows(p, Resource.TOPIC, t, Op.DELETE))
    if enabled != "false":
        pytest.fail("delete.topic.enable is " + repr(enabled) + ": these principals may delete "
                    "whole topics with their DELETE ACL (declared for DeleteRecords):\n"
                    + "\n".join(f"  {p} may delete topic {t}" for p, t in deleters))
    problems = []

    async def one(principal: str) -> None:
        response = await kafka.clients[principal].delete_topics(NAMES)
        for topic, code, *_ in response.topic_error_codes:
            if code not in DENIED | {73}:  # 73: TOPIC_DELETION_DISABLED
                problems.append(f"{principal} DeleteTopics {topic}: {_error_name(code)}")

    await asyncio.gather(*(one(p) for p in PRINCIPALS))
    assert not problems, "\n".join(problems)


async def test_topic_configs_are_neither_described_nor_altered_and_no_topic_is_created(kafka):
    """DESCRIBE_CONFIGS and ALTER_CONFIGS (validate_only, with the declared values) on every
    topic, and CREATE of a new topic, for every principal."""
    configs = {name: spec.config for name, spec in TOPICS}
    created = {p: f"mdm.identity-test.{p}.{RUN}" for p in PRINCIPALS}
    observed: dict[str, dict[tuple[str, str], int]] = defaultdict(dict)
    node = next(iter(kafka.leaders.values()))

    async def one(principal: str) -> None:
        client = kafka.clients[principal]
        response = await kafka.send(principal, node, DescribeConfigsRequest(
            [(ConfigResourceType.TOPIC.value, t, None) for t in NAMES]))
        for code, _message, _type, name, *_ in response.resources:
            observed["DESCRIBE_CONFIGS"][(principal, name)] = code
        response = await kafka.send(principal, node, AlterConfigsRequest(
            [(ConfigResourceType.TOPIC.value, t, list(configs[t].items())) for t in NAMES],
            True))
        for code, _message, _type, name in response.resources:
            observed["ALTER_CONFIGS"][(principal, name)] = code
        response = await client.create_topics([NewTopic(created[principal], 1, 1)])
        for name, code, *_ in response.topic_errors:
            observed["CREATE"][(principal, name)] = code

    try:
        await asyncio.gather(*(one(p) for p in PRINCIPALS))
        problems = []
        for op in ("DESCRIBE_CONFIGS", "ALTER_CONFIGS"):
            problems += _check(observed[op], op, {NONE},
                               lambda p, t, op=op: allows(p, Resource.TOPIC, t, Op[op]))
        problems += _check(observed["CREATE"], "CREATE", {NONE},
                           lambda p, t: allows(p, Resource.TOPIC, t, Op.CREATE))
        assert len(observed["CREATE"]) == len(PRINCIPALS)
        existing = set(await kafka.admin.list_topics())
        problems += [f"{p} created topic {t}" for p, t in created.items() if t in existing]
        assert not problems, "\n".join(problems)
    finally:
        stray = set(created.values()) & set(await kafka.admin.list_topics())
        if stray:
            await kafka.admin.delete_topics(sorted(stray))


async def test_groups_outside_a_principals_prefix_are_refused(kafka):
    """Group READ (an offset commit) and DESCRIBE (finding its coordinator) in every region's
    group namespace and outside mdmbus's: allowed only in the principal's declared prefix
    (pipeline: READ in mdmbus-<its region>-; sweeper: DESCRIBE only there). An allowed
    commit names a topic the principal may not read, so the broker passes the group check and
    refuses the topic: nothing is committed."""
    groups = [f"mdmbus-{r}-identity-test-{RUN}" for r in REGIONS] + [f"identity-test-{RUN}"]
    coordinators = {}
    for g in groups:
        async def find(g=g):
            response = await kafka.admin._send_request(FindCoordinatorRequest(g, 0))
            return response.coordinator_id if response.error_code == 0 else None
        coordinators[g] = await wait_for(find, 30, f"a coordinator for group {g}")
    unreadable = {p: next(t for t in NAMES if not allows(p, Resource.TOPIC, t, Op.READ))
                  for p in PRINCIPALS}
    problems: list[str] = []

    async def one(principal: str) -> None:
        for g in groups:
            response = await kafka.clients[principal]._send_request(FindCoordinatorRequest(g, 0))
            describe = allows(principal, Resource.GROUP, g, Op.DESCRIBE)
            if describe and response.error_code != NONE:
                problems.append(f"{principal} DESCRIBE group {g}: declared allowed, got "
                                f"{_error_name(response.error_code)}")
            if not describe and response.error_code != GROUP_DENIED:
                problems.append(f"{principal} DESCRIBE group {g}: NOT declared, got "
                                f"{_error_name(response.error_code)}")
            topic = unreadable[principal]
            response = await kafka.send(principal, coordinators[g], OffsetCommitRequest(
                g, -1, "", -1, [(topic, [(0, 0, "")])]))
            code = response.topics[0][1][0][1]
            if allows(principal, Resource.GROUP, g, Op.READ):
                if code != TOPIC_DENIED:
                    problems.append(f"{principal} READ group {g} (commit of {topic}): expected "
                                    f"the group allowed and the topic refused, got "
                                    f"{_error_name(code)}")
            elif code != GROUP_DENIED:
                problems.append(f"{principal} READ group {g}: NOT declared, got "
                                f"{_error_name(code)}")

    await asyncio.gather(*(one(p) for p in PRINCIPALS))
    assert not problems, "\n".join(problems)


async def test_no_principal_reads_or_changes_acls_or_scram_users(stack):
    """The cluster operations only the admin may do: describe, create and delete ACLs,
    describe SCRAM users and create one (on throwaway names: a hole would take no right away
    and lock nobody out)."""
    user, resource = f"identity-test-{RUN}", f"identity-test-{RUN}"
    problems: list[str] = []

    async def one(principal: str) -> None:
        # The broker's own answer to each request (tests/integration/kafka_requests.py says why
        # not through the product's AclAdmin).
        client = AIOKafkaAdminClient(**kafka_options(stack, principal))
        await client.start()
        grab = Acl(f"User:{principal}", Resource.TOPIC, resource, Pattern.PREFIXED, Op.READ)
        salted = hashlib.pbkdf2_hmac("sha512", b"x" * 24, b"s" * 32, 8192)
        try:
            # (Describing every SCRAM user, users=null, makes Kafka 4.3.1 fail building its
            # refusal (a NullPointerException; the connection is closed): name the users.)
            codes = {
                "describe SCRAM users": (await client._send_request(
                    DescribeScram([ADMIN, principal]))).error_code,
                "describe ACLs": (await client._send_request(DescribeAcls())).error_code,
                "create a SCRAM user": (await client._send_request(AlterScram(
                    [], [(user, 2, 8192, b"s" * 32, salted, {})]))).results[0][1],
                "create an ACL": (await client._send_request(
                    CreateAcls([grab]))).creation_responses[0][0],
                "delete ACLs": (await client._send_request(
                    DeleteAcls([acl_tuple(grab)]))).filter_responses[0][0]}
            problems.extend(f"{principal} {what}: answered {_error_name(code)}, not an "
                            f"authorization error" for what, code in codes.items()
                            if code not in DENIED)
        finally:
            await client.close()

    admin = AclAdmin(librdkafka_config(stack))
    before = await admin.acls()
    await asyncio.gather(*(one(p) for p in PRINCIPALS))
    if user in await admin.scram_users([user]):
        problems.append(f"SCRAM user {user} was created by a principal")
        await admin.delete_scram_user(user)
    after = await admin.acls()
    if after != before:
        problems.append(f"the principals changed the ACLs: added {sorted(after - before)}, "
                        f"removed {sorted(before - after)}")
        await admin.delete_acls([binding(a) for a in after - before])
        if before - after:
            await admin.create_acls(sorted(before - after))
    assert not problems, "\n".join(problems)


# ================================================================= Kafka: authentication

async def _refused(host: str, port: int, deadline_s: float = 10.0, **options) -> BaseException:
    """Connects (aiokafka's raw connection) and asks for metadata; returns how that failed.
    A connection that answers metadata fails the test."""
    started = time.monotonic()
    try:
        conn = await asyncio.wait_for(create_conn(host, port, request_timeout_ms=5000,
                                                  **options), deadline_s)
    except (KafkaError, ssl.SSLError, OSError) as e:
        error = e
    else:
        try:
            response = await asyncio.wait_for(conn.send(MetadataRequest(NAMES, False)),
                                              deadline_s)
        except (KafkaError, ssl.SSLError, OSError) as e:
            error = e
        else:
            pytest.fail(f"{options.get('security_protocol')} to {port} with "
                        f"{ {k: v for k, v in options.items() if 'password' not in k} } "
                        f"was answered: {response.topics[:2]}")
        finally:
            conn.close()
    elapsed = time.monotonic() - started
    assert elapsed < deadline_s, f"refusal took {elapsed:.1f} s"
    return error


async def test_kafka_refuses_clients_without_valid_credentials(stack, tmp_path):
    host, port = stack.kafka_bootstrap.rsplit(":", 1)
    port = int(port)
    mtls = stack.kafka_mtls_port
    context = ca_context(stack)
    good = kafka_options(stack, "devices-eu")
    scram = dict(security_protocol="SASL_SSL", ssl_context=context,
                 sasl_plain_username="devices-eu",
                 sasl_plain_password=good["sasl_plain_password"])

    # The same doors open with the right credentials (so a refusal below is the broker's).
    client = AIOKafkaAdminClient(**good)
    await client.start()
    assert set(await client.list_topics()) == {t for t in NAMES if allows(
        "devices-eu", Resource.TOPIC, t, Op.DESCRIBE)}
    await client.close()

    # No credentials: TLS without SASL, and plaintext, on the client listener.
    no_sasl = await _refused(host, port, security_protocol="SSL", ssl_context=context)
    assert isinstance(no_sasl, KafkaConnectionError), repr(no_sasl)
    plain = await _refused(host, port, security_protocol="PLAINTEXT")
    assert isinstance(plain, KafkaConnectionError), repr(plain)
    # A wrong password, an unknown user, another mechanism.
    for what, options in {
            "a wrong password": dict(scram, sasl_mechanism="SCRAM-SHA-512",
                                     sasl_plain_password="not-" + scram["sasl_plain_password"]),
            "an unknown user": dict(scram, sasl_mechanism="SCRAM-SHA-512",
                                    sasl_plain_username=f"nobody-{RUN}"),
            "no password": dict(scram, sasl_mechanism="SCRAM-SHA-512", sasl_plain_password=""),
    }.items():
        error = await _refused(host, port, **options)
        assert isinstance(error, SaslAuthenticationFailed), f"{what}: {error!r}"
    for mechanism in ("PLAIN", "SCRAM-SHA-256"):
        error = await _refused(host, port, **dict(scram, sasl_mechanism=mechanism))
        assert isinstance(error, UnsupportedSaslMechanismError), f"{mechanism}: {error!r}"
    # The high-level client: a wrong password fails fast, as KafkaConnectionError.
    started = time.monotonic()
    client = AIOKafkaAdminClient(**dict(good, sasl_plain_password="wrong"))
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(client.start(), 10)
    await client.close()
    assert time.monotonic() - started < 5

    # The mutual-TLS listener: the admin's certificate opens it; no certificate, or one of
    # another CA (named after the admin) does not.
    admin = AIOKafkaAdminClient(**admin_options(stack))
    await admin.start()
    await admin.close()
    await _refused(host, mtls, security_protocol="SSL", ssl_context=context)
    cert, key = _foreign_certificate(tmp_path, common_name=ADMIN)
    foreign = ssl.create_default_context(cafile=str(stack.ca_path))
    foreign.load_cert_chain(cert, key)
    await _refused(host, mtls, security_protocol="SSL", ssl_context=foreign)
    # The stack's server certificates (gateway, postgres) authenticate servers only: their
    # keys are no principal's credential on the mutual-TLS listener.
    for server in ("gateway", "postgres"):
        theirs = ssl.create_default_context(cafile=str(stack.ca_path))
        theirs.load_cert_chain(stack.pki_dir / f"{server}.crt", stack.pki_dir / f"{server}.key")
        await _refused(host, mtls, security_protocol="SSL", ssl_context=theirs)


def _foreign_certificate(directory: Path, common_name: str) -> tuple[str, str]:
    """A client certificate for ``common_name`` issued by a CA of our own (not the stack's)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the mdmbus CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = directory / "foreign.crt", directory / "foreign.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                          + ca.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def _kcat() -> str:
    path = shutil.which("kcat") or ("/usr/bin/kcat" if Path("/usr/bin/kcat").exists() else None)
    if path is None:
        pytest.fail("kcat is not installed (Debian package kcat; ./run installs it): the test "
                    "of an outside librdkafka client cannot run", pytrace=False)
    return path


def test_kcat_is_refused_without_credentials_and_held_to_its_principals_acls(stack, tmp_path):
    kcat = _kcat()
    bare = subprocess.run([kcat, "-b", stack.kafka_bootstrap, "-L", "-m", "2"],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert bare.returncode != 0 and "Failed to acquire metadata" in bare.stderr, \
        f"kcat without credentials was not refused: {bare.returncode} {bare.stdout}{bare.stderr}"

    config = tmp_path / "devices-eu.conf"
    made = subprocess.run([sys.executable, "-m", "mdmbus", "stack", "client-config",
                           "--principal", "devices-eu", "--auth", "certificate",
                           "--output", str(config)], capture_output=True, text=True,
                          timeout=60, env=os.environ.copy())
    assert made.returncode == 0, made.stderr
    listed = subprocess.run([kcat, "-F", str(config), "-L", "-m", "10"], capture_output=True,
                            text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert listed.returncode == 0, listed.stderr
    shown = {line.split('"')[1] for line in listed.stdout.splitlines()
             if line.strip().startswith("topic \"")}
    assert shown == {t for t in NAMES if allows("devices-eu", Resource.TOPIC, t, Op.DESCRIBE)}, \
        listed.stdout
    consumed = subprocess.run([kcat, "-F", str(config), "-C", "-t", "mdm.eu.upload", "-o",
                               "beginning", "-e", "-m", "10"], capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
    assert consumed.returncode != 0 and "Topic authorization failed" in consumed.stderr, \
        f"devices-eu consumed mdm.eu.upload: {consumed.returncode} {consumed.stderr}"


# ================================================================= PostgreSQL: helpers

class _Undo(Exception):
    """Rolls an attempt's transaction back."""


@dataclass
class Outcome:
    """What a statement did: its status (e.g. "UPDATE 0") and rows, or the server's error."""
    error: asyncpg.PostgresError | None = None
    status: str | None = None
    rows: list | None = None

    @property
    def refused(self) -> bool:
        return isinstance(self.error, asyncpg.InsufficientPrivilegeError)

    def __str__(self) -> str:
        if self.error is not None:
            return f"{type(self.error).__name__}: {self.error}"
        if self.rows is not None:
            return f"ran ({len(self.rows)} rows)"
        return f"ran ({self.status})" if self.status else "ran"


async def attempt(conn: asyncpg.Connection, sql: str, *args, tenant: str | None = None,
                  fetch: bool = False) -> Outcome:
    """Runs ``sql`` (as the gateway's caller ``tenant`` when given) in a transaction that is
    always rolled back."""
    out = Outcome()
    if not (args or tenant is not None or fetch):
        # One round trip (a simple query of three statements); a failed one leaves the
        # transaction aborted, ended by a second.
        try:
            await conn.execute(f"BEGIN; {sql}; ROLLBACK")
        except asyncpg.PostgresError as e:
            out.error = e
            await conn.execute("ROLLBACK")
        return out
    try:
        async with conn.transaction():
            if tenant is not None:
                await conn.execute("SELECT set_config('mdmbus.tenant', $1, true)", tenant)
            if fetch:
                out.rows = await conn.fetch(sql, *args)
            else:
                out.status = await conn.execute(sql, *args)
            raise _Undo
    except _Undo:
        pass
    except asyncpg.PostgresError as e:
        out.error = e
    return out


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_LIMIT = asyncio.Semaphore(16)


async def _connect_as(stack, role: str, database: str) -> asyncpg.Connection:
    """A connection as ``role`` to ``database`` (any database of the server, ``postgres`` and
    the templates included)."""
    home = next(r.databases[0] for r in ROLES if r.name == role)
    async with _LIMIT:
        return await pg_connect(stack, home, role, connect_to=database, timeout=10)


# ================================================================= PostgreSQL: read-back

async def test_postgres_holds_exactly_the_declared_rights(stack):
    problems: list[str] = []
    names = [r.name for r in ROLES]
    for database in all_databases():
        conn = await pg_connect(stack, database)
        try:
            declared = {g for g in pg_grants() if g.database == database}
            held = await read_grants(conn, database)
            problems += [f"{database}: {g} held, not declared" for g in sorted(held - declared)]
            problems += [f"{database}: {g} declared, not held" for g in sorted(declared - held)]
            problems += [f"{database}: PUBLIC holds {g}" for g in held if g.role == "PUBLIC"]
            declared_seq = {g for g in pg_sequences() if g.database == database}
            held_seq = await read_sequence_grants(conn, database)
            problems += [f"{database}: sequence {g} held, not declared"
                         for g in sorted(held_seq - declared_seq)]
            problems += [f"{database}: sequence {g} declared, not held"
                         for g in sorted(declared_seq - held_seq)]
            problems += _policy_problems(database, await read_policies(conn))
            # Grants are read apart from the owner's rights: the database and every object in
            # it belong to its owner role, which cannot log in (an owning service role would
            # hold every right, unseen; so would a login owner).
            owner = owner_of(database)
            owners = await conn.fetch(
                "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                " AND pg_get_userbyid(c.relowner) <> $1", owner)
            problems += [f"{database}: {r['relname']} is owned by {r['owner']}, not {owner}"
                         for r in owners]
            if await conn.fetchval("SELECT pg_get_userbyid(datdba) FROM pg_database"
                                   " WHERE datname = $1", database) != owner:
                problems.append(f"{database} is not owned by {owner}")
            attributes = (await read_roles(conn, [owner])).get(owner, {})
            if not attributes or any(attributes[a] for a in (
                    "rolcanlogin", "rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication",
                    "rolbypassrls")):
                problems.append(f"the owner role {owner} may log in or holds an attribute: "
                                f"{attributes}")
            assert owner not in names
            schema = await conn.fetch(
                "SELECT coalesce(r.rolname, 'PUBLIC') AS grantee, a.privilege_type"
                " FROM pg_namespace n,"
                " aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a"
                " LEFT JOIN pg_roles r ON r.oid = a.grantee"
                " WHERE n.nspname = 'public' AND a.privilege_type = 'CREATE'"
                " AND a.grantee <> n.nspowner")
            problems += [f"{database}: {r['grantee']} may CREATE in schema public" for r in schema]
        finally:
            await conn.close()

    conn = await pg_connect(stack, DIRECTORY_DATABASE, connect_to=MAINTENANCE)
    try:
        held = await read_connect(conn)
        want: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        for database, role, privilege in pg_database_privileges():
            want[database][role].add(privilege)
        for database in [*all_databases(), MAINTENANCE]:
            have = {g: set(p) for g, p in held.get(database, {}).items()}
            expected = {g: set(p) for g, p in want.get(database, {}).items()}
            if have != expected:
                problems.append(f"{database}: database privileges {have}, declared {expected}")
            if have.get("PUBLIC"):
                problems.append(f"{database}: PUBLIC holds {sorted(have['PUBLIC'])}")
        attributes = await read_roles(conn, names)
        for role in names:
            a = attributes.get(role)
            if a is None:
                problems.append(f"role {role} does not exist")
                continue
            wrong = {k: v for k, v in a.items()
                     if k in ("rolsuper", "rolcreatedb", "rolcreaterole", "rolreplication",
                              "rolbypassrls", "rolinherit") and v}
            if not a["rolcanlogin"] or wrong:
                problems.append(f"role {role}: login={a['rolcanlogin']}, also {wrong}")
        members = await conn.fetch(
            "SELECT m.rolname AS member, g.rolname AS granted FROM pg_auth_members a"
            " JOIN pg_roles m ON m.oid = a.member JOIN pg_roles g ON g.oid = a.roleid"
            " WHERE m.rolname = ANY($1::text[]) OR g.rolname = ANY($1::text[])", names)
        problems += [f"{r['member']} is a member of {r['granted']}" for r in members]
    finally:
        await conn.close()
    assert not problems, "\n".join(problems)


async def test_postgres_holds_exactly_the_rights_of_the_hand_written_table(stack):
    """Every table privilege held by a login role, read back, against rights_table.py."""
    held: dict[tuple[str, str, str, str], tuple[str, ...] | None] = {}
    for database in all_databases():
        conn = await pg_connect(stack, database)
        try:
            for g in await read_grants(conn, database):
                held[(g.database, g.table, g.role, g.privilege)] = tuple(g.columns) or None
            sequence = {(g.database, g.role) for g in await read_sequence_grants(conn, database)}
        finally:
            await conn.close()
        want = {(d, r) for d, r in SEQUENCE_USERS if d == database}
        assert sequence == want, f"{database}: sequence users {sequence}, table says {want}"
    problems = [f"held, not in the table: {k} {v}" for k, v in sorted(held.items())
                if PG.get(k, "absent") != v]
    problems += [f"in the table, not held: {k} {v}" for k, v in sorted(PG.items())
                 if held.get(k, "absent") != v]
    assert not problems, "\n".join(problems)


def _policy_problems(database: str, held: dict[str, dict]) -> list[str]:
    declared = defaultdict(dict)
    for p in pg_policies():
        if p.database == database:
            declared[p.table][policy_name(p)] = ((p.role,), p.command, "PERMISSIVE")
    problems = []
    for table in TABLES[database_kind(database)]:
        state = held.get(table)
        if state is None:
            problems.append(f"{database}: table {table} is missing")
            continue
        if declared[table]:
            if not (state["enabled"] and state["forced"]):
                problems.append(f"{database}.{table}: row-level security enabled="
                                f"{state['enabled']} forced={state['forced']}")
            if state["policies"] != declared[table]:
                problems.append(f"{database}.{table}: policies {state['policies']}, declared "
                                f"{declared[table]}")
        elif state["policies"]:
            problems.append(f"{database}.{table}: undeclared policies {state['policies']}")
    for table, state in held.items():
        if table not in TABLES[database_kind(database)] and state["policies"]:
            problems.append(f"{database}.{table}: undeclared table with policies")
    return problems


# ================================================================= PostgreSQL: every pair

async def test_each_role_connects_to_its_databases_only(stack):
    """CONNECT: every role to every mdmbus database and to the maintenance database."""
    problems: list[str] = []

    async def one(role: str, database: str, allowed: bool) -> None:
        try:
            conn = await _connect_as(stack, role, database)
        except asyncpg.InsufficientPrivilegeError:
            if allowed:
                problems.append(f"{role} cannot CONNECT to {database} although declared")
            return
        try:
            assert await conn.fetchval("SELECT current_user") == role
        finally:
            await conn.close()
        if not allowed:
            problems.append(f"{role} CONNECTs to {database}: not declared")

    await asyncio.gather(*(one(r.name, db, db in r.databases) for r in ROLES
                           for db in [*all_databases(), MAINTENANCE]))
    assert not problems, "\n".join(problems)


async def test_no_role_connects_to_a_template_database(stack):
    """template1 accepts connections; PUBLIC's default CONNECT there would let every service
    role in (read_connect and sync skip the templates)."""
    problems = []
    for role in ROLES:
        try:
            conn = await _connect_as(stack, role.name, "template1")
        except asyncpg.InsufficientPrivilegeError:
            continue
        await conn.close()
        problems.append(f"{role.name} CONNECTs to template1")
    assert not problems, "\n".join(problems) + (
        "\n(PUBLIC holds CONNECT on template1: REVOKE CONNECT ON DATABASE template1 FROM PUBLIC)")


async def _columns(stack, database: str) -> dict[str, list[tuple[str, bool]]]:
    """table -> [(column, generated)] of the public schema."""
    conn = await pg_connect(stack, database)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, a.attname, a.attgenerated <> '' AS generated FROM pg_attribute a"
            " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0"
            " AND NOT a.attisdropped ORDER BY c.relname, a.attnum")
    finally:
        await conn.close()
    out: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for r in rows:
        out[r["relname"]].append((r["attname"], r["generated"]))
    return out


def _declared(role: str, database: str, table: str, privilege: str, column: str | None) -> bool:
    """Whether the hand-written table (rights_table.py) gives the pair (a grant without
    columns covers them all)."""
    return pg_may(role, database, table, privilege, column)


def _probes(table: str, columns: list[tuple[str, bool]]) -> list[tuple[str, str | None, str]]:
    """(privilege, column, statement) touching no row: each needs exactly that privilege."""
    t = _ident(table)
    out: list[tuple[str, str | None, str]] = []
    for column, generated in columns:
        c = _ident(column)
        out.append(("SELECT", column, f"SELECT {c} FROM {t} WHERE false"))
        if not generated:
            out.append(("INSERT", column, f"INSERT INTO {t} ({c}) SELECT NULL WHERE false"))
        out.append(("UPDATE", column, f"UPDATE {t} SET {c} = DEFAULT WHERE false"))
    out.append(("DELETE", None, f"DELETE FROM {t} WHERE false"))
    out.append(("TRUNCATE", None, f"TRUNCATE {t}"))
    return out


async def test_every_undeclared_table_and_column_privilege_is_refused(stack):
    """For every role, every database it may connect to, every table and column: SELECT,
    INSERT and UPDATE of each column, DELETE and TRUNCATE of each table, by statements that
    touch no row (in a transaction rolled back). A declared pair must run, any other be
    refused; and the sequence is used by the declared roles only."""
    columns = {db: await _columns(stack, db) for db in all_databases()}
    problems: list[str] = []
    tried = 0

    async def one(role: str, database: str) -> None:
        nonlocal tried
        conn = await _connect_as(stack, role, database)
        try:
            for table in TABLES[database_kind(database)]:
                assert table in columns[database], f"{database} has no table {table}"
                for privilege, column, sql in _probes(table, columns[database][table]):
                    allowed = _declared(role, database, table, privilege, column)
                    out = await attempt(conn, sql)
                    tried += 1
                    what = f"{role} {privilege} {database}.{table}" + (
                        f".{column}" if column else "")
                    if allowed and out.error is not None:
                        problems.append(f"{what}: declared, but {out}")
                    elif not allowed and not out.refused:
                        problems.append(f"{what}: NOT declared, but {out}")
            if database_kind(database) == "region":
                allowed = (database, role) in SEQUENCE_USERS
                out = await attempt(conn, "SELECT nextval('deletion_audit_id_seq')")
                if (allowed and out.error is not None) or (not allowed and not out.refused):
                    problems.append(f"{role} USAGE deletion_audit_id_seq on {database}: "
                                    f"declared={allowed}, {out}")
        finally:
            await conn.close()

    await asyncio.gather(*(one(r.name, db) for r in ROLES for db in r.databases))
    assert tried > 1000
    assert not problems, f"{len(problems)} of {tried} pairs wrong:\n" + "\n".join(problems)


async def _available_extension(stack) -> str:
    conn = await pg_connect(stack, CM_DATABASE)
    try:
        name = await conn.fetchval(
            "SELECT name FROM pg_available_extensions WHERE installed_version IS NULL"
            " AND name = ANY($1::text[]) ORDER BY name LIMIT 1",
            ["pgcrypto", "hstore", "citext", "pg_trgm", "uuid-ossp"])
    finally:
        await conn.close()
    assert name, ("no trusted contrib extension (pgcrypto, hstore, ...) is available to try "
                  "CREATE EXTENSION with: install PostgreSQL's contrib modules")
    return name


_MAIN_TABLE = {"region": "records", "directory": "tenant_directory", "cm": "relayed_records"}


async def test_nobody_but_the_superuser_changes_the_schema_or_escapes_its_role(stack):
    """Statements only the superuser (or a table's owner) may run, tried by every role on
    every database it connects to, each in a transaction rolled back."""
    extension = await _available_extension(stack)
    names = [r.name for r in ROLES]
    problems: list[str] = []

    async def one(role: str, database: str) -> None:
        t = _MAIN_TABLE[database_kind(database)]
        grantee = next(o for o in names if o != role)
        policy = next((policy_name(p) for p in pg_policies()
                       if p.database == database and p.table == t), None)
        statements = [
            f"CREATE TABLE identity_test_{RUN} (x int)",
            f"CREATE SCHEMA identity_test_{RUN}",
            f"CREATE FUNCTION identity_test_{RUN}() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            f"CREATE VIEW identity_test_{RUN} AS SELECT 1 AS x",
            f"TRUNCATE {t}",
            f"DROP TABLE {t}",
            f"ALTER TABLE {t} ADD COLUMN identity_test int",
            f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY",
            f"CREATE POLICY identity_test ON {t} FOR ALL TO {_ident(role)} USING (true)",
            f"CREATE INDEX ON {t} ((1))",
            f"COPY {t} FROM PROGRAM 'true'",
            f"COPY {t} TO PROGRAM 'cat > /dev/null'",
            f"COPY {t} FROM '/etc/hostname'",
            "SELECT pg_read_file('/etc/hostname')",
            "SELECT pg_ls_dir('.')",
            "SELECT lo_import('/etc/hostname')",
            f"CREATE EXTENSION {_ident(extension)}",
            "SET ROLE postgres",
            f"SET ROLE {_ident(grantee)}",
            "SET SESSION AUTHORIZATION postgres",
            f"ALTER ROLE {_ident(role)} BYPASSRLS",
            f"ALTER ROLE {_ident(role)} SUPERUSER",
            f"ALTER ROLE {_ident(grantee)} PASSWORD 'identity-test'",
            f"CREATE ROLE identity_test_{RUN}",
            f"GRANT {_ident(grantee)} TO {_ident(role)}",
            "SET session_replication_role = replica",
        ]
        if policy:
            statements.append(f"DROP POLICY {_ident(policy)} ON {t}")
        if (database, role, "TEMPORARY") not in pg_database_privileges():
            statements.append(f"CREATE TEMP TABLE identity_test_{RUN} (x int)")
        conn = await _connect_as(stack, role, database)
        try:
            for sql in statements:
                out = await attempt(conn, sql)
                if not out.refused:
                    problems.append(f"{role} on {database}: {sql!r} {out}")
            # GRANT without the grant option is a warning ("no privileges were granted"),
            # not an error: what counts is that the table's rights are unchanged.
            acl = ("SELECT relacl::text FROM pg_class WHERE relname = $1"
                   " AND relnamespace = 'public'::regnamespace")
            before = await conn.fetchval(acl, t)
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
                sql = f"GRANT {privilege} ON {t} TO {_ident(grantee)}"
                try:
                    async with conn.transaction():
                        await conn.execute(sql)
                        raise _Undo(await conn.fetchval(acl, t))
                except _Undo as undone:
                    if undone.args[0] != before:
                        problems.append(f"{role} on {database}: {sql!r} changed the table's "
                                        f"rights from {before} to {undone.args[0]}")
                except asyncpg.InsufficientPrivilegeError:
                    pass
                except asyncpg.PostgresError as e:
                    problems.append(f"{role} on {database}: {sql!r} failed otherwise: {e!r}")
        finally:
            await conn.close()
        # Outside a transaction block (they refuse to run inside one).
        conn = await _connect_as(stack, role, database)
        try:
            for sql in (f"CREATE DATABASE identity_test_{RUN}", "ALTER SYSTEM RESET geqo_seed"):
                try:
                    await conn.execute(sql)
                except asyncpg.InsufficientPrivilegeError:
                    continue
                except asyncpg.PostgresError as e:
                    problems.append(f"{role} on {database}: {sql!r} failed otherwise: {e!r}")
                else:
                    problems.append(f"{role} on {database}: {sql!r} RAN")
        finally:
            await conn.close()

    try:
        await asyncio.gather(*(one(r.name, db) for r in ROLES for db in r.databases))
    finally:
        conn = await pg_connect(stack, CM_DATABASE, connect_to=MAINTENANCE)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS identity_test_{RUN}")
        finally:
            await conn.close()
    assert not problems, "\n".join(problems)


# ================================================================= PostgreSQL: rows

async def test_the_sweeper_never_reads_a_body(stack):
    problems = []
    for region in REGIONS:
        db, sweeper = region_database(region), role_of("sweeper", region)
        conn = await _connect_as(stack, sweeper, db)
        try:
            for sql in ("SELECT body FROM records", "SELECT * FROM records",
                        "SELECT record_id FROM records WHERE body IS NULL",
                        "DELETE FROM records WHERE false RETURNING body",
                        "SELECT body FROM dead_letters", "SELECT * FROM dead_letters",
                        "SELECT error FROM dead_letters", "SELECT error_sealed FROM dead_letters"):
                out = await attempt(conn, sql, fetch=True)
                if not out.refused:
                    problems.append(f"{sweeper}: {sql!r} {out}")
            for sql in ("SELECT record_id, has_body FROM records LIMIT 1",
                        "SELECT record_id, tenant_id, deadline FROM records"
                        " WHERE has_body AND deadline < now() LIMIT 1",
                        "SELECT source_offset, body_kept FROM dead_letters LIMIT 1"):
                out = await attempt(conn, sql, fetch=True)
                if out.error is not None:
                    problems.append(f"{sweeper}: {sql!r} {out}")
        finally:
            await conn.close()
    assert not problems, "\n".join(problems)


async def test_the_gateway_sees_and_changes_its_callers_tenant_only(stack):
    """Two tenants' records in each region's store: the gateway, as tenant A's caller, sees
    A's only and changes none; with no caller set it sees nothing; it cannot write a receipt
    or an audit row of B, nor switch row-level security off."""
    problems: list[str] = []

    async def one(region: str) -> None:
        db, gateway = region_database(region), role_of("gateway", region)
        a, b = uuid.uuid4(), uuid.uuid4()
        record_a, record_b = uuid.uuid4(), uuid.uuid4()
        su = await pg_connect(stack, db)
        conn = None
        try:
            await su.executemany(
                "INSERT INTO records (record_id, tenant_id, kind, category, event_time,"
                " stored_at, body) VALUES ($1, $2, 'U1', 'upload', now(), now(), $3)",
                [(record_a, a, JUNK), (record_b, b, JUNK)])
            await su.execute(
                "INSERT INTO erasure_receipts (receipt_id, tenant_id, requested_at)"
                " VALUES ($1, $2, now())", uuid.uuid4(), b)
            conn = await _connect_as(stack, gateway, db)
            checks = {
                "selects every record": attempt(conn, "SELECT record_id, tenant_id FROM records",
                                              tenant=str(a), fetch=True),
                "updates B-s record": attempt(conn, "UPDATE records SET deadline_rule = 'x'"
                                              " WHERE record_id = $1", record_b, tenant=str(a)),
                "updates A-s record": attempt(conn, "UPDATE records SET body = NULL"
                                              " WHERE record_id = $1", record_a, tenant=str(a)),
                "selects B-s receipt": attempt(conn, "SELECT * FROM erasure_receipts"
                                            " WHERE tenant_id = $1", b, tenant=str(a),
                                            fetch=True),
                "writes a receipt of B": attempt(
                    conn, "INSERT INTO erasure_receipts (receipt_id, tenant_id, requested_at)"
                          " VALUES (gen_random_uuid(), $1, now())", b, tenant=str(a)),
                "writes an audit row of B": attempt(
                    conn, "INSERT INTO deletion_audit (deleted_at, rule, region, category,"
                          " tenant_id, row_count, record_ids) VALUES (now(), 'identity-test',"
                          " 'x', 'x', $1, 0, '{}')", b, tenant=str(a)),
                "sees rows without a tenant": attempt(conn, "SELECT tenant_id FROM records",
                                                      fetch=True),
                "sees rows with an empty tenant": attempt(conn, "SELECT tenant_id FROM records",
                                                          tenant="", fetch=True),
                "switches row security off": attempt(
                    conn, "SET LOCAL row_security = off; SELECT count(*) FROM records"),
            }
            got = {}
            for what, pending in checks.items():  # one connection: one statement at a time
                got[what] = await pending
            rows = got["selects every record"].rows or []
            if {r["tenant_id"] for r in rows} != {a} or record_a not in \
                    {r["record_id"] for r in rows}:
                problems.append(f"{gateway} as A's caller sees {len(rows)} records of "
                                f"{ {r['tenant_id'] for r in rows} }: "
                                f"{got['selects every record']}")
            # The gateway changes no record column, not even its caller's (an acknowledgement
            # is the store's function: tests/integration/test_pg_privileges.py).
            for what in ("updates B-s record", "updates A-s record"):
                if not got[what].refused:
                    problems.append(f"{gateway} as A's caller {what}: {got[what]}")
            if got["selects B-s receipt"].rows != []:
                problems.append(f"{gateway} as A's caller sees B's receipt: "
                                f"{got['selects B-s receipt']}")
            for what in ("writes a receipt of B", "writes an audit row of B",
                         "switches row security off"):
                if not got[what].refused:
                    problems.append(f"{gateway} as A's caller {what}: {got[what]}")
            for what in ("sees rows without a tenant", "sees rows with an empty tenant"):
                if got[what].rows != []:
                    problems.append(f"{gateway} {what}: {got[what]}")
        finally:
            if conn is not None:
                await conn.close()
            try:
                await su.execute("DELETE FROM records WHERE tenant_id = ANY($1::uuid[])", [a, b])
                await su.execute("DELETE FROM erasure_receipts WHERE tenant_id = ANY($1::uuid[])",
                                 [a, b])
            finally:
                await su.close()

    await asyncio.gather(*(one(r) for r in REGIONS))
    assert not problems, "\n".join(problems)


async def test_directory_rows_are_written_by_their_regions_services_only(stack):
    """Each region's pipeline and sweeper write only their region's rows of the global
    directory (the policies' USING and WITH CHECK); the pipeline reads every row."""
    tenants = {r: uuid.uuid4() for r in REGIONS}
    ids = list(tenants.values())
    su = await pg_connect(stack, DIRECTORY_DATABASE)
    problems: list[str] = []

    async def one(region: str) -> None:
        own = tenants[region]
        pipeline = await _connect_as(stack, role_of("pipeline", region), DIRECTORY_DATABASE)
        sweeper = await _connect_as(stack, role_of("sweeper", region), DIRECTORY_DATABASE)
        try:
            seen = await pipeline.fetchval("SELECT count(*) FROM tenant_directory"
                                           " WHERE tenant_id = ANY($1::uuid[])", ids)
            if seen != len(REGIONS):
                problems.append(f"pipeline-{region} sees {seen} of the {len(REGIONS)} "
                                f"directory rows of the test")
            for other, tenant in tenants.items():
                expected = "UPDATE 1" if other == region else "UPDATE 0"
                for who, conn, sql in (
                        ("pipeline", pipeline, "UPDATE tenant_directory SET state = 'retention'"
                                               " WHERE tenant_id = $1"),
                        ("sweeper", sweeper, "UPDATE tenant_directory SET state = 'purged',"
                                             " purged_at = now() WHERE tenant_id = $1")):
                    out = await attempt(conn, sql, tenant)
                    if out.status != expected:
                        problems.append(f"{who}-{region} updating {other}'s directory row: "
                                        f"{out}, expected {expected}")
                out = await attempt(pipeline, "INSERT INTO tenant_directory (tenant_id, region,"
                                    " country, onboarded_at) VALUES ($1, $2, 'XX', now())",
                                    uuid.uuid4(), other)
                if other == region and out.error is not None:
                    problems.append(f"pipeline-{region} cannot onboard a {region} tenant: {out}")
                if other != region and not out.refused:
                    problems.append(f"pipeline-{region} onboarded a tenant of {other}: {out}")
                if other != region:
                    for who, conn in (("pipeline", pipeline), ("sweeper", sweeper)):
                        out = await attempt(conn, "UPDATE tenant_directory SET region = $2"
                                            " WHERE tenant_id = $1", own, other)
                        if not out.refused:
                            problems.append(f"{who}-{region} moved its tenant to {other}: "
                                            f"{out}")
        finally:
            await pipeline.close()
            await sweeper.close()

    try:
        await su.executemany(
            "INSERT INTO tenant_directory (tenant_id, region, country, onboarded_at)"
            " VALUES ($1, $2, 'XX', now())", [(t, r) for r, t in tenants.items()])
        await asyncio.gather(*(one(r) for r in REGIONS))
        rows = await su.fetch("SELECT tenant_id, region, state FROM tenant_directory"
                              " WHERE tenant_id = ANY($1::uuid[])", ids)
        changed = [dict(r) for r in rows
                   if r["state"] != "active" or tenants[r["region"]] != r["tenant_id"]]
        problems += [f"directory row changed by the attempts: {c}" for c in changed]
    finally:
        await su.execute("DELETE FROM tenant_directory WHERE tenant_id = ANY($1::uuid[])", ids)
        await su.close()
    assert not problems, "\n".join(problems)


# ================================================================= PostgreSQL: authentication

async def test_postgres_refuses_no_password_a_wrong_one_and_no_tls(stack, tmp_path):
    host, port = stack.pg_server(region_database("eu"))
    nopass = str(tmp_path / "no-pgpass")
    role = role_of("reader", "eu")
    password = stack.password("pg", role)
    superuser = stack.pg_password or stack.password("pg", stack.pg_user)
    tls = ca_context(stack)

    async def connect(user, secret, ssl_):
        return await asyncpg.connect(host=host, port=port, user=user, password=secret,
                                     database=region_database("eu"), ssl=ssl_,
                                     passfile=nopass, timeout=10)

    conn = await connect(role, password, tls)  # the control: this door opens
    await conn.close()
    for what, user, secret, ssl_, error in (
            ("no password", role, None, tls, asyncpg.InvalidPasswordError),
            ("an empty password", role, "", tls, asyncpg.InvalidPasswordError),
            ("a wrong password", role, "not-" + password, tls, asyncpg.InvalidPasswordError),
            ("the superuser, a wrong password", stack.pg_user, "not-" + superuser, tls,
             asyncpg.InvalidPasswordError),
            ("no TLS, right password", role, password, False,
             asyncpg.InvalidAuthorizationSpecificationError),
            ("the superuser, no TLS", stack.pg_user, superuser, False,
             asyncpg.InvalidAuthorizationSpecificationError)):
        started = time.monotonic()
        with pytest.raises(error) as refused:
            conn = await connect(user, secret, ssl_)
            await conn.close()
        assert time.monotonic() - started < 5, what
        if ssl_ is False:
            assert "no encryption" in str(refused.value), f"{what}: {refused.value}"


def _psql() -> str:
    from mdmbus.stack.postgres import bin_dir
    path = shutil.which("psql")
    if path is None:
        try:
            candidate = bin_dir() / "psql"
        except Exception:  # noqa: BLE001 - reported below
            candidate = None
        path = str(candidate) if candidate and candidate.exists() else None
    if path is None:
        pytest.fail("psql is not installed (postgresql-client-15)", pytrace=False)
    return path


def test_psql_without_a_password_is_refused(stack, tmp_path):
    from mdmbus.stack.postgres import pg_paths
    psql = _psql()
    host, port = stack.pg_server(region_database("eu"))
    role = role_of("reader", "eu")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGPASSFILE=str(tmp_path / "no-pgpass"), PGCONNECT_TIMEOUT="5")

    def run(conninfo: str, **extra) -> subprocess.CompletedProcess[str]:
        return subprocess.run([psql, "-w", "-X", "-At", "-c", "SELECT current_user", conninfo],
                              capture_output=True, text=True, timeout=30,
                              env={**env, **extra}, stdin=subprocess.DEVNULL)

    tcp = (f"host={host} port={port} dbname={region_database('eu')} user={role} "
           f"sslmode=verify-full sslrootcert={stack.ca_path}")
    ok = run(tcp, PGPASSWORD=stack.password("pg", role))
    assert ok.returncode == 0 and ok.stdout.strip() == role, ok.stderr  # the control
    refused = run(tcp)
    assert refused.returncode != 0 and "no password supplied" in refused.stderr, \
        f"psql without a password: {refused.returncode} {refused.stdout} {refused.stderr}"
    superuser = run(tcp.replace(f"user={role}", f"user={stack.pg_user}"))
    assert superuser.returncode != 0 and "no password supplied" in superuser.stderr, \
        superuser.stderr
    # The Unix socket asks for a password too (no peer or trust authentication).
    socket = pg_paths(stack).root
    if (socket / f".s.PGSQL.{port}").exists():
        local = run(f"host={socket} port={port} dbname={region_database('eu')} "
                    f"user={stack.pg_user}")
        assert local.returncode != 0 and "no password supplied" in local.stderr, local.stderr
    # Without TLS, even the right password is refused.
    plain = run(tcp.replace("sslmode=verify-full", "sslmode=disable"),
                PGPASSWORD=stack.password("pg", role))
    assert plain.returncode != 0 and "no encryption" in plain.stderr, plain.stderr


async def test_a_pooled_gateway_connection_forgets_its_tenant_when_released(stack):
    """The gateway names its caller's tenant for the connection's session
    (services/gateway/app.py, Gateway.as_tenant) and relies on the pool to undo it: a
    connection taken again from the pool sees no tenant, so no row."""
    from mdmbus.connections import pg_pool
    pool = await pg_pool(stack, region_database("eu"), role_of("gateway", "eu"), min_size=1,
                         max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SELECT set_config('mdmbus.tenant', $1, false)",
                               str(uuid.uuid4()))
            first = conn.get_server_pid()
            assert await conn.fetchval("SELECT current_setting('mdmbus.tenant', true)")
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == first, "not the same connection"
            assert not await conn.fetchval("SELECT current_setting('mdmbus.tenant', true)")
            assert await conn.fetchval("SELECT count(*) FROM records") == 0
    finally:
        await pool.close()
