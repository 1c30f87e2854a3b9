"""A faust worker whose one agent does no work: the ceiling of faust's own per-event machinery.

    BENCH_NOOP_TOPIC=T BENCH_NOOP_RECORDS=N BENCH_NOOP_APP_ID=ID python -m bench.faust_noop

Started by bench.throughput (``--no-noop`` skips it), on a scratch topic that holds a copy of
the benchmark's upload messages. The app is the pipeline's App class
(streams.transport.PipelineApp: its transport and monitor), the agent iterates
``stream.take_events(batch_size, within=batch_wait)`` as the pipeline's agents do
(streams.ingest.agent_for), with the same MDMBUS_BATCH_SIZE and MDMBUS_BATCH_WAIT, and only
counts the events: what faust spends on them is all there is.

When it has counted BENCH_NOOP_RECORDS events it writes one line to stdout and exits:

    RESULT <events> <events timed> <seconds> <CPU seconds> <batches timed> <main thread CPU s>

timed from the arrival of the first batch to that of the last: the events (and batches) timed
are those after the first batch (the first batch was buffered before the clock started), the
CPU seconds are the whole process's (its consumer thread too) over the same span, and its main
thread's (the agent's event loop) alone. It exits by itself, without a RESULT line,
BENCH_NOOP_DEADLINE seconds after its start (a watchdog for when its parent is gone).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

__all__ = ["main", "ENV_TOPIC", "ENV_RECORDS", "ENV_APP_ID", "ENV_DEADLINE", "ENV_MONITOR",
           "RESULT", "datadir"]

ENV_TOPIC = "BENCH_NOOP_TOPIC"
ENV_RECORDS = "BENCH_NOOP_RECORDS"
ENV_APP_ID = "BENCH_NOOP_APP_ID"
ENV_DEADLINE = "BENCH_NOOP_DEADLINE"
#: "faust": faust's default Monitor instead of the pipeline's QuietMonitor (to measure it).
ENV_MONITOR = "BENCH_NOOP_MONITOR"
#: The first word of the result line.
RESULT = "RESULT"
#: Exit status when the watchdog ended the worker.
WATCHDOG_EXIT = 3


def datadir(state_dir: Path, app_id: str) -> Path:
    """Where the worker of ``app_id`` keeps faust's data directory."""
    return state_dir / "bench-logs" / app_id


def main() -> None:
    # faust is imported here, not at the top: bench.throughput imports this module for its
    # names and must not pay for faust (nor build an app) when it does
    from mdmbus.settings import Settings
    from mdmbus.streams.transport import PipelineApp

    settings = Settings.from_env()
    topic_name = os.environ[ENV_TOPIC]
    expected = int(os.environ[ENV_RECORDS])
    app_id = os.environ[ENV_APP_ID]
    deadline = float(os.environ.get(ENV_DEADLINE, "0"))
    if deadline > 0:
        watchdog = threading.Timer(deadline, _give_up, args=(deadline,))
        watchdog.daemon = True
        watchdog.start()

    monitor = {}
    if os.environ.get(ENV_MONITOR) == "faust":
        from faust.sensors.monitor import Monitor
        monitor = {"Monitor": Monitor}
    app = PipelineApp(
        app_id,
        **monitor,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        datadir=str(datadir(settings.state_dir, app_id)),
    )
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")

    @app.agent(topic, name="count_events")
    async def count_events(stream) -> None:
        n = first = batches = 0
        began = cpu = main_cpu = 0.0
        async for events in stream.take_events(settings.batch_size,
                                               within=settings.batch_wait_s):
            if not n:
                began, cpu = time.perf_counter(), time.process_time()
                main_cpu = time.thread_time()
                first = len(events)
            n += len(events)
            batches += 1
            if n >= expected:
                seconds = time.perf_counter() - began
                cpu = time.process_time() - cpu
                main_cpu = time.thread_time() - main_cpu
                # fd 1 itself: the faust worker redirects sys.stdout into its logger
                line = f"{RESULT} {n} {n - first} {seconds!r} {cpu!r} {batches - 1} {main_cpu!r}\n"
                os.write(1, line.encode())
                os._exit(0)

    # as streams/worker.py, at warn level: the measured span logs nothing
    sys.argv = ["bench-faust-noop", "worker", "--loglevel", "warn", "--without-web"]
    app.main()


def _give_up(deadline: float) -> None:
    os.write(2, f"bench.faust_noop: not done after {deadline:.0f} s, exiting\n".encode())
    os._exit(WATCHDOG_EXIT)


if __name__ == "__main__":
    main()
