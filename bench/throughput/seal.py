"""Sealing's CPU per record measured in this process, on the throughput run's own rows.

Two drains (bodies sealed, bodies in clear) differ by the seal's few microseconds a record,
but each drain's worker CPU per record moves by as much from one drain to the next on a shared
machine, so their difference cannot resolve it. This times the seal directly, as the worker
runs it (services/stores/sealing.sealed_record_tuples on MDMBUS_BATCH_SIZE batches of
StoreRows shaped as streams/records.py builds them: record id as text, tenant as a UUID)
against the same rows' tuples in clear, in this process's CPU time, best of several
interleaved rounds; the report sets it against the sealed drain's measured worker CPU a record
of the same run.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from mdmbus.crypto.keyring import FileKeyring
from mdmbus.services.stores.records import StoreRow
from mdmbus.services.stores.sealing import sealed_record_tuples

__all__ = ["SealCost", "store_rows", "seal_cost"]


@dataclass(frozen=True)
class SealCost:
    """CPU microseconds a record, best round: the rows' tuples in clear and sealed."""

    records: int
    batch: int
    rounds: int
    clear_us: float
    sealed_us: float

    @property
    def seal_us(self) -> float:
        """What sealing adds a record: the difference."""
        return self.sealed_us - self.clear_us


def store_rows(rows: Sequence[tuple]) -> list[StoreRow]:
    """The load's rows (bench.throughput.produce.COPY_COLUMNS) as the pipeline hands them to
    the store: ids as canonical text, the tenant as a uuid.UUID (streams/records.py)."""
    return [StoreRow(str(r[0]), r[1], r[2], r[3], None if r[4] is None else str(r[4]),
                     None if r[5] is None else str(r[5]), r[6], r[8], r[9], r[10])
            for r in rows]


def seal_cost(rows: Sequence[StoreRow], batch: int, rounds: int) -> SealCost:
    """Times the rows' tuples in clear and sealed (a fresh temporary keyring's current KEK:
    wrapping costs the same under any KEK), each round both, in turn."""
    batches = [rows[i:i + batch] for i in range(0, len(rows), batch)]
    with tempfile.TemporaryDirectory() as root:
        kek = FileKeyring(root, "eu").current()

        def clear() -> None:
            for b in batches:
                [r.as_tuple() for r in b]

        def sealed() -> None:
            for b in batches:
                sealed_record_tuples(b, kek)

        best = {clear: float("inf"), sealed: float("inf")}
        for _ in range(rounds):
            for fn in (clear, sealed):
                best[fn] = min(best[fn], _cpu(fn))
    n = max(1, len(rows))
    return SealCost(len(rows), batch, rounds, best[clear] / n * 1e6, best[sealed] / n * 1e6)


def _cpu(fn: Callable[[], object]) -> float:
    """This process's CPU seconds for one call (the rest of the machine's load does not count;
    its effect on caches and frequency does)."""
    start = time.process_time()
    fn()
    return time.process_time() - start
