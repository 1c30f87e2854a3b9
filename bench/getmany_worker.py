"""One process of the throughput benchmark's no-faust reference: the pipeline's batch function
(streams.ingest.process_batch) fed by a plain aiokafka consumer, on the partitions it is given.

    BENCH_GETMANY_RANGES='{"0": [start, end], ...}' python -m bench.getmany_worker

Started by bench.throughput (--workers 2), two side by side, each on half of mdm.upload's
partitions. Prints one line when done:

    RESULT <start> <end>

the wall-clock times (time.time()) of its first fetch and of its last write.
"""

from __future__ import annotations

import asyncio
import json
import os

from aiokafka.structs import TopicPartition

from mdmbus import topics
from mdmbus.settings import Settings

__all__ = ["main", "ENV_RANGES", "RESULT"]

ENV_RANGES = "BENCH_GETMANY_RANGES"
RESULT = "RESULT"


def main() -> None:
    from bench.throughput import Produced, process_batch_without_faust

    ranges = json.loads(os.environ[ENV_RANGES])
    start = {TopicPartition(topics.UPLOAD, int(p)): r[0] for p, r in ranges.items()}
    end = {TopicPartition(topics.UPLOAD, int(p)): r[1] for p, r in ranges.items()}
    count = sum(end[tp] - start[tp] for tp in start)
    produced = Produced(start, end, count, 0, 0.0, {})
    began, ended = asyncio.run(process_batch_without_faust(Settings.from_env(), produced))
    print(f"{RESULT} {began!r} {ended!r}", flush=True)


if __name__ == "__main__":
    main()
