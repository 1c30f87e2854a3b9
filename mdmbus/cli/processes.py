"""`mdmbus process NAME`: one long-running process of the pipeline, stopped by SIGTERM/SIGINT.

- pipeline: the faust worker (streams/), validate -> route -> store -> dead-letter
- cm-connector: relay records into the CM database, acknowledged after commit
- sweeper: deletes what is past its deadline, measures what is left
"""

from __future__ import annotations

import asyncio
import logging
import signal

from mdmbus.settings import Settings

__all__ = ["run_process", "PROCESSES"]

PROCESSES = ("pipeline", "cm-connector", "sweeper")


def run_process(name: str, settings: Settings) -> int:
    if name == "pipeline":
        from mdmbus.streams.worker import main
        main()
        return 0
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(name)s %(levelname)s %(message)s")
    if name == "cm-connector":
        from mdmbus.services.cm_connector import run
    else:
        from mdmbus.services.sweeper import run
    asyncio.run(_until_signalled(run, settings))
    return 0


async def _until_signalled(run, settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run(settings, stop)
