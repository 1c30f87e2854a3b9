"""The KEK rotation job of a region (docs/design.md section 9), run by the region's sweeper.

When the current KEK has been current for MDMBUS_KEK_ROTATION_HOURS of the shared clock (and
at least MDMBUS_KEK_ROTATION_MIN_INTERVAL real seconds), the keyring's prepared next KEK becomes
current and a new next one is prepared. Once every process has had time to pick the new KEK up
(:data:`PICKUP_S`), every live data key still wrapped under a retired KEK is re-wrapped under the
current one -- reading the wrapped keys and the rows' ids, never a body -- and when none is left,
checked again while the tables are locked against writers (SHARE), the retired KEK is
destroyed. From then on every copy of a row deleted before (WAL, heap pages, TOAST, backups,
replicas) holds a data key wrapped under a KEK that exists nowhere.

The bound for "unreadable on disk and in backups" is therefore the rotation period plus the
re-wrap time; the gauge ``mdmbus_rows_past_kek_retirement`` (rows still wrapped under a KEK
retired longer than MDMBUS_KEK_REWRAP_ALLOWANCE real seconds ago, or destroyed) must read 0.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Sequence

import asyncpg

from mdmbus.clock import Clock
from mdmbus.crypto.envelope import letter_aad, record_aad, rewrap
from mdmbus.crypto.keyring import REFRESH_S, FileKeyring, KeyringStatus, keyrings
from mdmbus.metrics import Metrics
from mdmbus.settings import Settings
from mdmbus.services.stores.pools import Connection

__all__ = ["Rotation", "RotationReport", "PICKUP_S", "rows_past_retirement", "rows_unsealed"]

log = logging.getLogger("mdmbus.rotation")

#: Real seconds after a rotation before the retired KEK's data keys are re-wrapped and it is
#: destroyed: every process re-reads its keyring within REFRESH_S, and a store write started
#: before that has long committed.
PICKUP_S = 10 * REFRESH_S + 3.0
#: Rows re-wrapped per statement.
BATCH = 1000


@dataclass
class RotationReport:
    rotated: bool = False
    rewrapped: int = 0
    destroyed: tuple[str, ...] = ()


_TABLES = {
    # table: (id columns read for the associated data, key columns to update by)
    "records": ("tenant_id, record_id", "has_body"),
    # A dead letter's error text is sealed with or without a body.
    "dead_letters": ("source_topic, source_partition, source_offset, tenant_id, record_id",
                     "true"),
}


def _aad(table: str, row: asyncpg.Record) -> bytes:
    if table == "records":
        return record_aad(row["tenant_id"], row["record_id"])
    return letter_aad(row["source_topic"], row["source_partition"], row["source_offset"],
                      row["tenant_id"], row["record_id"])


async def _rewrap_batch(conn: Connection, table: str, ring: FileKeyring, old: str,
                        limit: int) -> int:
    """Re-wraps up to ``limit`` data keys of ``table`` wrapped under ``old``; how many."""
    ids, live = _TABLES[table]
    rows = await conn.fetch(f"SELECT {ids}, wrapped_key FROM {table}"
                            f" WHERE {live} AND kek_id = $1 ORDER BY {ids} LIMIT $2", old, limit)
    if not rows:
        return 0
    old_kek, new_kek = ring.kek(old), ring.current()
    wrapped = [rewrap(old_kek, new_kek, _aad(table, r), r["wrapped_key"]) for r in rows]
    # Rows deleted or acknowledged meanwhile no longer match: nothing to re-wrap there.
    if table == "records":
        await conn.execute(
            "UPDATE records r SET wrapped_key = v.w, kek_id = $2"
            " FROM unnest($3::uuid[], $4::uuid[], $5::bytea[]) AS v(t, id, w)"
            " WHERE r.tenant_id = v.t AND r.record_id = v.id AND r.kek_id = $1",
            old, new_kek.id, [r["tenant_id"] for r in rows], [r["record_id"] for r in rows],
            wrapped)
    else:
        await conn.execute(
            "UPDATE dead_letters d SET wrapped_key = v.w, kek_id = $2"
            " FROM unnest($3::text[], $4::int[], $5::bigint[], $6::bytea[]) AS v(t, p, o, w)"
            " WHERE (d.source_topic, d.source_partition, d.source_offset) = (v.t, v.p, v.o)"
            " AND d.kek_id = $1",
            old, new_kek.id, [r["source_topic"] for r in rows],
            [r["source_partition"] for r in rows], [r["source_offset"] for r in rows], wrapped)
    return len(rows)


async def rows_past_retirement(conn: Connection | asyncpg.Pool, status: KeyringStatus,
                               allowance_s: float, now: float | None = None) -> int:
    """Live rows (records with a body, every dead letter) wrapped under a KEK retired
    more than ``allowance_s`` real seconds ago or destroyed: what the gauge shows."""
    now = time.time() if now is None else now
    late = [k for k, at in status.retired.items() if now - at > allowance_s]
    late += list(status.destroyed)
    if not late:
        return 0
    return await conn.fetchval(
        "SELECT (SELECT count(*) FROM records WHERE has_body AND kek_id = ANY($1::text[]))"
        " + (SELECT count(*) FROM dead_letters WHERE kek_id = ANY($1::text[]))",
        late)


async def rows_unsealed(conn: Connection | asyncpg.Pool) -> int:
    """Live rows stored before sealing (no KEK id): `mdmbus crypto upgrade` seals them."""
    return await conn.fetchval(
        "SELECT (SELECT count(*) FROM records WHERE has_body AND kek_id IS NULL)"
        " + (SELECT count(*) FROM dead_letters WHERE kek_id IS NULL)")


class Rotation:
    """Rotates, re-wraps and destroys the KEKs of the regions a sweeper serves."""

    def __init__(self, settings: Settings, pools: dict[str, asyncpg.Pool], metrics: Metrics,
                 clock: Clock | None = None) -> None:
        self.settings = settings
        self.pools = pools
        self.metrics = metrics
        self.clock = clock or Clock.from_settings(settings)
        keyrings.configure(settings.keyring_path)
        for region in pools:  # every series reads 0 before its first event
            for series in (metrics.kek_rotations, metrics.kek_destroyed, metrics.kek_rewrapped,
                           metrics.rows_past_kek_retirement, metrics.rows_unsealed):
                series.labels(region)

    @property
    def regions(self) -> Sequence[str]:
        return tuple(self.pools)

    def due(self, status: KeyringStatus, now: float | None = None) -> bool:
        real = (time.time() if now is None else now) - status.current_since
        return (real * self.clock.speed >= self.settings.kek_rotation_hours * 3600
                and real >= self.settings.kek_rotation_min_interval_s)

    async def step(self, region: str) -> RotationReport:
        """Rotates when due, re-wraps what a retired KEK still wraps, destroys it when it
        wraps nothing live."""
        ring = keyrings.get(region)
        report = RotationReport()
        status = ring.status()
        if self.due(status):
            status = ring.rotate()
            report.rotated = True
            self.metrics.kek_rotations.labels(region).inc()
            log.info("%s: KEK %s is current; %s retired", region, status.current,
                     ", ".join(status.retired))
        destroyed = []
        for old, retired_at in sorted(status.retired.items(), key=lambda kv: kv[1]):
            if time.time() - retired_at < PICKUP_S:
                continue
            report.rewrapped += await self._rewrap_all(region, ring, old)
            if await self._destroy_when_unused(region, ring, old):
                destroyed.append(old)
        report.destroyed = tuple(destroyed)
        return report

    async def _rewrap_all(self, region: str, ring: FileKeyring, old: str) -> int:
        total = 0
        async with self.pools[region].acquire() as conn:
            for table in _TABLES:
                while True:
                    async with conn.transaction():
                        n = await _rewrap_batch(conn, table, ring, old, BATCH)
                    total += n
                    self.metrics.kek_rewrapped.labels(region).inc(n)
                    if n < BATCH:
                        break
        return total

    async def _destroy_when_unused(self, region: str, ring: FileKeyring, old: str) -> bool:
        """Destroys ``old`` if no live row is wrapped under it, checked (and any stragglers
        re-wrapped) while writers of both tables wait (LOCK ... IN SHARE MODE). The KEK is
        destroyed only once those re-wraps are committed."""
        async with self.pools[region].acquire() as conn:
            async with conn.transaction():
                await conn.execute("LOCK TABLE records, dead_letters IN SHARE MODE")
                for table in _TABLES:
                    while await _rewrap_batch(conn, table, ring, old, BATCH):
                        pass
            ring.destroy(old)
        self.metrics.kek_destroyed.labels(region).inc()
        log.info("%s: KEK %s destroyed", region, old)
        return True

    async def measure(self, region: str) -> int:
        ring = keyrings.get(region)
        status = ring.status()
        pool = self.pools[region]
        late = await rows_past_retirement(pool, status, self.settings.kek_rewrap_allowance_s)
        self.metrics.rows_past_kek_retirement.labels(region).set(late)
        self.metrics.rows_unsealed.labels(region).set(await rows_unsealed(pool))
        self.metrics.kek_age_seconds.labels(region).set(time.time() - status.current_since)
        return late
