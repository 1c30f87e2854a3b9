"""The compose end-to-end test's client inside the compose network (tests/compose/
test_compose_cluster.py runs it with `compose run` as the provisioning service, in the mdmbus
image, with this checkout's tests/ mounted and pytest installed from wheels made on the host):
a workload through the gateways and the device producers, and every check of the stores and
topics, while the test kills and restarts a broker from outside.

It speaks in lines: on stdout ``EVENT {json}``; on stdin the test's answers. The scenario:

1. tenants onboarded in every region, each with its CM connector's token;
2. uploads through each region's gateway, relay records from each region's device producer,
   continuously; once some are stored: ``LEADERS`` (the node leading most partitions of the
   upload and relay topics), then it waits for ``killed`` on stdin;
3. the workload goes on through the failover, then stops; ``CHECKED`` once every upload the
   gateway accepted is stored exactly once, every relay record is in CM and gone from the
   cloud, no row is past its deadline, no processed copy is readable past its bound, and the
   log start of the partitions the killed node led has moved on (truncation on new leaders);
4. it waits for ``restarted`` on stdin, then ``ISR`` once the node is back in every ISR.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import sys
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from mdmbus.clock import Clock
from mdmbus.connections import admin_options, kafka_options, producer_options
from mdmbus.contract import to_json
from mdmbus.identities import principal_of
from mdmbus.metrics import Metrics
from mdmbus.regions import REGIONS
from mdmbus.services.connector.client import GatewayError
from mdmbus.services.rules.compliance import rows_past_deadline
from mdmbus.services.sweeper import PAST_DEADLINE_TOLERANCE_S
from mdmbus.services.transit_watch import TransitWatch
from mdmbus.settings import Settings
from mdmbus.stack.provision import topic_configs
from mdmbus.topics import TopicKind, all_topics, topic_name
from tests.conftest import wait_for
from tests.integration.harness import Workload

#: The topics whose leaders the test kills: where uploads and relay records travel.
KILL_KINDS = (TopicKind.UPLOAD, TopicKind.RELAY)
TENANTS_PER_REGION = 2
#: Bound of one request of the workload or the checks (a broker gone must not hang them).
REQUEST_TIMEOUT_S = 30.0
#: Records per upload request.
UPLOAD_BATCH = 20
#: Seconds after the kill by which every upload is accepted again (README, docs/compose.md):
#: the controller fences the dead node after broker.session.timeout.ms (30 s), clients see
#: the new leaders within MDMBUS_KAFKA_METADATA_MAX_AGE (5 s), and an upload caught in between
#: is answered within MDMBUS_GATEWAY_PRODUCE_TIMEOUT (10 s).
RECOVERY_BOUND_S = 60.0
#: A gateway's answers that tell the client to send the request again (503 with Retry-After).
RETRYABLE = {"503 kafka_unavailable", "503 store_unavailable", "503 store_busy"}


def event(name: str, **data: Any) -> None:
    print(f"{name} {json.dumps(data, sort_keys=True, default=str)}", flush=True)


async def answer(expected: str) -> None:
    """Waits for the test's line ``expected`` on stdin."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != expected:
        raise SystemExit(f"driver: expected {expected!r} on stdin, got {line!r}")


class Load:
    """What the workload sent and what the gateways answered."""

    def __init__(self) -> None:
        self.tenants: dict[str, str] = {}  # tenant -> region
        self.accepted: dict[str, str] = {}  # record id -> region, answered "accepted"
        self.relays: dict[str, str] = {}  # record id -> region, acknowledged by the brokers
        self.upload_errors: collections.Counter = collections.Counter()
        #: (monotonic time the answer came, outcome) of every upload request: "accepted" (2xx),
        #: a retryable refusal (RETRYABLE), or anything else (a hang, a reset, a 500...).
        self.outcomes: list[tuple[float, str]] = []
        #: The longest an upload request waited for its answer.
        self.slowest_upload_s = 0.0
        self.relay_retries = 0
        self.past_bound_max = 0


async def _uploads(work: Workload, load: Load, stop: asyncio.Event) -> None:
    """Each tenant's CM side uploads UPLOAD_BATCH records a round through its region's gateway,
    all tenants at once. Only what the gateway answers "accepted" counts; a refusal or an
    error is counted by reason."""
    clients = {t: work.client(t) for t in load.tenants}

    async def upload(tenant: str, region: str) -> None:
        lines = []
        for i in range(UPLOAD_BATCH):
            kind = f"U{i % 14 + 1}"
            record = work.make(kind, tenant)
            lines.append({"kind": kind, "record": to_json(work.contract.spec(kind).expanded,
                                                          record)})
        began = time.monotonic()
        try:
            body = await asyncio.wait_for(clients[tenant].upload(lines), REQUEST_TIMEOUT_S)
        except GatewayError as exc:
            outcome = f"{exc.status} {exc.code}"
        except Exception as exc:  # noqa: BLE001 -- a hang, a reset...: counted, then asserted
            outcome = type(exc).__name__
        else:
            outcome = "accepted"
        load.outcomes.append((time.monotonic(), outcome))
        load.slowest_upload_s = max(load.slowest_upload_s, time.monotonic() - began)
        if outcome != "accepted":
            load.upload_errors[outcome] += 1
            return
        for item in body["accepted"]:
            load.accepted[item["record_id"]] = region
        for item in body["refused"]:
            load.upload_errors[item["reason"]] += 1

    while not stop.is_set():
        await asyncio.gather(*(upload(t, r) for t, r in load.tenants.items()))
        await asyncio.sleep(0.2)


async def _relays(work: Workload, load: Load, producers: dict[str, AIOKafkaProducer],
                  stop: asyncio.Event) -> None:
    """Each region's device side relays records for its tenants (acks=all, idempotent),
    resending a record the brokers did not acknowledge until they do."""
    async def relay(tenant: str, region: str, n: int) -> None:
        kind = f"R{n % 6 + 1}"
        record = work.make(kind, tenant, device_id=work.factory.uuid())
        value = work.contract.codec.encode(kind, record)
        key = work.contract.key(kind, record)
        for _ in range(600):
            try:
                await asyncio.wait_for(producers[region].send_and_wait(
                    topic_name(TopicKind.RELAY, region), value=value, key=key),
                    REQUEST_TIMEOUT_S)
                break
            except (KafkaError, asyncio.TimeoutError):
                load.relay_retries += 1
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the device producer got no acknowledgement in 600 tries")
        load.relays[str(record["envelope"]["record_id"])] = region

    n = 0
    while not stop.is_set():
        await asyncio.gather(*(relay(t, r, n + i) for i, (t, r) in
                               enumerate(load.tenants.items())))
        n += len(load.tenants)
        await asyncio.sleep(0.2)


async def _progress(load: Load, stop: asyncio.Event) -> None:
    """A line every 10 s, so that the test's log shows where the workload is."""
    while not stop.is_set():
        await asyncio.sleep(10)
        event("PROGRESS", accepted=len(load.accepted), relays=len(load.relays),
              upload_errors=dict(load.upload_errors), relay_retries=load.relay_retries,
              past_bound_max=load.past_bound_max)


async def _watch_transit(watches: list[TransitWatch], load: Load, stop: asyncio.Event) -> None:
    """The most processed copies readable past their bound seen at any moment (reported)."""
    while not stop.is_set():
        for watch in watches:
            try:
                past = sum((await asyncio.wait_for(watch.measure(), REQUEST_TIMEOUT_S)
                            ).past_bound.values())
            except (KafkaError, asyncio.TimeoutError):
                continue  # a broker away: measured again next round
            load.past_bound_max = max(load.past_bound_max, past)
        await asyncio.sleep(1.0)


async def _partition_leaders(admin: AIOKafkaAdminClient, topics: list[str]
                             ) -> dict[TopicPartition, tuple[int, list[int], list[int]]]:
    """(leader, replicas, isr) of every partition of ``topics``."""
    out = {}
    for topic in await asyncio.wait_for(admin.describe_topics(topics), REQUEST_TIMEOUT_S):
        for p in topic["partitions"]:
            out[TopicPartition(topic["topic"], p["partition"])] = (
                p["leader"], list(p["replicas"]), list(p["isr"]))
    return out


async def _offsets(work: Workload, tps: list[TopicPartition]
                   ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Each partition's log start (first readable copy) and end offset."""
    from aiokafka import AIOKafkaConsumer
    from mdmbus.identities import ADMIN
    consumer = AIOKafkaConsumer(**kafka_options(work.settings, ADMIN))
    await consumer.start()
    try:
        return (await asyncio.wait_for(consumer.beginning_offsets(tps), REQUEST_TIMEOUT_S),
                await asyncio.wait_for(consumer.end_offsets(tps), REQUEST_TIMEOUT_S))
    finally:
        await consumer.stop()


async def _count(work: Workload, region: str, table: str, ids: list[str]) -> int:
    return await work.region_pool(region).fetchval(
        f"SELECT count(*) FROM {table} WHERE record_id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in ids])


async def _check(work: Workload, load: Load, led: list[TopicPartition],
                 ends_at_kill: dict[TopicPartition, int], watches: list[TransitWatch],
                 timeout_s: float) -> dict[str, Any]:
    by_region: dict[str, list[str]] = {r: [] for r in REGIONS}
    for rid, region in load.accepted.items():
        by_region[region].append(rid)

    async def uploads_stored() -> bool:
        return all([len(await work.stored(r, ids)) == len(ids) for r, ids in by_region.items()])
    await wait_for(uploads_stored, timeout_s, f"{len(load.accepted)} accepted uploads stored",
                   interval_s=1.0)
    for region, ids in by_region.items():
        rows = await work.region_pool(region).fetch(
            "SELECT record_id, count(*) AS n FROM records WHERE record_id = ANY($1::uuid[])"
            " GROUP BY record_id", [uuid.UUID(i) for i in ids])
        assert len(rows) == len(ids) and all(r["n"] == 1 for r in rows), \
            f"{region}: an accepted upload missing or stored twice"
        for other in REGIONS:
            if other != region:
                assert not await work.stored(other, ids, with_body=False), \
                    f"{region}'s uploads found in {other}"
    relay_ids = [uuid.UUID(i) for i in load.relays]

    async def relayed() -> bool:
        in_cm = await work.cm.fetchval(
            "SELECT count(*) FROM relayed_records WHERE record_id = ANY($1::uuid[])", relay_ids)
        if in_cm != len(relay_ids):
            return False
        # A deleted record keeps its row (for the audit), without its body.
        return all([not await work.stored(r, list(load.relays)) for r in REGIONS])
    await wait_for(relayed, timeout_s,
                   f"{len(relay_ids)} relay records in CM and gone from the cloud", interval_s=1.0)
    in_cm = await work.cm.fetch(
        "SELECT record_id, count(*) AS n FROM relayed_records WHERE record_id = ANY($1::uuid[])"
        " GROUP BY record_id", relay_ids)
    assert len(in_cm) == len(relay_ids) and all(r["n"] == 1 for r in in_cm)

    late = work.clock.now_dt() - dt.timedelta(seconds=PAST_DEADLINE_TOLERANCE_S * work.clock.speed)
    past_deadline = {r: sum((await rows_past_deadline(work.region_pool(r), late)).values())
                     for r in REGIONS}
    assert sum(past_deadline.values()) == 0, f"rows past their deadline: {past_deadline}"

    # Truncation goes on where the killed node led: on each such partition, now led by another
    # node, every copy written before the kill has been processed and truncated (the log start
    # is at least the end offset at the kill).
    async def truncated_on_new_leaders() -> bool:
        starts, _ = await _offsets(work, led)
        return all(starts[tp] >= ends_at_kill[tp] for tp in led)
    await wait_for(truncated_on_new_leaders, timeout_s,
                   "every copy the killed node's partitions held at the kill to be truncated",
                   interval_s=1.0)

    # Every processed copy unreadable within its bound, now that the cluster has settled.
    async def none_past_bound() -> bool:
        try:
            return sum([sum((await asyncio.wait_for(w.measure(), REQUEST_TIMEOUT_S)
                             ).past_bound.values()) for w in watches]) == 0
        except (KafkaError, asyncio.TimeoutError):  # a client still asking the dead node
            return False
    await wait_for(none_past_bound, 120, "no processed copy readable past its bound",
                   interval_s=1.0)
    return {"accepted_uploads": len(load.accepted), "relays": len(relay_ids),
            "upload_errors": dict(load.upload_errors), "relay_retries": load.relay_retries,
            "past_deadline": past_deadline, "past_bound_max_during_run": load.past_bound_max,
            "partitions_led_by_killed_node": len(led),
            "copies_on_them_at_kill_truncated": sum(ends_at_kill.values())}


async def _replication(settings: Settings, admin: AIOKafkaAdminClient) -> dict[str, Any]:
    """Every topic on three replicas, acknowledged writes on two of them at least, never an
    out-of-sync replica elected leader: what keeps an acknowledged record through a broker's
    loss (the producers' acks=all is mdmbus/connections.py's, tested in the unit tests)."""
    names = [name for name, _ in all_topics()]
    configs = await topic_configs(settings, names)
    wanted = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}
    wrong = {t: {k: c.get(k) for k in wanted} for t, c in configs.items()
             if any(c.get(k) != v for k, v in wanted.items())}
    assert set(configs) == set(names) and not wrong, f"topics not configured as {wanted}: {wrong}"
    replicas = collections.Counter(len(r) for _, r, _ in
                                   (await _partition_leaders(admin, names)).values())
    assert set(replicas) == {3}, f"partitions by replica count: {dict(replicas)}"
    return {"topics": len(names), "partitions": sum(replicas.values()), "replicas": 3, **wanted}


def _outage(load: Load, killed_at: float) -> dict[str, Any]:
    """What the uploads saw of the kill: every answer an acceptance or a retryable refusal,
    and the last refusal within RECOVERY_BOUND_S of the kill (every upload after it was
    accepted)."""
    unclear = collections.Counter(o for _, o in load.outcomes
                                  if o != "accepted" and o not in RETRYABLE)
    assert not unclear, f"uploads answered neither accepted nor 503 retryable: {dict(unclear)}"
    refused_after = [t - killed_at for t, o in load.outcomes if o != "accepted" and t >= killed_at]
    recovery_s = max(refused_after, default=0.0)
    assert recovery_s <= RECOVERY_BOUND_S, \
        f"uploads refused until {recovery_s:.1f} s after the kill (bound {RECOVERY_BOUND_S} s)"
    after = [o for t, o in load.outcomes if t >= killed_at]
    return {"uploads_after_kill": len(after),
            "uploads_refused_retryable_after_kill": len(refused_after),
            "uploads_refused_until_s": round(recovery_s, 1),
            "slowest_upload_s": round(load.slowest_upload_s, 1),
            "recovery_bound_s": RECOVERY_BOUND_S}


async def main() -> None:
    settings = Settings.from_env()
    clock = Clock.from_settings(settings)
    admin = AIOKafkaAdminClient(**admin_options(settings, request_timeout_ms=10_000))
    await admin.start()
    producers = {}
    for region in REGIONS:
        producers[region] = AIOKafkaProducer(**producer_options(
            settings, principal_of("devices", region), region, linger_ms=5))
        await producers[region].start()
    watches = [await TransitWatch(settings, r, Metrics(CollectorRegistry())).start() for r in REGIONS]
    load = Load()
    async with Workload(settings, clock, seed=uuid.uuid4().int,
                        tokens_dir=settings.state_dir / "cm" / "tokens") as work:
        for region in REGIONS:
            for _ in range(TENANTS_PER_REGION):
                tenant = await work.onboard(region)
                load.tenants[tenant] = region
                work.connect_cm(tenant)

        async def onboarded() -> bool:
            return all([await work.tenant_region(t) == r for t, r in load.tenants.items()])
        await wait_for(onboarded, 120, "tenants onboarded", interval_s=0.5)
        event("ONBOARDED", tenants=len(load.tenants))
        event("TOPICS", **await _replication(settings, admin))

        stop = asyncio.Event()
        tasks = [asyncio.create_task(_uploads(work, load, stop)),
                 asyncio.create_task(_relays(work, load, producers, stop)),
                 asyncio.create_task(_watch_transit(watches, load, stop)),
                 asyncio.create_task(_progress(load, stop))]
        try:
            async def some_stored() -> bool:
                ids = list(load.accepted)
                n = sum([await _count(work, r, "records", ids) for r in REGIONS])
                return n >= 100 and len(load.relays) >= 20
            await wait_for(some_stored, 300, "100 uploads stored before the kill", interval_s=0.5)
            topics = [topic_name(k, r) for k in KILL_KINDS for r in REGIONS]
            before = await _partition_leaders(admin, topics)
            leaders = collections.Counter(leader for leader, _, _ in before.values())
            victim = leaders.most_common(1)[0][0]
            led = [tp for tp, (leader, _, _) in before.items() if leader == victim]
            starts_at_kill, ends_at_kill = await _offsets(work, led)
            untruncated = sum(ends_at_kill[tp] - starts_at_kill[tp] for tp in led)
            event("LEADERS", leaders=dict(leaders), victim=victim, led=len(led),
                  written_to_led=sum(ends_at_kill.values()), readable_on_led=untruncated,
                  accepted=len(load.accepted), relays=len(load.relays))
            await answer("killed")
            killed_at = time.monotonic()

            async def moved() -> bool:
                try:
                    now = await _partition_leaders(admin, topics)
                except (KafkaError, asyncio.TimeoutError):
                    return False
                return all(now[tp][0] not in (victim, -1) for tp in led)
            await wait_for(moved, 120, "new leaders for the killed node's partitions",
                           interval_s=0.5)
            failover_s = time.monotonic() - killed_at
            event("FAILOVER", seconds=round(failover_s, 1))
            accepted_at_failover = len(load.accepted)

            # The workload goes on, on the new leaders, for a while.
            async def more_accepted() -> bool:
                return len(load.accepted) >= accepted_at_failover + 150
            await wait_for(more_accepted, 300, "150 more uploads accepted after the failover",
                           interval_s=0.5)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if task.exception() is not None:
                raise task.exception()
        outage = _outage(load, killed_at)
        summary = await _check(work, load, led, ends_at_kill, watches, timeout_s=240)
        event("CHECKED", failover_s=round(failover_s, 1), **outage, **summary)

        await answer("restarted")
        everyone = [name for name, _ in all_topics()]

        async def back_in_every_isr() -> bool:
            try:
                now = await _partition_leaders(admin, everyone)
            except (KafkaError, asyncio.TimeoutError):
                return False
            return all(victim in isr and len(isr) == len(replicas)
                       for _, replicas, isr in now.values())
        began = time.monotonic()
        await wait_for(back_in_every_isr, 180, f"node {victim} back in every ISR",
                       interval_s=1.0)
        final = await _partition_leaders(admin, everyone)
        event("ISR", partitions=len(final), seconds=round(time.monotonic() - began, 1),
              replicas=sorted({len(r) for _, r, _ in final.values()}))
    # Every check is done: the clients are closed within a bound, so that the driver exits
    # and the test goes on to the tear-down.
    for closing in [*(w.close() for w in watches), *(p.stop() for p in producers.values()),
                    admin.close()]:
        try:
            await asyncio.wait_for(closing, REQUEST_TIMEOUT_S)
        except (KafkaError, asyncio.TimeoutError) as exc:
            print(f"driver: a client did not close ({exc!r})", file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
