"""The pipeline's faust consumer fetches with a short wait (streams/transport.py)."""

from __future__ import annotations

from streams.transport import FETCH_MAX_WAIT_MS, PipelineApp


async def test_worker_consumer_waits_at_most_the_short_fetch_wait():
    app = PipelineApp("transport-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    thread = app.consumer._new_consumer_thread()
    consumer = thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500
