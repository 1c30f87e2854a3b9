"""`mdmbus crypto upgrade|status`: sealing the bodies a store held before they were sealed, and
what each region's keyring and store say about cryptographic erasure (docs/design.md
section 9).

The upgrade seals, in batches of one transaction each, every live row without a KEK id
(``kek_id IS NULL``: stored by an mdmbus that did not seal; a record with a body, any dead
letter, whose error text is sealed too), under the region's current KEK.
It may be stopped at any time and run again: it takes up where it stopped, since a sealed row
has a KEK id. It runs beside the processes (the rows it seals are locked with SKIP LOCKED, so
a row a process holds is sealed by a later batch). Copies of the clear rows made before the
upgrade (old heap pages, WAL, backups) are not reached by it: ``--rewrite`` rewrites the two
tables into new files afterwards (VACUUM FULL: it locks them while it runs), and backups taken
before must be destroyed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Sequence

import asyncpg

from mdmbus.connections import pg_connect
from mdmbus.crypto.envelope import letter_aad, record_aad, seal_batch, seal_letters
from mdmbus.crypto.keyring import keyrings
from mdmbus.regions import region_database
from mdmbus.settings import Settings

__all__ = ["upgrade", "status", "seal_clear_rows"]

_SELECT = {
    "records": "SELECT tenant_id, record_id, body FROM records WHERE has_body AND kek_id IS NULL"
               " ORDER BY tenant_id, record_id LIMIT $1 FOR UPDATE SKIP LOCKED",
    "dead_letters": "SELECT source_topic, source_partition, source_offset, tenant_id, record_id,"
                    " body, error FROM dead_letters WHERE kek_id IS NULL"
                    " ORDER BY source_topic, source_partition, source_offset"
                    " LIMIT $1 FOR UPDATE SKIP LOCKED",
}
_COUNT = {
    "records": "SELECT count(*) FROM records WHERE has_body AND kek_id IS NULL",
    "dead_letters": "SELECT count(*) FROM dead_letters WHERE kek_id IS NULL",
}


async def seal_clear_rows(conn: asyncpg.Connection, region: str, table: str, batch: int,
                          progress: Callable[[int, int], None] = lambda done, total: None) -> int:
    """Seals every clear row of ``table`` in batches; reports (done, total) after each."""
    total = await conn.fetchval(_COUNT[table])
    done = 0
    ring = keyrings.get(region)
    while True:
        async with conn.transaction():
            rows = await conn.fetch(_SELECT[table], batch)
            if not rows:
                break
            kek = ring.current()
            if table == "records":
                sealed = seal_batch(kek, [(record_aad(r["tenant_id"], r["record_id"]), r["body"])
                                          for r in rows])
                await conn.execute(
                    "UPDATE records r SET body = v.b, wrapped_key = v.w, kek_id = $1"
                    " FROM unnest($2::uuid[], $3::uuid[], $4::bytea[], $5::bytea[])"
                    "   AS v(t, id, b, w)"
                    " WHERE r.tenant_id = v.t AND r.record_id = v.id AND r.kek_id IS NULL",
                    kek.id, [r["tenant_id"] for r in rows], [r["record_id"] for r in rows],
                    [b for b, _ in sealed], [w for _, w in sealed])
            else:
                sealed_letters = seal_letters(kek, [(letter_aad(r["source_topic"], r["source_partition"],
                                                        r["source_offset"], r["tenant_id"],
                                                        r["record_id"]), r["body"],
                                             r["error"].encode("utf-8")) for r in rows])
                await conn.execute(
                    "UPDATE dead_letters d SET body = v.b, error = '', error_sealed = v.e,"
                    " wrapped_key = v.w, kek_id = $1"
                    " FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bytea[], $6::bytea[],"
                    "   $7::bytea[]) AS v(t, p, o, b, e, w)"
                    " WHERE (d.source_topic, d.source_partition, d.source_offset)"
                    "   = (v.t, v.p, v.o) AND d.kek_id IS NULL",
                    kek.id, [r["source_topic"] for r in rows],
                    [r["source_partition"] for r in rows], [r["source_offset"] for r in rows],
                    [b for b, _, _ in sealed_letters], [e for _, e, _ in sealed_letters],
                    [w for _, _, w in sealed_letters])
        done += len(rows)
        progress(done, max(total, done))
    return done


def upgrade(settings: Settings, regions: Sequence[str], batch: int, rewrite: bool) -> int:
    keyrings.configure(settings.keyring_path)

    async def run() -> None:
        for region in regions:
            conn = await pg_connect(settings, region_database(region))
            try:
                for table in ("records", "dead_letters"):
                    started = time.monotonic()

                    def progress(done: int, total: int, region: str = region,
                                 table: str = table, started: float = started) -> None:
                        print(f"{region} {table}: {done} of {total} sealed "
                              f"({time.monotonic() - started:.1f} s)", flush=True)

                    n = await seal_clear_rows(conn, region, table, batch, progress)
                    if not n:
                        print(f"{region} {table}: nothing in clear", flush=True)
                if rewrite:
                    print(f"{region}: rewriting records and dead_letters into new files "
                          f"(VACUUM FULL)", flush=True)
                    await conn.execute("VACUUM FULL records, dead_letters")
                    await conn.execute("CHECKPOINT")
            finally:
                await conn.close()
    asyncio.run(run())
    return 0


def status(settings: Settings, regions: Sequence[str]) -> int:
    """Per region: the KEK ids (never a key), rotations, and the rows the gauges count."""
    from mdmbus.services.rotation import rows_past_retirement, rows_unsealed
    keyrings.configure(settings.keyring_path)

    async def run() -> int:
        bad = 0
        for region in regions:
            s = keyrings.get(region).status()
            conn = await pg_connect(settings, region_database(region))
            try:
                late = await rows_past_retirement(conn, s, settings.kek_rewrap_allowance_s)
                clear = await rows_unsealed(conn)
            finally:
                await conn.close()
            bad += late + clear
            age = time.time() - s.current_since
            print(f"{region}: KEK {s.current} current for {age:.0f} s (real), next {s.next}; "
                  f"{s.rotations} rotations; retired {len(s.retired)}, destroyed "
                  f"{len(s.destroyed)}; rows past KEK retirement {late}; rows in clear {clear}")
        return 0 if bad == 0 else 1
    return asyncio.run(run())
