"""faust-streaming works against this Kafka: an agent consumes one topic and produces another."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from mdmbus.cli.launcher import end_process
from mdmbus.connections import kafka_options
from mdmbus.identities import ADMIN
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

APP = Path(__file__).parent / "apps" / "faust_echo.py"


async def test_faust_agent_consumes_and_produces_on_the_real_broker(stack, make_topic, tmp_path):
    src = await make_topic("faust-src", partitions=3)
    dst = await make_topic("faust-dst", partitions=3)
    env = dict(os.environ, SRC=src, DST=dst, APP_ID=f"echo-{uuid.uuid4().hex[:8]}",
               BROKER=f"kafka://{stack.kafka_bootstrap}")
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen([sys.executable, str(APP), "worker", "-l", "info"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        await wait_for(lambda: worker.poll() is not None or
                       "Worker ready" in (tmp_path / "worker.log").read_text(),
                       60, "the faust worker to be ready")
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]

        sent = {f"k{i}".encode(): f"value-{i}".encode() for i in range(200)}
        producer = AIOKafkaProducer(**kafka_options(stack, ADMIN))
        await producer.start()
        try:
            for key, value in sent.items():
                await producer.send(src, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(dst, **kafka_options(stack, ADMIN),
                                    auto_offset_reset="earliest", group_id=f"{dst}-reader")
        await consumer.start()
        got: dict[bytes, bytes] = {}
        try:
            async def all_arrived() -> bool:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    got.update((m.key, m.value) for m in messages)
                return len(got) >= len(sent)
            await wait_for(all_arrived, 60, "the agent's output")
        finally:
            await consumer.stop()
        assert got == {k: v.upper() for k, v in sent.items()}
    finally:
        end_process(worker)
        log.close()
