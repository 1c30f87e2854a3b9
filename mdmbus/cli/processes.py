"""`mdmbus process NAME --region R`: one long-running process in the foreground, stopped by
SIGTERM/SIGINT. The one list of process names is :data:`PROCESSES`.

- pipeline: the faust worker with a record runtime per region (mdmbus.streams.app)
- sweeper: deletes what is past its deadline, measures what is left (mdmbus.services.sweeper)
- gateway: the tenants' HTTPS door of each region (mdmbus.services.gateway)
- cm-connector: the CM side, downloading through the gateway (mdmbus.services.connector)
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry

from mdmbus.heap import trim_until
from mdmbus.metrics import Metrics, serve
from mdmbus.settings import Settings

__all__ = ["run_process", "PROCESSES", "REGIONAL"]

#: Every long-running process mdmbus has.
PROCESSES = ("pipeline", "sweeper", "gateway", "cm-connector")
#: The processes that run per region (``--region``); the CM connector runs on premises.
REGIONAL = ("pipeline", "sweeper", "gateway")


def run_process(name: str, settings: Settings, regions: Sequence[str]) -> int:
    logging.basicConfig(level=logging.INFO,
                        format="[%(asctime)s] %(name)s %(levelname)s %(message)s")
    metrics = Metrics(CollectorRegistry())
    serve(metrics, settings.metrics_port, settings.metrics_addr)
    regions = tuple(regions)
    if name == "pipeline":
        from mdmbus.streams.app import build_worker
        from mdmbus.streams.context import PipelineContext
        ctx = PipelineContext.create(settings, regions, metrics)
        build_worker(settings, regions, ctx).execute_from_commandline()
        return 0  # not reached: the worker exits the process
    if name == "sweeper":
        from mdmbus.services.sweeper import run as sweeper
        return _until_signalled(lambda stop: sweeper(settings, regions, stop, metrics))
    if name == "gateway":
        from mdmbus.services.gateway.server import run as gateway
        return _until_signalled(lambda stop: gateway(settings, regions, stop, metrics))
    if name == "cm-connector":
        from mdmbus.services.connector.connector import run as connector
        return _until_signalled(lambda stop: connector(settings, stop, metrics))
    raise ValueError(f"unknown process {name!r}; known: {', '.join(PROCESSES)}")


def _until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    async def until_signalled() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        trimming = asyncio.create_task(trim_until(stop))
        try:
            await main(stop)
        finally:
            stop.set()
            await trimming
    asyncio.run(until_signalled())
    return 0
