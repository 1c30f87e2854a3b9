"""A minimal faust-streaming worker for test_faust_agent: upper-cases SRC into DST.

Run as a separate process, as processors are in production, logged in as the stack's admin
(the MDMBUS_* settings of the environment say where its password and CA are):
    SRC=a DST=b BROKER=kafka://127.0.0.1:29092 APP_ID=x python faust_echo.py worker
"""

import os

import faust

from mdmbus.connections import faust_credentials
from mdmbus.identities import ADMIN
from mdmbus.settings import Settings

app = faust.App(
    os.environ["APP_ID"],
    broker=os.environ["BROKER"],
    broker_credentials=faust_credentials(Settings.from_env(), ADMIN),
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
