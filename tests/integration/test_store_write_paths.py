"""The store's two record writes give the same outcome row by row: the plain write (batches
without deadlines: uploads, relay records) and the full INSERT (every batch before it, and
still every batch with commands). Each row of a mixed batch, written once through each path
into a fresh table state, is stored, a duplicate (stored before, or twice in the batch), or
refused by its tenant's state in the store (in retention, never onboarded, purged), and the
rows are in the table exactly when the outcome says stored."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest

from mdmbus.connections import pg_connect
from mdmbus.crypto.keyring import KEK_BYTES, Kek
from mdmbus.regions import region_database
from mdmbus.services.stores import records as store
from mdmbus.services.stores.records import StoreRow, write_records

pytestmark = pytest.mark.integration


def _row(tenant: uuid.UUID, record: uuid.UUID, now: dt.datetime) -> StoreRow:
    return StoreRow(str(record), tenant, "U9", "upload", None, None, now, None, None,
                    b"body-" + record.bytes)


@pytest.mark.parametrize("path", ["plain", "full"])
async def test_each_row_gets_the_outcome_of_its_tenants_state(stack, monkeypatch, path):
    if path == "full":
        monkeypatch.setattr(store, "plain", lambda rows: False)
    conn = await pg_connect(stack, region_database("eu"))
    now = dt.datetime.now(dt.timezone.utc)
    active, retention, purged, unknown = (uuid.uuid4() for _ in range(4))
    kek = Kek("test-kek", os.urandom(KEK_BYTES))
    try:
        await conn.execute(
            "INSERT INTO tenants (tenant_id, country, region, onboarded_at, state)"
            " VALUES ($1, 'DE', 'eu', $3, 'active'), ($2, 'DE', 'eu', $3, 'retention')",
            active, retention, now)
        await conn.execute("INSERT INTO purged_tenants (tenant_id, purged_at) VALUES ($1, $2)",
                           purged, now)
        old, fresh, twice = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        first = await write_records(conn, [_row(active, old, now)], now, kek=kek)
        assert first.stored == [(str(active), str(old))]

        in_retention, not_onboarded, deleted = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        batch = [_row(active, fresh, now), _row(active, old, now), _row(active, twice, now),
                 _row(active, twice, now), _row(retention, in_retention, now),
                 _row(unknown, not_onboarded, now), _row(purged, deleted, now)]
        out = await write_records(conn, batch, now, kek=kek)
        key = str
        assert sorted(out.stored) == sorted([(key(active), key(fresh)), (key(active), key(twice))])
        assert sorted(out.duplicates) == sorted([(key(active), key(old)),
                                                 (key(active), key(twice))])
        assert out.in_retention == [(key(retention), key(in_retention))]
        assert out.not_onboarded == [(key(unknown), key(not_onboarded))]
        assert out.deleted == [(key(purged), key(deleted))]
        assert out.expired == []
        in_table = {(str(r["tenant_id"]), str(r["record_id"])) for r in await conn.fetch(
            "SELECT tenant_id, record_id FROM records WHERE tenant_id = ANY($1::uuid[])",
            [active, retention, purged, unknown])}
        assert in_table == {(key(active), key(old)), (key(active), key(fresh)),
                            (key(active), key(twice))}
    finally:
        ids = [active, retention, purged, unknown]
        await conn.execute("DELETE FROM records WHERE tenant_id = ANY($1::uuid[])", ids)
        await conn.execute("DELETE FROM tenants WHERE tenant_id = ANY($1::uuid[])", ids)
        await conn.execute("DELETE FROM purged_tenants WHERE tenant_id = ANY($1::uuid[])", ids)
        await conn.close()
