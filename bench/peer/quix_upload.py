"""The throughput benchmark's peer: mdm.<region>.upload -> rows in the region store, as a user
of Quix Streams would write it. Runs in .venv-peer (bench/peer/requirements.txt), configured
by the environment (PEER_*, set by bench.throughput.peer): no mdmbus import.

Per record: decode the Avro single-object encoding with fastavro (the writer schema looked up
by its fingerprint), check the envelope's ids are canonical uuids, look up the tenant (active
in this region's store, cached), and insert through a batching sink, idempotently (INSERT ...
ON CONFLICT DO NOTHING, one executemany per partition batch at each checkpoint). Less than
mdmbus does: no content checks (private keys, certificates), no dead letters, no sealing of
bodies, no truncation, no metrics, no rules decided in the writing transaction.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re

import psycopg
from fastavro import parse_schema, schemaless_reader
from quixstreams import Application
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.sinks import BatchingSink, SinkBatch

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")

_INSERT = (
    "INSERT INTO records (record_id, tenant_id, kind, category, device_id, session_id,"
    " event_time, stored_at, body) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (tenant_id, record_id) DO NOTHING")


def _load_schemas(path: str) -> dict[bytes, tuple[str, str, dict]]:
    with open(path) as f:
        raw = json.load(f)
    return {bytes.fromhex(fp): (s["kind"], s["category"], parse_schema(s["schema"],
                                                                       named_schemas={}))
            for fp, s in raw.items()}


SCHEMAS = _load_schemas(os.environ["PEER_SCHEMAS"])


def decode(value: bytes) -> dict | None:
    """The record with its kind and category, or None if it is not a known record."""
    if len(value) < 10 or value[:2] != b"\xc3\x01":
        return None
    known = SCHEMAS.get(value[2:10])
    if known is None:
        return None
    kind, category, schema = known
    record = schemaless_reader(io.BytesIO(value[10:]), schema, None)
    return {"kind": kind, "category": category, "record": record, "body": value}


def _text(v) -> str | None:
    return None if v is None else str(v)


def valid(item: dict | None) -> bool:
    if item is None:
        return False
    env = item["record"]["envelope"]
    return all(v is None or _UUID.match(_text(v)) for v in
               (env["record_id"], env["tenant_id"], env.get("device_id"))) and \
        env["record_id"] is not None and env["tenant_id"] is not None


class Tenants:
    """Which tenants are active in this region's store, cached; looked up again on a miss."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.active: set[str] = set()
        self.conn: psycopg.Connection | None = None

    def __contains__(self, tenant: str) -> bool:
        if tenant not in self.active:
            if self.conn is None:
                self.conn = psycopg.connect(self.conninfo, autocommit=True)
            self.active = {str(r[0]) for r in self.conn.execute(
                "SELECT tenant_id FROM tenants WHERE state = 'active'")}
        return tenant in self.active


class RecordsSink(BatchingSink):
    """Rows into ``records``, idempotently, one executemany a batch (psycopg pipelines it)."""

    def __init__(self, conninfo: str) -> None:
        super().__init__()
        self.conninfo = conninfo
        self.conn: psycopg.Connection | None = None

    def setup(self) -> None:
        self.conn = psycopg.connect(self.conninfo)

    def write(self, batch: SinkBatch) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        rows = []
        for item in batch:
            v = item.value
            env = v["record"]["envelope"]
            rows.append((_text(env["record_id"]), _text(env["tenant_id"]), v["kind"],
                         v["category"], _text(env.get("device_id")),
                         _text(v["record"].get("session_id")), env["event_time"], now,
                         v["body"]))
        with self.conn.cursor() as cur:
            cur.executemany(_INSERT, rows)
        self.conn.commit()


def main() -> None:
    e = os.environ
    tenants = Tenants(e["PEER_PG"])
    app = Application(
        broker_address=ConnectionConfig(
            bootstrap_servers=e["PEER_BOOTSTRAP"], security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512", sasl_username=e["PEER_SASL_USER"],
            sasl_password=e["PEER_SASL_PASSWORD"], ssl_ca_location=e["PEER_CA"]),
        consumer_group=e["PEER_GROUP"], auto_offset_reset="earliest",
        commit_interval=float(e.get("PEER_COMMIT_INTERVAL", "1.0")),
        auto_create_topics=False, use_changelog_topics=False)
    topic = app.topic(e["PEER_TOPIC"], key_deserializer="bytes", value_deserializer="bytes")
    sdf = app.dataframe(topic)
    sdf = sdf.apply(decode).filter(valid)
    sdf = sdf.filter(lambda v: str(v["record"]["envelope"]["tenant_id"]) in tenants)
    sdf.sink(RecordsSink(e["PEER_PG"]))
    app.run()


if __name__ == "__main__":
    main()
