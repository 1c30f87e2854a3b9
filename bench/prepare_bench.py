"""The pipeline's CPU-only step, decode + validate (``BatchTemplate.prepare``), per record, on
the throughput benchmark's record mix, in one process (no stack), piece by piece.

    python -m bench.prepare_bench [--n 20000] [--rounds 7]

Prints CPU microseconds a record (best round) of: the codec's decode alone; the field checks
of decoded records, generated per kind (``mdmbus.contract.generated``, as the pipeline runs
them) and, in the same run on the same records, by the closure walk they replaced
(``mdmbus.contract.content.compile_decoded_check``); ``validate_decoded`` whole (field checks
and the relations between fields); the message verdict (``check_message``: decode, validate, topic, key); and the whole of
``classify_all`` with its per-batch metrics, on MDMBUS_BATCH_SIZE batches; and, of the
write step, the end-to-end latency histogram observed per record and per batch.
"""

from __future__ import annotations

import argparse
import random
import time
from types import SimpleNamespace
from typing import Callable

from prometheus_client import CollectorRegistry

from mdmbus.contract import default_registry
from mdmbus.contract.content import compile_decoded_check
from mdmbus.contract.rules import _check, validate_decoded
from mdmbus.contract.verdict import check_message
from mdmbus.metrics import Metrics, observe_many
from mdmbus.settings import Settings
from mdmbus.streams.classify import classify_all
from bench.support import RecordMix, Tenants, parser as make_parser, run_cli, table, uuid_from

__all__ = ["main"]


def _best_cpu_us(fn: Callable[[], object], n: int, rounds: int) -> float:
    """CPU microseconds a record of the fastest round (the least disturbed by neighbours)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return 1e6 * best / n


async def run(args: argparse.Namespace) -> None:
    registry = default_registry()
    rng = random.Random(args.seed)
    ids = [uuid_from(rng) for _ in range(300)]
    mix = RecordMix(Tenants(ids, {t: "eu" for t in ids}), seed=args.seed, registry=registry)
    encoded = [mix.encode(*mix.make(1_714_564_800_000 + i)) for i in range(args.n)]
    batch = Settings.from_env().batch_size
    messages = [SimpleNamespace(topic=topic, partition=0, offset=i, key=key, value=value,
                                headers=()) for i, (topic, key, value) in enumerate(encoded)]
    codec = registry.codec
    decoded = [codec.decode(value) for _, _, value in encoded]
    walked = {kind: compile_decoded_check(registry.spec(kind).expanded, _check)
              for kind in {k for k, _ in decoded}}
    metrics = Metrics(CollectorRegistry())

    def decode() -> None:
        for _, _, value in encoded:
            codec.decode(value)

    def generated() -> None:
        for kind, record in decoded:
            validate_decoded(kind, record, registry)

    for kind in walked:  # the generated checks, as validate_decoded made them
        validate_decoded(kind, decoded[[k for k, _ in decoded].index(kind)][1], registry)
    generated_only = {kind: registry.decoded_checks[kind][0] for kind in walked}

    def fields(checks: dict) -> Callable[[], None]:
        def run_checks() -> None:  # the field checks only (the relations are the same)
            for kind, record in decoded:
                check = checks[kind]
                if check is not None:
                    check(record)
        return run_checks

    def verdicts() -> None:
        for topic, key, value in encoded:
            check_message(registry, value, key, topic)

    def classify() -> None:
        for i in range(0, len(messages), batch):
            classify_all(registry, metrics, messages[i:i + batch])

    latencies = [rng.expovariate(20.0) for _ in range(args.n)]
    histogram = metrics.end_to_end_seconds

    def observe_each() -> None:
        child = histogram.labels("inventory")
        for seconds in latencies:
            child.observe(seconds)

    def observe_batches() -> None:
        child = histogram.labels("inventory")
        for i in range(0, args.n, batch):
            observe_many(child, latencies[i:i + batch])

    rows = [(name, _best_cpu_us(fn, args.n, args.rounds)) for name, fn in (
        ("decode (mdmbus.codec)", decode),
        ("field checks: generated per kind (mdmbus.contract.generated)",
         fields(generated_only)),
        ("field checks: the closure walk (compile_decoded_check), same records", fields(walked)),
        ("validate_decoded: generated field checks + relations between fields", generated),
        ("verdict: decode + validate + topic + key (check_message)", verdicts),
        (f"classify_all in batches of {batch} (prepare's whole step, metrics per batch)",
         classify),
        ("(process) end-to-end latency histogram, observed per record", observe_each),
        ("(process) the same, observed per batch (mdmbus.metrics.observe_many)",
         observe_batches),
    )]
    table(["step", "CPU us/record"], rows,
          title=f"{args.n:,} upload records of the throughput mix "
                f"({sum(len(v) for _, _, v in encoded) / args.n:.0f} bytes each), best of "
                f"{args.rounds} rounds")


def main() -> None:
    parser = make_parser("bench.prepare_bench", __doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    run_cli(run, parser)


if __name__ == "__main__":
    main()
