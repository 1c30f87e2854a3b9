"""A minimal faust-streaming worker for test_faust_agent: upper-cases SRC into DST.

Run as a separate process, as processors are in production:
    SRC=a DST=b BROKER=kafka://127.0.0.1:29092 APP_ID=x python faust_echo.py worker
"""

import os

import faust

app = faust.App(
    os.environ["APP_ID"],
    broker=os.environ["BROKER"],
    store="memory://",
    web_enabled=False,
    topic_replication_factor=1,
    consumer_auto_offset_reset="earliest",
)
source = app.topic(os.environ["SRC"], key_serializer="raw", value_serializer="raw")
sink = app.topic(os.environ["DST"], key_serializer="raw", value_serializer="raw")


@app.agent(source)
async def echo(stream):
    async for event in stream.events():
        await sink.send(key=event.key, value=event.value.upper())


if __name__ == "__main__":
    app.main()
