"""The gateway while Kafka does not answer (the broker stopped): an upload is answered 503
kafka_unavailable with Retry-After within MDMBUS_GATEWAY_PRODUCE_TIMEOUT, never held; once the
broker is back, the same upload sent again is accepted (or its records already delivered are
refused as record_id_taken), and every record is stored exactly once. The real gateway and
pipeline processes, the real broker stopped and started (mdmbus.stack.kafka), real PostgreSQL.
A cluster losing one of three brokers is tests/compose."""

from __future__ import annotations

import asyncio
import os
import stat
import time
import uuid

import pytest

from mdmbus.contract import to_json
from mdmbus.services.connector.client import GatewayError
from mdmbus.stack import kafka
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher, listening

pytestmark = pytest.mark.integration

#: The gateway's bound here (10 s by default: a shorter wait makes a shorter test).
PRODUCE_TIMEOUT_S = 3.0
RECORDS = 10


async def test_an_upload_while_kafka_is_away_gets_503_and_sent_again_is_stored_once(
        stack, tmp_path):
    procs = launcher(stack, tmp_path, speed=1.0)
    try:
        procs.start("pipeline", "eu")
        procs.start("gateway", "eu",
                    env={"MDMBUS_GATEWAY_PRODUCE_TIMEOUT": str(PRODUCE_TIMEOUT_S)})

        def up() -> bool:
            procs.assert_alive()
            return listening(stack.gateway_ports["eu"])
        await wait_for(up, 90, "the gateway", interval_s=0.2)
        async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
            tenant = await work.onboarded("eu", 120)
            client = work.client(tenant)
            lines = []
            for i in range(RECORDS):
                kind = f"U{i % 14 + 1}"
                lines.append({"kind": kind, "record": to_json(
                    work.contract.spec(kind).expanded, work.make(kind, tenant))})
            ids = [line["record"]["envelope"]["record_id"] for line in lines]
            assert (await client.upload(lines[:1]))["accepted"], "the gateway works before"

            await asyncio.to_thread(kafka.stop, stack)
            try:
                began = time.monotonic()
                with pytest.raises(GatewayError) as refused:
                    await asyncio.wait_for(client.upload(lines[1:]), 60)
                took = time.monotonic() - began
            finally:
                previous = os.umask(0o022)  # a restart by a tool with the usual umask
                try:
                    await asyncio.to_thread(kafka.start, stack, lambda _: None)
                finally:
                    os.umask(previous)
            # ... still leaves its files (the config names the key store and the listeners) the
            # owner's alone.
            paths = kafka.kafka_paths(stack)
            assert {f.name: oct(stat.S_IMODE(f.stat().st_mode))
                    for f in (paths.config, paths.pidfile)} == \
                {"server.properties": "0o600", "kafka.pid": "0o600"}
            assert refused.value.status == 503 and refused.value.code == "kafka_unavailable", \
                refused.value
            assert PRODUCE_TIMEOUT_S <= took < PRODUCE_TIMEOUT_S + 10, took
            procs.assert_alive()

            # Sent again once the broker is back: every record accepted now or held already.
            async def resent() -> bool:
                try:
                    body = await client.upload(lines[1:])
                except GatewayError as exc:
                    assert exc.status == 503, exc  # the producer still reconnecting
                    return False
                assert {r["reason"] for r in body["refused"]} <= {"record_id_taken"}, body
                assert len(body["accepted"]) + len(body["refused"]) == RECORDS - 1
                return True
            await wait_for(resent, 90, "the upload accepted once the broker is back",
                           interval_s=1.0)
            await wait_for(lambda: _all_stored(work, ids), 90, f"{RECORDS} records stored")
            rows = await work.region_pool("eu").fetch(
                "SELECT record_id, count(*) AS n FROM records WHERE record_id = ANY($1::uuid[])"
                " GROUP BY record_id", [uuid.UUID(i) for i in ids])
            assert len(rows) == RECORDS and {r["n"] for r in rows} == {1}
            procs.assert_alive()
    finally:
        procs.stop()


async def _all_stored(work: Workload, ids: list[str]) -> bool:
    return len(await work.stored("eu", ids)) == len(ids)
