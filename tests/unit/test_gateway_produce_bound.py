"""The gateway's bound on Kafka's acknowledgement (Gateway._produce): a request whose records
Kafka does not acknowledge in time is answered 503 with Retry-After, never held; the producer's
own futures are left to it (it is idempotent and keeps sending). The producers here stand for
aiokafka's: what a broker's loss looks like to the gateway, a send that waits for metadata or an
acknowledgement that does not come. The real cluster losing a broker is tests/compose."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from mdmbus.metrics import Metrics
from mdmbus.services.gateway.app import ApiError, Gateway, Limits
from mdmbus.settings import Settings

BOUND_S = 0.3


class _Producer:
    """send() returns a future per record, as AIOKafkaProducer.send does; ``ack`` says whether
    it resolves at once, ``blocked`` that send() itself waits (metadata, buffer room)."""

    def __init__(self, ack: bool = True, blocked: bool = False) -> None:
        self.ack, self.blocked = ack, blocked
        self.futures: list[asyncio.Future] = []
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future:
        if self.blocked:
            await asyncio.Event().wait()
        self.sent.append((topic, value, key))
        future = asyncio.get_running_loop().create_future()
        if self.ack:
            future.set_result(len(self.sent))
        self.futures.append(future)
        return future


def _gateway(producer: _Producer) -> tuple[Gateway, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return Gateway(Settings.from_env({}), "eu", None, None, producer, None, metrics, None, None,
                   Limits(produce_seconds=BOUND_S, produce_retry_after=7)), metrics


def _refusals(metrics: Metrics) -> float:
    return metrics.gateway_kafka_unavailable.labels("eu")._value.get()


async def test_acknowledged_records_return_and_nothing_is_counted():
    producer = _Producer()
    gateway, metrics = _gateway(producer)
    await gateway._produce("mdm.eu.upload", [(b"a", b"1"), (b"b", None)])
    assert [s[1] for s in producer.sent] == [b"a", b"b"]
    assert _refusals(metrics) == 0


@pytest.mark.parametrize("producer", [_Producer(ack=False), _Producer(blocked=True)],
                         ids=["acknowledgement late", "send waits for metadata"])
async def test_unacknowledged_records_get_503_with_retry_after_within_the_bound(producer):
    gateway, metrics = _gateway(producer)
    began = time.monotonic()
    with pytest.raises(ApiError) as refused:  # (an unbounded wait fails as TimeoutError)
        await asyncio.wait_for(gateway._produce("mdm.eu.upload", [(b"a", b"1"), (b"b", b"2")]),
                               5)
    took = time.monotonic() - began
    assert BOUND_S <= took < BOUND_S + 0.5, took
    assert refused.value.status == 503 and refused.value.code == "kafka_unavailable"
    assert refused.value.headers == {"Retry-After": "7"}
    assert "send the request again" in str(refused.value)
    assert _refusals(metrics) == 1
    # The producer's futures are its own: still pending, so a late acknowledgement lands.
    assert all(not f.done() for f in producer.futures)


async def test_a_refusal_by_kafka_is_raised_as_itself_not_as_unavailable():
    class Refusing(_Producer):
        async def send(self, topic, value, key=None):
            future = asyncio.get_running_loop().create_future()
            future.set_exception(PermissionError("topic authorization failed"))
            return future
    gateway, metrics = _gateway(Refusing())
    with pytest.raises(PermissionError):
        await gateway._produce("mdm.eu.upload", [(b"a", b"1")])
    assert _refusals(metrics) == 0
