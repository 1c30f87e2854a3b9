"""A pipeline worker with the CPU levers of the performance work switched off, to measure what
they bought in the same run as the worker that has them.

    python -m bench.levers_off -- PYTHON -m mdmbus process pipeline --region R

runs the command's module after replacing, in this process only, the per-kind generated
validator of decoded records (mdmbus.contract.generated) with the closure walk it replaced
(mdmbus.contract.content.compile_decoded_check, same verdicts), and the per-batch update of
the end-to-end latency histogram (mdmbus.metrics.observe_many) with one observation a record,
and the plain store write (services/stores/records.py) with the full INSERT for every batch.
The third lever, writes in flight, is a setting (MDMBUS_WRITES_IN_FLIGHT=1 turns it off).
Benchmarks only (bench.throughput --levers on,off).
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any, Iterable

__all__ = ["prefix", "main"]


def prefix() -> tuple[str, ...]:
    return (sys.executable, "-m", "bench.levers_off", "--")


def _observe_each(child: Any, amounts: Iterable[float]) -> None:
    for amount in amounts:
        child.observe(amount)


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) < 4 or argv[0] != "--" or argv[2] != "-m":
        raise SystemExit("usage: python -m bench.levers_off -- PYTHON -m MODULE [ARGS...]")
    module, args = argv[3], argv[4:]
    from mdmbus.contract import rules
    from mdmbus.contract.content import compile_decoded_check
    from mdmbus.services.stores import records as store
    from mdmbus.streams import records

    def closures(schema: Any, fallback: Any, name: str = "check") -> Any:
        return compile_decoded_check(schema, fallback)

    rules.generate_decoded_check = closures  # type: ignore[assignment]
    records.observe_many = _observe_each  # type: ignore[assignment]
    store.plain = lambda rows: False  # type: ignore[assignment]  # every batch: the full INSERT
    os.write(2, b"bench.levers_off: closure-walk validator, per-record histogram, full INSERT "
             b"(benchmark)\n")
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
