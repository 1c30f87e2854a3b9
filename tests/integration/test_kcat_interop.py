"""The wire format works from outside Python: kcat carries Apache Avro bytes to mdmbus and back.

Producing: a record is written by the Apache ``avro`` library (DatumWriter + BinaryEncoder), put
behind the single-object header built by hand from the specification (``C3 01`` + the schema's
CRC-64-AVRO fingerprint, little-endian), and sent by the ``kcat`` command-line tool (librdkafka,
no Python involved). mdmbus's codec reads it back as the same record.

Consuming: a message mdmbus validated, keyed and encoded is fetched raw by ``kcat -C -f '%s'``,
and the Apache ``avro`` library reads the same record from it.

kcat sends each file named on its command line as one message (the whole file, byte for byte),
so binary values need no delimiter. kcat (librdkafka) partitions by CRC32 of the key unless told
otherwise, which differs from the Java client and aiokafka (murmur2): an outside producer must set
``partitioner=murmur2_random`` for a tenant's records to share a partition with mdmbus's own (see
:func:`test_kcat_record_on_an_upload_topic_lands_where_mdmbus_puts_its_tenant`).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord, TopicPartition

from mdmbus.canonical import fingerprint_bytes
from mdmbus.codec import MARKER
from mdmbus.connections import kafka_options
from mdmbus.contract import default_registry, validate
from mdmbus.identities import ADMIN
from mdmbus.producer import prepare_record
from mdmbus.topics import TopicKind, topic_name
from tests.conftest import wait_for
from tests.unit.examples import der, example, pem

pytestmark = pytest.mark.integration

REGISTRY = default_registry()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: librdkafka's Java-compatible partitioner; kcat's default (consistent_random) is CRC32-based.
JAVA_PARTITIONER = ("-X", "topic.partitioner=murmur2_random")
KINDS = ["U9", "U4", "U10", "R1", "inventory_cache", "device_session", "device_command"]
#: The topic the kcat record goes to (the eu region's upload topic).
UPLOAD = topic_name(TopicKind.UPLOAD, "eu")


def require_kcat(settings) -> list[str]:
    """kcat's command line, connected as the stack's admin with the settings `mdmbus stack
    client-config` writes (a client certificate: Debian's kcat cannot log in with SCRAM to
    Kafka 4); a missing kcat fails the test (in its body, so it reports as FAILED)."""
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not on PATH: these tests need the kcat command-line tool (Debian "
                    "package kcat, installed by ./run; or: apt-get install kcat)", pytrace=False)
    config = settings.state_dir / "kcat-admin.conf"
    if not config.exists():
        subprocess.run([sys.executable, "-m", "mdmbus", "stack", "client-config", "--principal",
                        ADMIN, "--auth", "certificate", "--output", str(config)], check=True,
                       capture_output=True)
    return [path, "-F", str(config), "-q"]


# ---------------------------------------------------------------- records

def make_record(kind: str, tenant: str) -> dict[str, Any]:
    """A valid record with fresh ids and values that stress the encoding (binary, UTF-8)."""
    record = example(kind)
    record["envelope"].update(record_id=str(uuid.uuid4()), tenant_id=tenant,
                              device_id=str(uuid.uuid4()), user_id=str(uuid.uuid4()),
                              event_time=1_714_564_800_250)
    if kind == "U9":
        record.update(device_name="Ünïcode phone ✓", friendly_name="Alice's phone",
                      primary_user_id=record["envelope"]["user_id"],
                      certificate_expiry=1_893_456_000_000)
    elif kind == "U4":
        # Every byte value, newlines and NULs included: nothing may split or trim it.
        record.update(encrypted_content=bytes(range(256)) * 3 + b"\n\r\n\x00",
                      description="naïve line one\nline two", icon=b"\x89PNG\r\n\x1a\n")
    elif kind == "U10":
        record["scep_challenge_encryption_certificate"] = pem("CERTIFICATE", der("certificate"))
    elif kind == "inventory_cache":
        record["inventory"] = {"software": [{"name": "Edge", "version": "120.0"},
                                            {"name": "Notes", "version": None}],
                               "hardware": {"Model": "Lumia 930", "TotalStorageMB": "32768"}}
    elif kind == "device_session":
        record["expires_at"] = 1_714_568_400_000
    validate(kind, record)
    return record


def for_avro(schema: Any, value: Any) -> Any:
    """The record as the Apache avro library takes it: timestamps as aware datetimes."""
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        return None if value is None else for_avro(branches[0], value)
    if isinstance(schema, str):
        return value
    kind = schema["type"]
    if kind == "record":
        return {f["name"]: for_avro(f["type"], value[f["name"]]) for f in schema["fields"]}
    if kind == "array":
        return [for_avro(schema["items"], v) for v in value]
    if kind == "map":
        return {k: for_avro(schema["values"], v) for k, v in value.items()}
    if schema.get("logicalType") == "timestamp-millis":
        return _EPOCH + timedelta(milliseconds=value)
    return value


def plain(value: Any) -> Any:
    """A decoded record (either library) as records are built here: uuid text, epoch ms."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return (value - _EPOCH) // timedelta(milliseconds=1)
    return value


# ---------------------------------------------------------------- the outsider's side

def schema_file(kind: str) -> Path:
    return REGISTRY.spec(kind).path


def fingerprint(kind: str) -> bytes:
    """The registry's fingerprint for ``kind``, checked against one computed from its file."""
    registered = REGISTRY.spec(kind).fingerprint
    computed = fingerprint_bytes(json.loads(schema_file(kind).read_text(encoding="utf-8")))
    assert registered == computed, f"{kind}: registry {registered.hex()} != file {computed.hex()}"
    assert REGISTRY.codec.fingerprint(kind) == registered
    return registered


def avro_write(kind: str, record: dict[str, Any]) -> bytes:
    """A single-object-encoded message built with the Apache avro library and the spec."""
    schema = avro.schema.parse(schema_file(kind).read_text(encoding="utf-8"))
    body = io.BytesIO()
    avro.io.DatumWriter(schema).write(for_avro(REGISTRY.spec(kind).expanded, record),
                                      avro.io.BinaryEncoder(body))
    header = bytes([0xC3, 0x01]) + fingerprint(kind)
    assert header == MARKER + REGISTRY.spec(kind).fingerprint
    return header + body.getvalue()


def avro_read(kind: str, message: bytes) -> Any:
    """The record in a single-object-encoded message, read with the Apache avro library."""
    assert message[:2] == b"\xc3\x01", f"marker {message[:2].hex()}"
    assert message[2:10] == fingerprint(kind), f"fingerprint {message[2:10].hex()}"
    schema = avro.schema.parse(schema_file(kind).read_text(encoding="utf-8"))
    stream = io.BytesIO(message[10:])
    datum = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(stream))
    assert stream.tell() == len(message) - 10, "bytes left over after the record"
    return datum


async def run(*argv: str, timeout_s: float = 60) -> bytes:
    """A command's stdout; it must exit 0 within the deadline."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{argv} did not finish within {timeout_s} s") from None
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}: {err.decode(errors='replace')}"
    return out


async def kcat_produce(kcat: list[str], topic: str, key: bytes, path: Path) -> None:
    """One message: the whole of ``path`` as the value (kcat sends each named file as one)."""
    await run(*kcat, "-P", "-t", topic, "-k", key.decode("ascii"),
              *JAVA_PARTITIONER, str(path))


async def kcat_value(kcat: list[str], topic: str, partition: int, offset: int) -> bytes:
    """The raw value of one message, as kcat prints it with the format '%s'."""
    return await run(*kcat, "-C", "-t", topic, "-p", str(partition),
                     "-o", str(offset), "-c", "1", "-e", "-f", "%s")


# ---------------------------------------------------------------- tests

async def test_fingerprints_match_the_schema_files() -> None:
    for kind in sorted(REGISTRY.kinds):
        fingerprint(kind)


async def test_avro_library_bytes_sent_by_kcat_decode_in_mdmbus(stack, make_topic, tmp_path):
    kcat = require_kcat(stack)
    topic = await make_topic("kcat-in", partitions=3)
    tenant = str(uuid.uuid4())
    sent: dict[str, tuple[str, bytes, bytes, dict[str, Any]]] = {}
    for kind in KINDS:
        record = make_record(kind, tenant)
        message = avro_write(kind, record)
        key = REGISTRY.key(kind, record)
        path = tmp_path / f"{kind}.bin"
        path.write_bytes(message)
        await kcat_produce(kcat, topic, key, path)
        sent[record["envelope"]["record_id"]] = (kind, key, message, record)

    received = await read_topic(stack, topic, len(sent))
    assert len(received) == len(sent)
    for message in received:
        kind, record = REGISTRY.codec.decode(message.value)
        want_kind, key, value, want = sent[str(record["envelope"]["record_id"])]
        assert kind == want_kind
        assert message.key == key
        assert message.value == value, f"{kind}: kcat changed the bytes"
        assert plain(record) == want, f"{kind}: decoded differently"
        validate(kind, record)  # and it keeps the contract, as read by a processor
        # The Apache library's body is exactly what mdmbus itself writes for the record.
        assert message.value == REGISTRY.codec.encode(kind, want)


async def test_kcat_record_on_an_upload_topic_lands_where_mdmbus_puts_its_tenant(stack, tmp_path):
    kcat = require_kcat(stack)
    record = make_record("U9", str(uuid.uuid4()))
    message = avro_write("U9", record)
    key = REGISTRY.key("U9", record)
    assert key == record["envelope"]["tenant_id"].encode() and len(key) == 36
    path = tmp_path / "u9.bin"
    path.write_bytes(message)

    partitions = await partitions_of(stack, UPLOAD)
    consumer = AIOKafkaConsumer(**kafka_options(stack, ADMIN), group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        before = await consumer.end_offsets(partitions)
        await kcat_produce(kcat, UPLOAD, key, path)
        for tp in partitions:
            consumer.seek(tp, before[tp])
        found: list[ConsumerRecord] = []
        wanted = record["envelope"]["record_id"].encode()

        async def arrived() -> bool:
            batches = await consumer.getmany(timeout_ms=200)
            found.extend(m for batch in batches.values() for m in batch
                         if m.value and wanted in m.value)
            return bool(found)

        await wait_for(arrived, 30, f"record {wanted.decode()} on {UPLOAD}")
    finally:
        await consumer.stop()

    [got] = found
    kind, decoded = REGISTRY.codec.decode(got.value)
    assert (kind, got.key, got.value) == ("U9", key, message)
    assert plain(decoded) == record
    # The partition mdmbus's own producer (aiokafka, murmur2 like the Java client) uses for it.
    ids = sorted(tp.partition for tp in partitions)
    assert got.partition == DefaultPartitioner()(key, ids, ids)


async def test_mdmbus_messages_read_by_kcat_decode_with_the_avro_library(stack, make_topic):
    kcat = require_kcat(stack)
    topic = await make_topic("kcat-out", partitions=3)
    tenant = str(uuid.uuid4())
    producer = AIOKafkaProducer(**kafka_options(stack, ADMIN), acks="all",
                                enable_idempotence=True)
    await producer.start()
    written = []
    try:
        for kind in KINDS:
            record = make_record(kind, tenant)
            item = prepare_record(kind, record)  # validated, keyed and encoded by mdmbus
            meta = await producer.send_and_wait(topic, value=item.value, key=item.key)
            written.append((kind, record, item, meta.partition, meta.offset))
    finally:
        await producer.stop()

    for kind, record, item, partition, offset in written:
        raw = await kcat_value(kcat, topic, partition, offset)
        assert raw == item.value, f"{kind}: kcat printed other bytes than were sent"
        assert plain(avro_read(kind, raw)) == record, f"{kind}: avro read another record"

    # kcat sees the same keys where aiokafka put them.
    listing = await run(*kcat, "-C", "-t", topic,
                        "-o", "beginning", "-e", "-f", "%p %o %k\\n")
    keys = {(int(p), int(o)): k.encode() for p, o, k in
            (line.split(" ") for line in listing.decode().splitlines())}
    assert keys == {(p, o): item.key for _, _, item, p, o in written}


# ---------------------------------------------------------------- reading with aiokafka

async def partitions_of(settings, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**kafka_options(settings, ADMIN))
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]


async def read_topic(settings, topic: str, count: int) -> list[ConsumerRecord]:
    """Every message of a (fresh) topic, once ``count`` of them have arrived."""
    consumer = AIOKafkaConsumer(topic, **kafka_options(settings, ADMIN), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    messages: list[ConsumerRecord] = []
    try:
        async def all_read() -> bool:
            batches = await consumer.getmany(timeout_ms=200)
            messages.extend(m for batch in batches.values() for m in batch)
            return len(messages) >= count

        await wait_for(all_read, 30, f"{count} messages on {topic}")
    finally:
        await consumer.stop()
    return messages


async def test_kcat_logs_in_with_scram_as_the_principal_client_config_names(stack, tmp_path):
    """`mdmbus stack client-config --auth scram` (the default) works for kcat on a librdkafka
    that speaks SCRAM to Kafka 4 (2.16, the confluent-kafka wheel's, put first on the library
    path): kcat sees exactly the principal's topics and is refused one it may not read.
    Debian 12's own librdkafka 2.0.2 is refused over SCRAM; `--auth certificate` is for it
    (require_kcat above)."""
    import glob

    import confluent_kafka
    kcat = require_kcat(stack)[0]
    [library] = glob.glob(os.path.dirname(confluent_kafka.__file__) + ".libs/librdkafka-*.so.1")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "librdkafka.so.1").symlink_to(library)
    env = dict(os.environ, LD_LIBRARY_PATH=str(tmp_path / "lib"))
    config = tmp_path / "devices-eu.properties"
    subprocess.run([sys.executable, "-m", "mdmbus", "stack", "client-config", "--principal",
                    "devices-eu", "--output", str(config)], check=True, capture_output=True)
    assert "sasl.mechanisms=SCRAM-SHA-512" in config.read_text()

    async def kcat_run(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            kcat, "-F", str(config), *args, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode, out.decode(errors="replace")

    status, version = await kcat_run("-V")
    assert "librdkafka 2.16" in version, version
    status, listing = await kcat_run("-L")
    assert status == 0, listing
    seen = set(re.findall(r'topic "([^"]+)"', listing))
    assert seen == {topic_name(k, "eu") for k in (TopicKind.RELAY, TopicKind.DEVICE_SESSIONS,
                                                  TopicKind.DEVICE_COMMANDS)}, listing
    status, refused = await kcat_run("-C", "-t", UPLOAD, "-o", "beginning", "-e", "-q")
    assert "Topic authorization failed" in refused, refused
