"""Consumer lag of mdmbus's consumer groups, for the mdmbus_consumer_lag_messages gauge."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from mdmbus.metrics import Metrics
from mdmbus.settings import Settings

__all__ = ["GROUPS", "measure_consumer_lag"]

#: The consumer groups whose lag is exported: the faust pipeline and the CM connector.
GROUPS = ("mdmbus-pipeline", "mdmbus-cm-connector")


async def measure_consumer_lag(settings: Settings, metrics: Metrics,
                               groups: tuple[str, ...] = GROUPS) -> dict[tuple[str, str, int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    lags: dict[tuple[str, str, int], int] = {}
    try:
        for group in groups:
            committed = await admin.list_consumer_group_offsets(group)
            committed = {tp: meta.offset for tp, meta in committed.items()
                         if not tp.topic.startswith("mdmbus-pipeline-")}  # faust internals
            if not committed:
                continue
            ends = await consumer.end_offsets(list(committed))
            for tp, offset in committed.items():
                lag = max(0, ends[tp] - max(offset, 0))
                lags[(group, tp.topic, tp.partition)] = lag
                metrics.consumer_lag.labels(group, tp.topic, str(tp.partition)).set(lag)
    finally:
        await consumer.stop()
        await admin.close()
    return lags
