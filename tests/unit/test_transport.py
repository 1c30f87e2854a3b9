"""The pipeline's faust consumer fetches with a short wait (streams/transport.py)."""

from __future__ import annotations

from mdmbus.streams.transport import FETCH_MAX_WAIT_MS, PipelineApp, QuietMonitor


async def test_worker_consumer_waits_at_most_the_short_fetch_wait():
    app = PipelineApp("transport-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    thread = app.consumer._new_consumer_thread()
    consumer = thread._create_worker_consumer(app.transport)
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS < 1500


def test_the_monitor_keeps_no_per_event_statistics():
    from faust.types import TP

    app = PipelineApp("monitor-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    monitor = app.monitor
    assert isinstance(monitor, QuietMonitor)
    tp = TP("mdm.upload", 0)
    monitor.on_message_in(tp, 7, object())
    assert monitor.on_stream_event_in(tp, 7, object(), object()) is None
    assert monitor.messages_received_total == 0 and monitor.events_total == 0
    # faust's stall check (verify_event_path) needs when each partition last had an event
    assert tp in monitor.stream_inbound_time
    monitor.track_tp_end_offset(tp, 9)  # offsets are still tracked (faust's consumer uses them)
    assert monitor.tp_end_offsets[tp] == 9
