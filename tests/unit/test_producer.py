"""Producing from JSON lines: good lines become (topic, key, value), bad ones rejections."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdmbus.contract import default_registry, to_json
from mdmbus.producer import Produced, RefusedLine, parse_line, prepare_lines, send_all
from tests.unit.examples import DEVICE, TENANT, der, example, pem

REGISTRY = default_registry()


def _line(kind: str, record: dict) -> str:
    return json.dumps({"kind": kind, "record": to_json(REGISTRY.spec(kind).expanded, record)})


def test_good_line_becomes_topic_key_and_value() -> None:
    record = example("U9")
    item = parse_line(_line("U9", record), 1)
    assert isinstance(item, Produced)
    assert (item.topic, item.key, item.kind) == ("upload", TENANT.encode(), "U9")
    assert item.to("eu").topic == "mdm.eu.upload" and item.tenant_id == TENANT
    kind, decoded = REGISTRY.codec.decode(item.value)
    assert kind == "U9" and decoded["device_name"] == record["device_name"]


def test_device_topics_are_keyed_by_device() -> None:
    item = parse_line(_line("device_session", example("device_session")), 1)
    assert isinstance(item, Produced)
    assert (item.topic, item.key) == ("device.sessions", DEVICE.encode())
    assert item.to("ap").topic == "mdm.ap.device.sessions"


def test_lifecycle_records_go_to_the_one_global_topic() -> None:
    item = parse_line(_line("tenant_onboarded", example("tenant_onboarded")), 1)
    assert isinstance(item, Produced) and item.to(None).topic == "mdm.tenant.lifecycle"


def test_json_form_timestamps_and_bytes() -> None:
    record = to_json(REGISTRY.spec("U10").expanded, example("U10"))
    cert = pem("CERTIFICATE", der("certificate"))
    record["scep_challenge_encryption_certificate"] = base64.b64encode(cert).decode()
    for when, millis in [("2024-05-01T12:00:00.250Z", 1_714_564_800_250),
                         ("2024-05-01T14:00:00.250+02:00", 1_714_564_800_250),
                         (1_714_564_800_250, 1_714_564_800_250)]:
        record["envelope"]["event_time"] = when
        item = parse_line(json.dumps({"kind": "U10", "record": record}), 3)
        assert isinstance(item, Produced), item
        _, decoded = REGISTRY.codec.decode(item.value)
        assert decoded["scep_challenge_encryption_certificate"] == cert
        assert int(decoded["envelope"]["event_time"].timestamp() * 1000) == millis


def test_bad_lines_are_refused_with_line_number_and_the_good_ones_go_through() -> None:
    good = _line("U12", example("U12"))
    email = example("U7")
    email.update(email="a@b.c", email_profile_deployed=False)
    naive = json.loads(good)
    naive["record"]["envelope"]["event_time"] = "2024-05-01T12:00:00"
    bad_b64 = json.loads(_line("U4", example("U4")))
    bad_b64["record"]["encrypted_content"] = "***"
    lines = [
        good,
        "{not json",
        "",
        json.dumps({"kind": "U12"}),
        json.dumps({"kind": "U99", "record": {}}),
        _line("U7", email),
        json.dumps(naive),
        json.dumps(bad_b64),
        json.dumps({"kind": "U12", "record": [1, 2]}),
        good,
    ]
    results = list(prepare_lines(lines))
    assert [type(r).__name__ for r in results] == ["Produced"] + ["RefusedLine"] * 7 + ["Produced"]
    rejections = {r.line: r.reason for r in results if isinstance(r, RefusedLine)}
    assert rejections == {2: "invalid_json", 4: "invalid_line", 5: "unknown_kind",
                          6: "email_without_profile", 7: "schema_mismatch",
                          8: "schema_mismatch", 9: "schema_mismatch"}
    assert [r.line for r in results if isinstance(r, Produced)] == [1, 10]
    assert "line 6: email_without_profile" in str(next(r for r in results if r.line == 6))


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3)),
       st.sampled_from(sorted(REGISTRY.kinds)))
def test_arbitrary_json_never_escapes_as_an_exception(record: object, kind: str) -> None:
    item = parse_line(json.dumps({"kind": kind, "record": record}), 7)
    assert isinstance(item, (Produced, RefusedLine))


class _FakeProducer:
    """Stands in for AIOKafkaProducer.send: returns a future per message, like aiokafka."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future:
        self.sent.append((topic, key, value))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_send_all_sends_each_record_with_its_key() -> None:
    items = [parse_line(_line("U12", example("U12")), n) for n in range(1, 6)]
    fake = _FakeProducer()
    assert await send_all(fake, items, window=2) == (5, [])  # type: ignore[arg-type]
    assert fake.sent == [(i.topic, i.key, i.value) for i in items]


class _RefusingProducer(_FakeProducer):
    """Kafka refuses records of one kind for good (as a broker with a lower max.message.bytes
    or a missing ACL does); an unreachable broker is the other case."""

    refuse_kind = "U9"
    unreachable = False

    def __init__(self, **_: object) -> None:
        super().__init__()

    async def start(self) -> None:
        if self.unreachable:
            from aiokafka.errors import KafkaConnectionError
            raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]")

    async def stop(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future:
        from aiokafka.errors import MessageSizeTooLargeError
        future = await super().send(topic, value, key)
        if default_registry().codec.decode(value).kind == self.refuse_kind:
            future = asyncio.get_running_loop().create_future()
            future.set_exception(MessageSizeTooLargeError("the broker's limit is lower"))
        return future


def _produce_with(monkeypatch, producer_class, lines: list[str]) -> tuple[int, str, str]:
    import io

    import aiokafka

    from mdmbus.cli.produce import produce
    from mdmbus.settings import Settings
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", producer_class)
    out, err = io.StringIO(), io.StringIO()
    status = produce(Settings(kafka_security="plaintext"), io.StringIO("".join(lines)), out=out, err=err, region="eu")
    return status, out.getvalue(), err.getvalue()


def test_records_kafka_refuses_are_named_by_line_and_exit_4(monkeypatch) -> None:
    lines = [_line("U12", example("U12")) + "\n", _line("U9", example("U9")) + "\n",
             "not json\n", _line("U12", example("U12")) + "\n"]
    status, out, err = _produce_with(monkeypatch, _RefusingProducer, lines)
    assert status == 4, (out, err)
    assert "line 2: refused by Kafka (MessageSizeTooLargeError)" in err
    assert "line 3: refused (invalid_json)" in err
    assert out.strip() == ("2 sent, 1 refused (invalid_json: 1), "
                           "1 refused by Kafka (MessageSizeTooLargeError: 1)")


def test_an_unreachable_broker_is_exit_3(monkeypatch) -> None:
    from mdmbus.cli.produce import SendError

    class Down(_RefusingProducer):
        unreachable = True

    with pytest.raises(SendError) as caught:
        _produce_with(monkeypatch, Down, [_line("U12", example("U12")) + "\n"])
    assert caught.value.exit_status == 3
    assert "0 records were acknowledged" in str(caught.value)
