"""`mdmbus produce` against the real broker: good lines arrive, bad lines are reported, not sent.

The command runs as a subprocess (``python -m mdmbus produce FILE``) on a JSON-lines file
mixing valid records of every kind with broken lines. The topics are then read back from the end
offsets they had before the run up to their end offsets after it. Other tests and processors may
write to the same mdm.* topics meanwhile, so our records are told apart by their record ids and by
a tenant, device and user of our own (fresh uuids, so no other writer uses them as keys).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord, TopicPartition

from mdmbus.codec import CodecError
from mdmbus.connections import kafka_options, pg_connect
from mdmbus.contract import default_registry, to_json
from mdmbus.identities import ADMIN
from mdmbus.settings import Settings
from mdmbus.topics import spec_of as topic_spec
from tests.conftest import REPO_ROOT
from tests.conftest import wait_for
from tests.unit.examples import der, example, pem

pytestmark = pytest.mark.integration

REGISTRY = default_registry()
KINDS = sorted(REGISTRY.kinds)
#: The records go to the eu topics (``--region eu``), and the global lifecycle topic.
REGION = "eu"


def topic_of(kind: str, region: str = REGION) -> str:
    spec = topic_spec(REGISTRY.spec(kind).topic)
    return spec.name(region if spec.regional else None)


MDM_TOPICS = sorted({topic_of(kind) for kind in REGISTRY.kinds})
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Private keys the bad lines carry; none of their bytes may reach the broker.
EC_PRIVATE_PEM = pem("PRIVATE KEY", der("ec_private_pkcs8"))
RSA_PRIVATE_DER = der("rsa_private_pkcs1")
#: What would show that a key got through: the DER itself, and a line of the PEM's base64 body.
KEY_TRACES = (der("ec_private_pkcs8"), RSA_PRIVATE_DER, EC_PRIVATE_PEM.splitlines()[1],
              base64.b64encode(RSA_PRIVATE_DER)[:64])

_REJECTED = re.compile(r"line (\d+): refused \(([a-z_]+)\): (.*)")
_SENT = re.compile(r"(\d+) sent, (\d+) refused(?: \((.*)\))?")
_DRY = re.compile(r"(\d+) valid \(dry run, nothing sent\), (\d+) refused(?: \((.*)\))?")


# ---------------------------------------------------------------- the input file

@dataclass
class Batch:
    """A JSON-lines file under construction, and what each of its lines should become."""

    tenant: str = field(default_factory=lambda: str(uuid.uuid4()))
    device: str = field(default_factory=lambda: str(uuid.uuid4()))
    user: str = field(default_factory=lambda: str(uuid.uuid4()))
    lines: list[bytes] = field(default_factory=list)
    #: line number -> (kind, record in the codec representation) of the lines that must be sent.
    valid: dict[int, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    #: line number -> reason code of the lines that must be rejected.
    bad: dict[int, str] = field(default_factory=dict)
    #: record ids of the rejected records: none may appear on any topic.
    bad_ids: set[str] = field(default_factory=set)

    def record(self, kind: str) -> dict[str, Any]:
        """A fresh valid record of ``kind`` with a new record id and our own envelope ids."""
        record = example(kind)
        record["envelope"].update(record_id=str(uuid.uuid4()), tenant_id=self.tenant,
                                  device_id=self.device, user_id=self.user)
        return record

    def add_valid(self, kind: str, iso_time: bool = False) -> None:
        record = self.record(kind)
        value = to_json(REGISTRY.spec(kind).expanded, record)
        if iso_time:  # the JSON form also takes ISO-8601 timestamps with a zone
            millis = record["envelope"]["event_time"]
            value["envelope"]["event_time"] = (_EPOCH + timedelta(milliseconds=millis)).isoformat()
        self.lines.append(json.dumps({"kind": kind, "record": value}).encode())
        self.valid[len(self.lines)] = (kind, record)

    def add_bad(self, reason: str, kind: str | None = None, record: dict | None = None,
                raw: bytes | None = None) -> None:
        if raw is None:
            self.bad_ids.add(record["envelope"]["record_id"])
            spec = REGISTRY.kinds.get(kind) or REGISTRY.spec(record["envelope"]["kind"])
            raw = json.dumps({"kind": kind, "record": to_json(spec.expanded, record)}).encode()
        self.lines.append(raw)
        self.bad[len(self.lines)] = reason

    def add_blank(self) -> None:
        self.lines.append(b"   ")

    def write(self, path: Path) -> Path:
        path.write_bytes(b"\n".join(self.lines) + b"\n")
        return path

    def key_of(self, kind: str) -> bytes:
        by_device = REGISTRY.spec(kind).key_field == "device_id"
        return (self.device if by_device else self.tenant).encode()

    def valid_ids(self) -> dict[str, tuple[int, str, dict[str, Any]]]:
        return {r["envelope"]["record_id"]: (n, k, r) for n, (k, r) in self.valid.items()}

    def is_ours(self, message: ConsumerRecord) -> bool:
        """A record whose envelope.record_id is one of the lines' (valid or not).

        Not "keyed by our tenant": processors running on the same stack answer our records with
        their own under our tenant's key (e.g. relay acknowledgements naming our relay records).
        """
        try:
            _, record = REGISTRY.codec.decode(message.value)
        except CodecError:
            return False  # someone else's test message
        record_id = str(record["envelope"]["record_id"])
        return record_id in self.valid_ids() or record_id in self.bad_ids


def _bad_lines(batch: Batch) -> None:
    """One broken line of every sort, each a near miss of a valid record."""
    batch.add_bad("invalid_json", raw=b'{"kind": "U12", "record": {"envelope": ')
    batch.add_bad("invalid_json", raw=b'{"kind": "U12", "record": "\xff\xfe not UTF-8"}')
    batch.add_bad("invalid_line", raw=json.dumps({"kind": "U12"}).encode())

    record = batch.record("U12")
    batch.add_bad("unknown_kind", "U99", record)

    record = batch.record("U9")  # a PEM private key in a text field
    record["device_name"] = EC_PRIVATE_PEM.decode()
    batch.add_bad("private_key_material", "U9", record)

    record = batch.record("U10")  # a DER private key where only a public key may go
    record["scep_challenge_encryption_certificate"] = RSA_PRIVATE_DER
    batch.add_bad("private_key_material", "U10", record)

    record = batch.record("U9")  # a certificate outside U10's public-key field
    record["os"] = pem("CERTIFICATE", der("certificate")).decode()
    batch.add_bad("certificate_body", "U9", record)

    record = batch.record("U9")
    record["device_type"] = "TOASTER"
    batch.add_bad("schema_mismatch", "U9", record)

    record = batch.record("U12")  # the key in upper case would land on another partition
    record["envelope"]["tenant_id"] = batch.tenant.upper()
    batch.add_bad("schema_mismatch", "U12", record)

    record = batch.record("U7")
    record["password"] = "hunter2"
    batch.add_bad("unknown_field", "U7", record)

    record = batch.record("U7")
    record.update(email="alice@contoso.com", email_profile_deployed=False)
    batch.add_bad("email_without_profile", "U7", record)

    record = batch.record("device_session")  # keyed by device_id, which is missing
    record["envelope"]["device_id"] = None
    batch.add_bad("missing_identifier", "device_session", record)

    record = batch.record("U12")
    record["envelope"]["kind"] = "U1"
    batch.add_bad("kind_mismatch", "U12", record)

    record = batch.record("U4")  # 600 KiB of content: over the contract's 512 KiB limit
    record["encrypted_content"] = b"\x00" * 600 * 1024
    batch.add_bad("oversized", "U4", record)

    record = batch.record("U12")  # a 1.2 MB line (over Kafka's 1 MiB request size, too)
    record["build_version"] = "5" * 1_200_000
    batch.add_bad("oversized", "U12", record)


def mixed_batch() -> Batch:
    """Every kind once (two U9s), broken lines and a blank line interleaved."""
    batch = Batch()
    broken = Batch(batch.tenant, batch.device, batch.user)
    _bad_lines(broken)
    bad_lines = list(zip(broken.lines, [broken.bad[n] for n in range(1, len(broken.lines) + 1)]))
    batch.bad_ids = broken.bad_ids
    for i, kind in enumerate([*KINDS, "U9"]):
        batch.add_valid(kind, iso_time=i % 2 == 1)
        if i == 3:
            batch.add_blank()
        if bad_lines:
            raw, reason = bad_lines.pop(0)
            batch.add_bad(reason, raw=raw)
    assert not bad_lines
    return batch


# ---------------------------------------------------------------- running and reading back

async def run_produce(settings: Settings, *args: str, stdin: bytes | None = None,
                      bootstrap: str | None = None,
                      region: str | None = REGION) -> tuple[int, str, str]:
    """``mdmbus produce ARGS`` (with ``--region`` unless ``region`` is None: the directory)."""
    env = dict(os.environ, MDMBUS_KAFKA_BOOTSTRAP=bootstrap or settings.kafka_bootstrap,
               PYTHONUNBUFFERED="1")
    if region is not None:
        args = (*args, "--region", region)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mdmbus", "produce", *args, cwd=REPO_ROOT, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError("mdmbus produce did not finish within 120 s") from None
    return proc.returncode, out.decode(), err.decode()


class TopicReader:
    """Reads the topics of one region and the global ones from the end offsets they had when
    the reader was opened."""

    def __init__(self, settings: Settings, region: str = REGION) -> None:
        self.settings = settings
        self.topics = sorted({topic_of(kind, region) for kind in REGISTRY.kinds})
        self.consumer = AIOKafkaConsumer(**kafka_options(settings, ADMIN), group_id=None,
                                         enable_auto_commit=False,
                                         isolation_level="read_uncommitted")
        self.partitions: list[TopicPartition] = []
        self.start: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> "TopicReader":
        admin = AIOKafkaAdminClient(**kafka_options(self.settings, ADMIN))
        await admin.start()
        try:
            described = await admin.describe_topics(self.topics)
        finally:
            await admin.close()
        self.partitions = [TopicPartition(t["topic"], p["partition"])
                           for t in described for p in t["partitions"]]
        assert {tp.topic for tp in self.partitions} == set(self.topics), described
        await self.consumer.start()
        self.consumer.assign(self.partitions)
        self.start = await self.consumer.end_offsets(self.partitions)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def end_offsets(self) -> dict[TopicPartition, int]:
        return await self.consumer.end_offsets(self.partitions)

    async def read_new(self, timeout_s: float = 60) -> list[ConsumerRecord]:
        """Every message written since the reader was opened, up to the current end offsets."""
        end = await self.end_offsets()
        for tp in self.partitions:
            self.consumer.seek(tp, self.start[tp])
        todo = {tp for tp in self.partitions if end[tp] > self.start[tp]}
        messages: list[ConsumerRecord] = []

        async def all_read() -> bool:
            batches = await self.consumer.getmany(*todo, timeout_ms=200) if todo else {}
            for tp, batch in batches.items():
                messages.extend(m for m in batch if m.offset < end[tp])
            for tp in list(todo):
                if await self.consumer.position(tp) >= end[tp]:
                    todo.discard(tp)
            return not todo

        await wait_for(all_read, timeout_s, "the mdm.* topics to be read up to their end offsets")
        return messages


def plain(value: Any) -> Any:
    """A decoded record in the representation records are built in (uuid text, epoch ms)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return (value - _EPOCH) // timedelta(milliseconds=1)
    return value


def parse_summary(pattern: re.Pattern[str], stdout: str) -> tuple[int, int, dict[str, int]]:
    lines = stdout.strip().splitlines()
    assert lines, "no summary on stdout"
    match = pattern.fullmatch(lines[-1])
    assert match, f"unexpected summary line {lines[-1]!r}"
    counts = {}
    for part in (match.group(3) or "").split(", "):
        if part:
            reason, _, count = part.partition(": ")
            counts[reason] = int(count)
    return int(match.group(1)), int(match.group(2)), counts


def rejections(stderr: str) -> dict[int, tuple[str, str]]:
    found: dict[int, tuple[str, str]] = {}
    for line in stderr.splitlines():
        match = _REJECTED.fullmatch(line)
        if match:
            number = int(match.group(1))
            assert number not in found, f"line {number} reported twice"
            found[number] = (match.group(2), match.group(3))
    return found


def reason_counts(batch: Batch) -> dict[str, int]:
    counts: dict[str, int] = {}
    for reason in batch.bad.values():
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def assert_arrived_exactly(batch: Batch, messages: list[ConsumerRecord],
                           region: str = REGION) -> None:
    """Our messages are exactly the valid records: right topic, key, value; each once."""
    ours = [m for m in messages if batch.is_ours(m)]
    expected = batch.valid_ids()
    seen: dict[str, ConsumerRecord] = {}
    for message in ours:
        kind, record = REGISTRY.codec.decode(message.value)
        record_id = str(record["envelope"]["record_id"])
        assert record_id not in batch.bad_ids, f"rejected record {record_id} was sent ({kind})"
        assert record_id in expected, f"unexpected record {record_id} ({kind}) on {message.topic}"
        assert record_id not in seen, f"record {record_id} ({kind}) arrived twice"
        seen[record_id] = message
        line, want_kind, want = expected[record_id]
        assert kind == want_kind, f"line {line}"
        assert message.topic == topic_of(kind, region), f"line {line}: {kind} on a wrong topic"
        assert message.key == batch.key_of(kind), f"line {line}: key {message.key!r}"
        assert plain(record) == want, f"line {line}: {kind} decoded differently"
        assert message.value == REGISTRY.codec.encode(kind, want), f"line {line}: value bytes"
        assert b"PRIVATE KEY" not in message.value
    missing = sorted(expected[i][0] for i in set(expected) - set(seen))
    assert not missing, f"valid lines {missing} did not arrive"


def assert_nothing_invalid_sent(batch: Batch, messages: list[ConsumerRecord]) -> None:
    """No message at all carries a rejected record's id, its upper-case key, or key bytes."""
    for message in messages:
        where = f"{message.topic}[{message.partition}]@{message.offset}"
        value = message.value or b""
        for record_id in batch.bad_ids:
            assert record_id.encode() not in value, f"rejected record {record_id} in {where}"
        assert message.key != batch.tenant.upper().encode(), f"upper-case key in {where}"
        for trace in KEY_TRACES:
            assert trace not in value, f"private key bytes in {where}"


# ---------------------------------------------------------------- tests

async def test_mixed_file_sends_the_valid_lines_and_reports_each_bad_one(stack, tmp_path):
    batch = mixed_batch()
    path = batch.write(tmp_path / "mixed.jsonl")
    assert len(batch.valid) == len(KINDS) + 1 and len(batch.bad) == 15

    async with TopicReader(stack) as reader:
        status, stdout, stderr = await run_produce(stack, str(path))
        messages = await reader.read_new()

    assert status == 1, f"exit status {status}\n{stdout}\n{stderr}"
    assert "Traceback" not in stderr, stderr

    # Each bad line on stderr with its number and reason; no good line reported.
    reported = rejections(stderr)
    assert {n: r for n, (r, _) in reported.items()} == batch.bad, stderr
    said = {reason: [m for r, m in reported.values() if r == reason]
            for reason in batch.bad.values()}
    assert any("not UTF-8" in m for m in said["invalid_json"]), said
    assert "unknown kind 'U99'" in said["unknown_kind"][0]
    assert any(m.startswith("device_type: ") for m in said["schema_mismatch"]), said
    assert any(m.startswith("envelope.tenant_id: ") and batch.tenant.upper() in m
               for m in said["schema_mismatch"]), said
    assert "password" in said["unknown_field"][0]
    assert "device_name" in said["private_key_material"][0]
    assert "scep_challenge_encryption_certificate" in said["private_key_material"][1]
    for trace in KEY_TRACES:  # the report names the problem, it does not repeat the key
        assert trace.decode("latin-1") not in stderr

    # The summary: how many were sent, and the rejections by reason.
    sent, rejected, counts = parse_summary(_SENT, stdout)
    assert (sent, rejected) == (len(batch.valid), len(batch.bad)), stdout
    assert counts == reason_counts(batch), stdout

    # Exactly the valid records arrived, each once, where and how they belong; nothing else.
    assert_arrived_exactly(batch, messages)
    assert_nothing_invalid_sent(batch, messages)


async def test_dry_run_validates_and_sends_nothing(stack, tmp_path):
    batch = mixed_batch()
    path = batch.write(tmp_path / "mixed.jsonl")

    async with TopicReader(stack) as reader:
        for args, stdin in [((str(path),), None), (("-",), path.read_bytes())]:
            status, stdout, stderr = await run_produce(stack, "--dry-run", *args, stdin=stdin)
            assert status == 1, f"{args}: exit status {status}\n{stdout}\n{stderr}"
            assert {n: r for n, (r, _) in rejections(stderr).items()} == batch.bad, stderr
            valid, rejected, counts = parse_summary(_DRY, stdout)
            assert (valid, rejected) == (len(batch.valid), len(batch.bad)), stdout
            assert counts == reason_counts(batch), stdout
        end = await reader.end_offsets()
        messages = await reader.read_new()

    # Other writers may share the topics: every offset that moved must be theirs, not ours.
    moved = {tp: (reader.start[tp], end[tp]) for tp in end if end[tp] != reader.start[tp]}
    ours = [m for m in messages if batch.is_ours(m)]
    assert_nothing_invalid_sent(batch, messages)
    assert not ours, (f"a dry run sent {len(ours)} records "
                      f"(end offsets moved on {sorted(map(tuple, moved))})")


async def test_only_valid_lines_exit_zero(stack, tmp_path):
    batch = Batch()
    for kind in ["U12", "U9", "device_command", "device_unenrolled", "tenant_onboarded", "R2"]:
        batch.add_valid(kind)
    batch.add_blank()
    batch.add_valid("device_session", iso_time=True)
    path = batch.write(tmp_path / "valid.jsonl")

    async with TopicReader(stack) as reader:
        status, stdout, stderr = await run_produce(stack, str(path))
        messages = await reader.read_new()

    assert status == 0, f"exit status {status}\n{stdout}\n{stderr}"
    assert not rejections(stderr) and "refused (" not in stderr, stderr
    assert parse_summary(_SENT, stdout) == (len(batch.valid), 0, {}), stdout
    assert_arrived_exactly(batch, messages)


async def test_unreachable_broker_is_an_error_message_not_a_traceback(settings, tmp_path):
    batch = Batch()
    batch.add_valid("U12")
    path = batch.write(tmp_path / "one.jsonl")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, stdout, stderr = await run_produce(settings, str(path), bootstrap=f"127.0.0.1:{port}")
    assert status == 3, f"exit status {status}\n{stdout}\n{stderr}"  # not 1 (rejected lines)
    assert "Traceback" not in stderr, stderr
    assert f"mdmbus: error: cannot send to Kafka at 127.0.0.1:{port}" in stderr, stderr


async def test_without_a_region_each_record_goes_to_its_tenants_region(stack, tmp_path):
    """The tenant directory routes: a tenant of ap gets mdm.ap.* topics; a tenant the
    directory does not know, or one whose data was deleted, is rejected as the pipeline would
    refuse it, and the lines around them are sent."""
    import uuid as uuid_

    from mdmbus.regions import DIRECTORY_DATABASE
    here, gone, unknown = Batch(), Batch(), Batch()
    conn = await pg_connect(stack, DIRECTORY_DATABASE)
    try:
        await conn.execute(
            "INSERT INTO tenant_directory (tenant_id, region, country, state, onboarded_at)"
            " VALUES ($1, 'ap', 'JP', 'active', now()), ($2, 'na', 'US', 'purged', now())",
            uuid_.UUID(here.tenant), uuid_.UUID(gone.tenant))
    finally:
        await conn.close()
    lines = Batch(here.tenant, here.device, here.user)
    lines.add_valid("U12")
    record = gone.record("U9")
    lines.add_bad("tenant_deleted", "U9", record)
    lines.add_valid("device_command")
    record = unknown.record("R2")
    lines.add_bad("tenant_not_onboarded", "R2", record)
    lines.add_valid("U9")
    path = lines.write(tmp_path / "routed.jsonl")
    async with TopicReader(stack, region="ap") as reader:
        status, stdout, stderr = await run_produce(stack, str(path), region=None)
        messages = await reader.read_new()
    assert status == 1, f"exit status {status}\n{stdout}\n{stderr}"
    assert {n: r for n, (r, _) in rejections(stderr).items()} == lines.bad, stderr
    assert_arrived_exactly(lines, messages, region="ap")
    assert_nothing_invalid_sent(lines, messages)
