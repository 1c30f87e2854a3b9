"""Where a pipeline worker's CPU goes.

- ``prefix(path)``: what Launcher.start(prefix=...) needs to run a worker under cProfile:

      python -m bench.throughput.profile OUT -- python -m mdmbus process pipeline --region R

  runs the command's module (``-m mdmbus``) in this process under cProfile and writes the
  statistics to OUT when it exits (the worker exits by SystemExit after SIGTERM, so the
  launcher's graceful stop writes them). cProfile sees the main thread: the event loop that
  runs the record runtime (fetch, prepare, process, commit, truncation). It slows pure Python
  down more than C code (fastavro, asyncpg's protocol): read shares, not absolute times.
- ``summarize(path)``: the main thread's time by component and the functions with the most
  own time.
- ``stages(...)``: the pipeline's own batch steps timed one by one in this process, with the
  pipeline's public objects (PipelineContext, BatchTemplate, the processors of
  mdmbus.streams.runtime.RECORD_TOPICS): ``prepare`` (decode and validate every message:
  CPU only) and ``process`` (route by the directory, the idempotent write, metrics), batch by
  batch; with the PostgreSQL backends' CPU meanwhile.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import runpy
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Awaitable, Callable

from mdmbus.services.stores.pools import Stores
from mdmbus.settings import Settings
from bench.support import CpuMeter, postgres_pid, table
from bench.throughput.produce import Load

__all__ = ["prefix", "summarize", "stages", "main"]


def prefix(out: Path) -> tuple[str, ...]:
    """Launcher.start(prefix=...) for a process run under cProfile, statistics to ``out``."""
    return (sys.executable, "-m", "bench.throughput.profile", str(out), "--")


def main() -> None:
    """``OUT -- PYTHON -m MODULE ARGS...``: runs MODULE under cProfile, writes OUT at exit."""
    argv = sys.argv[1:]
    if len(argv) < 5 or argv[1] != "--" or argv[3] != "-m":
        raise SystemExit("usage: python -m bench.throughput.profile OUT -- PYTHON -m MODULE "
                         "[ARGS...]  (run by bench.throughput --profile through the launcher)")
    out, module, args = Path(argv[0]), argv[4], argv[5:]
    sys.argv = [module, *args]
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profiler.disable()
        profiler.dump_stats(str(out))
        os.write(2, f"bench.throughput.profile: statistics written to {out}\n".encode())


_COMPONENTS = (
    # (what, substrings of the function's file; first match wins)
    ("waiting on I/O (event loop idle: select)", ("selectors.py",)),
    ("imports (start-up)", ("<frozen importlib", "importlib/")),
    ("decode: mdmbus.codec + fastavro", ("mdmbus/codec.py", "fastavro")),
    ("contract: verdict, validation", ("mdmbus/contract",)),
    ("asyncpg client (COPY, queries)", ("asyncpg",)),
    ("prometheus metrics", ("prometheus_client",)),
    ("uuid / datetime", ("uuid.py", "datetime")),
    ("kafka client (aiokafka, kafka)", ("aiokafka", "/kafka/")),
    ("faust / mode", ("/faust/", "/mode/")),
    ("mdmbus streams/ (own code)", ("streams/",)),
    ("mdmbus services/ (own code)", ("services/",)),
    ("mdmbus other", ("mdmbus/",)),
    ("asyncio runtime", ("asyncio",)),
)


def _component(filename: str, func: str) -> str:
    if filename == "~":  # a builtin: charged by its name
        if "select" in func or "epoll" in func:
            return _COMPONENTS[0][0]
        if "marshal" in func or "_imp." in func:
            return "imports (start-up)"
        return "builtins (C functions)"
    for name, needles in _COMPONENTS:
        if any(n in filename for n in needles):
            return name
    return "other"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarize(path: Path, top: int = 15) -> None:
    """Prints the profiled main thread's own time by component, and the top functions by own
    time and by cumulative time (mdmbus's and the libraries it calls)."""
    stats = pstats.Stats(str(path))
    raw = stats.stats  # type: ignore[attr-defined]  # {(file, line, func): (cc, nc, tt, ct, callers)}
    total = sum(v[2] for v in raw.values())
    if not total:
        print(f"\nprofile {path}: empty")
        return
    by_component: Counter[str] = Counter()
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    for (file, line, func), (_, _, tt, ct, _) in raw.items():
        by_component[_component(file, func)] += tt
        name = f"{func} ({_short(file)}:{line})" if file != "~" else func
        own[name] += tt
        if any(k in file for k in ("streams/", "services/", "mdmbus/", "asyncpg", "fastavro",
                                   "aiokafka", "prometheus")):
            cumulative[name] = max(cumulative[name], ct)
    idle = by_component.get(_COMPONENTS[0][0], 0.0)
    busy = max(total - idle, 1e-9)
    table(["component (own time of its functions)", "seconds", "share of busy"],
          [(c, s, "-" if c == _COMPONENTS[0][0] else f"{100 * s / busy:.1f}%")
           for c, s in by_component.most_common()],
          title=f"cProfile of the worker's main thread, from its start to its stop (start-up "
                f"included): {total:.1f} s, of which {busy:.1f} s busy ({path})")
    table(["function (own time)", "seconds", "share of busy"],
          [(f, s, f"{100 * s / busy:.1f}%") for f, s in own.most_common(top + 1)
           if "epoll" not in f and "select" not in f][:top],
          title="Top functions by own time")
    table(["function (cumulative; mdmbus and the libraries it calls)", "seconds",
           "share of busy"],
          [(f, s, f"{100 * s / busy:.1f}%") for f, s in cumulative.most_common(top)],
          title="Top functions by cumulative time (calls nest: shares overlap)")


async def stages(settings: Settings, stores: Stores, load: Load, sample: int,
                 forget: Callable[[], Awaitable[None]]) -> list[tuple[str, float, float]]:
    """(step, CPU us/record in this process, wall us/record) of the pipeline's batch steps on
    the first ``sample`` messages of the load, batch by batch (MDMBUS_BATCH_SIZE), and the
    PostgreSQL backends' CPU while ``process`` ran, with the store's plain write and again
    (after ``forget`` deleted the rows) with the full INSERT. The rows must not be in the
    store (they are written as new rows); the caller deletes them afterwards."""
    from mdmbus.streams.batch import BatchTemplate
    from mdmbus.streams.context import PipelineContext
    from mdmbus.streams.runtime import RECORD_TOPICS

    n = min(sample, load.count)
    messages = [SimpleNamespace(topic=load.topic, partition=0, offset=i, key=key, value=value,
                                headers=())
                for i, (key, value) in enumerate(load.messages[:n])]
    batches = [messages[i:i + settings.batch_size] for i in range(0, n, settings.batch_size)]
    ctx = PipelineContext.create(settings, (load.region,))
    await ctx.ready()
    try:
        template = BatchTemplate(ctx, {kind: make() for kind, make in RECORD_TOPICS.items()})
        # prepare: best of 3 (the least disturbed by the rest of the machine)
        best_cpu = best_wall = float("inf")
        prepared = []
        for _ in range(3):
            cpu, wall = time.process_time(), time.perf_counter()
            prepared = [template.prepare(b) for b in batches]
            best_cpu = min(best_cpu, time.process_time() - cpu)
            best_wall = min(best_wall, time.perf_counter() - wall)
        refused = sum(len(p.rejected) for p in prepared)
        if refused:
            raise RuntimeError(f"{refused} benchmark records were refused by prepare()")
        out = [("prepare: decode + validate (BatchTemplate.prepare)", 1e6 * best_cpu / n,
                1e6 * best_wall / n)]
        from mdmbus.services.stores import records as store
        plain = store.plain
        # The store's plain write (as mdmbus runs), then, on the same rows written afresh,
        # the full INSERT that every batch took before it.
        for name, use_plain in (("", True), (" [full INSERT, as before the plain write]", False)):
            if not use_plain:
                await forget()
                store.plain = lambda rows: False  # type: ignore[assignment]
            try:
                meter = CpuMeter({}, postmaster=await postgres_pid(stores.directory_pool))
                cpu, wall = time.process_time(), time.perf_counter()
                for p in prepared:
                    await template.process(p)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                pg = next(s for what, s, _ in meter.stop() if what == "postgres")
            finally:
                store.plain = plain  # type: ignore[assignment]
            out.append((f"process: route + idempotent write + metrics, client side{name}",
                        1e6 * cpu / n, 1e6 * wall / n))
            out.append((f"process: PostgreSQL backends{name}", 1e6 * pg / n, float("nan")))
        return out
    finally:
        await ctx.close()


if __name__ == "__main__":
    main()
