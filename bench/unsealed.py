"""A pipeline worker with record bodies stored in clear, for measuring what sealing costs.

    python -m bench.unsealed -- PYTHON -m mdmbus process pipeline --region R

runs the command's module in this process after replacing, in this process only, the region
store's sealing step (``mdmbus.services.stores.records.sealed_record_tuples``) with one that
leaves each body as it is and its wrapped key and KEK id NULL: the shape of a row stored
before sealing, which every reader of the store accepts. Benchmarks only: mdmbus itself has no
setting that stores a body in clear, and this is reachable only through this module, which is
not part of the package (``bench.throughput --sealing on,off`` starts workers with it, through
Launcher.start(prefix=...), to measure sealing's CPU per record in the same run).
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any, Sequence

__all__ = ["prefix", "main"]


def prefix() -> tuple[str, ...]:
    """Launcher.start(prefix=...) for a pipeline worker whose record bodies are not sealed."""
    return (sys.executable, "-m", "bench.unsealed", "--")


def _in_clear(rows: Sequence[Any], kek: Any) -> list[tuple]:
    """The rows as the store takes them, bodies in clear, no wrapped key, no KEK id."""
    return [(*r.as_tuple(), None, None) for r in rows]


def main() -> None:
    argv = sys.argv[1:]
    if len(argv) < 4 or argv[0] != "--" or argv[2] != "-m":
        raise SystemExit("usage: python -m bench.unsealed -- PYTHON -m MODULE [ARGS...]  "
                         "(benchmarks only: started by bench.throughput --sealing off)")
    module, args = argv[3], argv[4:]
    from mdmbus.services.stores import records
    records.sealed_record_tuples = _in_clear  # type: ignore[assignment]
    os.write(2, b"bench.unsealed: record bodies are stored IN CLEAR (benchmark only)\n")
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
