"""Minimisation end to end: every shape of message holding a private key (tests/keyshapes.py),
with every key form (tests/keyforms.py), sent by the device side's own principal on every topic
it can write and uploaded through the gateway, leaves no key material anywhere: not in the
region stores (dead letters, records, any table), not on the dead-letter topic, not in any
process log, not in what `mdmbus deadletters show` prints.

The oracle is independent of the scanner under test: fragments of the planted secrets (private
exponent, scalar, seed, and the middle of every container's DER, raw, hex and base64 at every
alignment) and the PEM armour, searched for byte for byte, also with line breaks removed.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import subprocess
import sys
import uuid

import aiohttp
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from mdmbus.connections import kafka_options, pg_connect
from mdmbus.contract import default_registry, to_json
from mdmbus.identities import principal_of
from mdmbus.regions import DIRECTORY_DATABASE, REGIONS, region_database
from mdmbus.tls import client_ssl_context
from mdmbus.topics import TopicKind, topic_name
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher
from tests.keyforms import key_forms, leaked, normalised, text_key_forms
from tests.keyshapes import SHAPE_NAMES, shapes

# Integration: it needs the embedded stack; key_shapes: `./run tests -m key_shapes` runs it alone.
pytestmark = [pytest.mark.integration, pytest.mark.key_shapes]

REGION = "eu"
#: Every topic the device side may write (mdmbus/identities.py gives devices-<r> WRITE on these
#: three; tests/integration/test_identities.py holds the servers to that), with a kind it carries.
DEVICE_TOPICS = {TopicKind.RELAY: "R3", TopicKind.DEVICE_SESSIONS: "device_session",
                 TopicKind.DEVICE_COMMANDS: "device_command_result"}
CLOUD = [*(region_database(r) for r in REGIONS), DIRECTORY_DATABASE]
AVRO_BATCH = "application/vnd.mdmbus.avro-batch"
NDJSON = "application/x-ndjson"
ARMOUR = [b"PRIVATE KEY-----", *(base64.b64encode(b"\0" * s + b"PRIVATE KEY-----")[2 + s:-4]
                                  for s in range(3))]


def _found(haystack: bytes) -> list[bytes]:
    hits = leaked(haystack)
    forms = normalised(haystack)
    return hits + [a for a in ARMOUR if any(a in h for h in forms)]


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    procs = launcher(stack, tmp_path_factory.mktemp("keys"), speed=1.0)
    for name in ("pipeline", "gateway"):
        procs.start(name, "all")
    yield procs
    procs.stop()


@pytest.fixture
async def work(stack, system):
    async with Workload(stack, system.clock, seed=uuid.uuid4().int,
                        tokens_dir=system.log_dir / "tokens") as w:
        yield w
    system.assert_alive()


async def _plant_on_topics(work: Workload, tenant: str) -> list[tuple[str, int, int, str]]:
    """Sends every shape of every form on every device topic; returns (topic, partition,
    offset, shape) of each message."""
    producer = AIOKafkaProducer(**kafka_options(work.settings, principal_of("devices", REGION)),
                                acks="all", max_request_size=2 * 1024 * 1024)
    await producer.start()
    sent = []
    try:
        for topic_kind, kind in DEVICE_TOPICS.items():
            topic = topic_name(topic_kind, REGION)
            forms = key_forms()
            for form in forms:
                record = work.make(kind, tenant)
                for shape in shapes(kind, record, form):
                    # Oversized messages of every form on the relay topic; of one form per
                    # container elsewhere (the rule does not depend on the topic; this keeps
                    # the test's traffic reasonable).
                    if shape.name == "oversized" and topic_kind != TopicKind.RELAY and \
                            not form.name.endswith("/base64-lines"):
                        continue
                    meta = await producer.send_and_wait(topic, shape.value, key=shape.key)
                    sent.append((meta.topic, meta.partition, meta.offset, shape.name))
    finally:
        await producer.stop()
    return sent


async def _upload_through_gateway(work: Workload, tenant: str) -> list[dict]:
    """Uploads every shape of every form in U12 records (Avro batches, one shape a request)
    and every text form in a JSON line; returns every item's verdict."""
    token = work.token(tenant, "connector")
    url = work.settings.gateway_url(REGION) + "/v1/records"
    verdicts = []
    # One TLS context for every upload, as a client holds it: aiohttp pools connections per
    # context, so a context per request would be a new connection (and handshake) each time.
    tls = client_ssl_context(work.settings.ca_path)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async def post(body: bytes, content_type: str) -> None:
            answer, status = await send(body, content_type)
            assert status in (207, 413, 400), (status, answer)
            verdicts.extend(answer.get("refused", [answer]))
            assert not answer.get("accepted"), answer

        async def send(body: bytes, content_type: str) -> tuple[dict, int]:
            async with http.post(url, data=body, headers={"Content-Type": content_type},
                                 ssl=tls) as resp:
                return await resp.json(), resp.status
        for form in key_forms():
            for shape in shapes("U12", work.make("U12", tenant), form):
                await post(struct.pack(">I", len(shape.value)) + shape.value, AVRO_BATCH)
        registry = default_registry()
        lines = []
        for form in text_key_forms():
            record = work.make("U12", tenant)
            record["build_version"] = form.data.decode("ascii")
            lines.append(f'{{"kind": "U12", "record": '
                         f'{_json(to_json(registry.spec("U12").expanded, record))}}}'.encode())
        await post(b"\n".join(lines), NDJSON)
    return verdicts


def _json(value) -> str:
    import json
    return json.dumps(value)


async def _rows_with_keys(settings) -> list[str]:
    hits = []
    for database in CLOUD:
        conn = await pg_connect(settings, database)
        try:
            tables = [r["t"] for r in await conn.fetch(
                "SELECT quote_ident(table_name) AS t FROM information_schema.tables"
                " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")]
            for table in tables:
                for row in await conn.fetch(f"SELECT * FROM {table}"):
                    for column, value in row.items():
                        if value is None:
                            continue
                        data = bytes(value) if isinstance(value, (bytes, memoryview)) \
                            else str(value).encode()
                        if _found(data):
                            hits.append(f"{database}.{table}.{column}")
        finally:
            await conn.close()
    return hits


_SHOW_ALL = """
import sys
from mdmbus.cli.deadletters import show_dead_letter
from mdmbus.settings import Settings
settings = Settings.from_env()
for source in sys.stdin.read().split():
    assert show_dead_letter(settings, sys.argv[1], source) == 0
"""


async def test_no_shape_of_a_private_key_is_kept_anywhere(work, system, stack):
    tenant = await work.onboarded(REGION)
    sent = await _plant_on_topics(work, tenant)
    assert {s[3] for s in sent} == set(SHAPE_NAMES)
    verdicts = await _upload_through_gateway(work, tenant)
    assert len(verdicts) >= len(key_forms()) and all(v.get("reason") for v in verdicts)

    pool = work.region_pool(REGION)

    async def all_letters() -> list[asyncpg.Record] | None:
        rows = await pool.fetch(
            "SELECT source_topic, source_partition, source_offset, reason, body_basis,"
            " message_bytes, message_sha256, body_kept FROM dead_letters"
            " WHERE (source_topic, source_partition, source_offset) IN"
            " (SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[]))",
            [s[0] for s in sent], [s[1] for s in sent], [s[2] for s in sent])
        return rows if len(rows) == len(sent) else None
    letters = await wait_for(all_letters, 300, f"{len(sent)} dead letters stored")
    # Nothing a key was planted in is kept as it came: withheld, or redacted value by value.
    assert {r["body_basis"] for r in letters} <= {"withheld", "redacted"}, \
        {r["body_basis"] for r in letters}
    assert all(r["message_bytes"] > 0 and len(r["message_sha256"]) == 64 for r in letters)

    where = await _rows_with_keys(stack)
    assert not where, f"key material in {sorted(set(where))[:10]}"

    notices = await work.read_all([topic_name(TopicKind.DEAD_LETTER, REGION)])
    assert notices
    bad = [m.offset for m in notices
           if _found((m.value or b"") + (m.key or b"") + b"".join(v for _, v in m.headers))]
    assert not bad, f"key material in dead-letter notices at {bad[:10]}"

    logs = sorted(system.log_dir.glob("*.log"))
    assert logs and any(log.stat().st_size for log in logs), "no process log to search"
    in_logs = [log.name for log in logs if _found(log.read_bytes())]
    assert not in_logs, f"key material in {in_logs}"

    # What an operator sees of each letter: `mdmbus deadletters show`, every one (in one
    # process: the command's own function, per letter; the command itself once per shape below).
    sources = [f"{r['source_topic']}:{r['source_partition']}:{r['source_offset']}" for r in letters]
    shown = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", _SHOW_ALL, REGION],
                                    input="\n".join(sources).encode(), capture_output=True,
                                    timeout=900)
    assert shown.returncode == 0, shown.stderr.decode()[-500:]
    assert shown.stdout.count(b'"body_basis_means"') == len(sources)
    assert not _found(shown.stdout + shown.stderr), "`deadletters show` printed key material"
    # And once as an operator runs it, per shape.
    for name in SHAPE_NAMES:
        source = next(s for s in sent if s[3] == name)
        out = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "mdmbus", "deadletters", "show",
                             f"{source[0]}:{source[1]}:{source[2]}", "--region", REGION],
            capture_output=True, timeout=120)
        assert out.returncode == 0, out.stderr.decode()[-500:]
        assert b"body_basis_means" in out.stdout and not _found(out.stdout + out.stderr)
