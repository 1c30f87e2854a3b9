"""What sealing bodies costs the pipeline worker per record (not a test).

    python -m bench.crypto_cost [--records N] [--rounds R]

Needs no stack: it runs in this process only, on a keyring in a temporary directory.

Times, on the same records in the same run (best round): the rows' tuples as the store write
takes them without sealing, the same with every body sealed (services/stores/sealing.py: a
fresh AES-256-GCM data key per body, wrapped under the KEK), opening a body (the gateway's
side), re-wrapping one data key (the rotation job's), and for scale the worker's own decode +
validate of the same records, all in this process's CPU time: what each piece costs, and of
the seal, what cryptography's own calls cost with every argument made in advance (the part no
Python around them can remove). The
target (the seal under 10 % of the pipeline worker's CPU a record) is judged by
``bench.throughput``, which times the seal in the workers as they drain and sets it against
their CPU a record in the same run; this benchmark has no worker to compare with.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
import uuid
from typing import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.codec_bench import KIND, _records
from bench.support import parser as make_parser, run_cli
from mdmbus.contract import default_registry, validate
from mdmbus.crypto.envelope import DEK_BYTES, SEAL_RANDOM, record_aad, rewrap
from mdmbus.crypto.keyring import NONCE_BYTES, FileKeyring
from mdmbus.services.stores.records import StoreRow
from mdmbus.services.stores.sealing import open_record, sealed_record_tuples

__all__ = ["main"]


def _best_us(fn: Callable[[], object], n: int, rounds: int) -> float:
    """CPU microseconds a record in the fastest round (this process's CPU time: the rest of
    the machine's load does not count, its effect on caches does)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best / n * 1e6


async def run(args: argparse.Namespace) -> None:
    registry = default_registry()
    records = _records(args.records)
    messages = [registry.codec.encode(KIND, r) for r in records]
    tenants = [uuid.uuid4() for _ in range(20)]  # a batch holds few tenants
    now = dt.datetime.now(dt.timezone.utc)
    rows = [StoreRow(r["envelope"]["record_id"], tenants[i % len(tenants)], KIND, "upload",
                     r["envelope"]["device_id"], None, now, None, None, m)
            for i, (r, m) in enumerate(zip(records, messages))]
    batch = 500
    with tempfile.TemporaryDirectory() as root:
        ring = FileKeyring(root, "eu")
        kek = ring.current()

        def plain() -> None:
            for i in range(0, len(rows), batch):
                [r.as_tuple() for r in rows[i:i + batch]]

        def sealed() -> None:
            for i in range(0, len(rows), batch):
                sealed_record_tuples(rows[i:i + batch], kek)

        # The library's share: the three calls every body costs (a new AESGCM for its data
        # key, the body's encryption, the data key's wrap under the KEK), with every argument
        # made in advance, so no Python of ours but the loop is timed.
        rnd = os.urandom(SEAL_RANDOM * len(rows))
        body_nonce_end = DEK_BYTES + NONCE_BYTES
        prepared = [(rnd[i:i + DEK_BYTES], rnd[i + DEK_BYTES:i + body_nonce_end],
                     rnd[i + body_nonce_end:i + SEAL_RANDOM],
                     record_aad(r.tenant_id, r.record_id), r.body)
                    for i, r in zip(range(0, len(rnd), SEAL_RANDOM), rows)]

        def calls() -> None:
            wrap = kek.wrap
            for dek, nonce, wrap_nonce, aad, body in prepared:
                AESGCM(dek).encrypt(nonce, body, aad)
                wrap(dek, aad, wrap_nonce)

        stored = [dict(zip(("record_id", "tenant_id", "body", "wrapped_key", "kek_id"),
                           (uuid.UUID(t[0]), t[1], t[9], t[10], t[11])))
                  for t in sealed_record_tuples(rows, kek)]

        def opened() -> None:
            for row in stored:
                open_record(row, ring.kek)

        ring.rotate()
        new = ring.current()

        def rewrapped() -> None:
            for row in stored:
                rewrap(kek, new, record_aad(row["tenant_id"], row["record_id"]),
                       row["wrapped_key"])

        def prepare() -> None:
            decode = registry.codec.decode
            for m in messages:
                validate(KIND, decode(m).record, registry)

        n, k = args.records, args.rounds
        # interleaved, so each sees the same machine conditions
        plain_us, sealed_us = _best_us(plain, n, k), _best_us(sealed, n, k)
        calls_us = _best_us(calls, n, k)
        open_us, rewrap_us, prepare_us = (_best_us(opened, n, k), _best_us(rewrapped, n, k),
                                          _best_us(prepare, n, k))
    seal_us = sealed_us - plain_us
    size = sum(map(len, messages)) / len(messages)
    print(f"{KIND} records, {size:.0f} bytes each, {n} records in batches of {batch}, "
          f"{k} rounds (best round)")
    print(f"{'rows as the store takes them, in clear':48}{plain_us:8.2f} us/record")
    print(f"{'the same, every body sealed':48}{sealed_us:8.2f} us/record")
    print(f"{'seal (the difference)':48}{seal_us:8.2f} us/record")
    print(f"{'  of which the three cryptography calls alone':48}{calls_us:8.2f} us/record "
          f"({calls_us / seal_us * 100:.0f} %)")
    print(f"{'open one body (gateway)':48}{open_us:8.2f} us/record")
    print(f"{'re-wrap one data key (rotation job)':48}{rewrap_us:8.2f} us/record")
    print(f"{'decode + validate, same records (worker)':48}{prepare_us:8.2f} us/record")
    print(f"seal / decode + validate in this run: {seal_us / prepare_us * 100:.1f} % "
          f"(the target, seal < 10 % of the worker's CPU a record: bench.throughput)")


def main() -> None:
    parser = make_parser("bench.crypto_cost", __doc__)
    parser.add_argument("--n", "--records", dest="records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    run_cli(run, parser)


if __name__ == "__main__":
    main()
