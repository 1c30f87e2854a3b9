"""Where the stores seal and open bodies (services/stores/sealing.py): a row's body opens only
as the row it was sealed for (its tenant and record id, a dead letter's source message too),
its error text only as that letter's error, and never under another KEK. Pure functions on
a KEK made here; tests/integration reads sealed rows back from PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest

from mdmbus.crypto.envelope import (SEAL_RANDOM, SealError, letter_aad, record_aad, seal_batch,
                                    seal_letters)
from mdmbus.crypto.keyring import KEK_BYTES, Kek, WrapError
from mdmbus.services.stores.records import StoreRow
from mdmbus.services.stores.sealing import (open_letter, open_letter_error, open_record,
                                            sealed_record_tuples)

KEK = Kek("eu-k1", os.urandom(KEK_BYTES))
OTHER = Kek("eu-k2", os.urandom(KEK_BYTES))
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def kek_of(kek_id: str) -> Kek:
    return {KEK.id: KEK, OTHER.id: OTHER}[kek_id]


def _row(tenant: str, record: str, body: bytes) -> StoreRow:
    return StoreRow(record, tenant, "U1", "upload", None, None, NOW, None, None, body)


def _as_read(t: tuple) -> dict:
    """A sealed tuple as the records table gives it back."""
    names = ("record_id", "tenant_id", "kind", "category", "device_id", "session_id",
             "event_time", "deadline", "deadline_rule", "body", "wrapped_key", "kek_id")
    assert len(t) == len(names)
    return dict(zip(names, t))


def test_each_record_opens_as_itself_only():
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    ids = [str(uuid.uuid4()) for _ in range(3)]
    rows = [_row(a, ids[0], b"first"), _row(a, ids[1], b"second"), _row(b, ids[2], b"third")]
    sealed = [_as_read(t) for t in sealed_record_tuples(rows, KEK)]
    # every column but the body is the row's own, in order; then the wrapped key and KEK id
    for row, out in zip(rows, sealed):
        assert tuple(out.values())[:9] == row.as_tuple()[:9]
        assert out["kek_id"] == "eu-k1" and out["body"] != row.body
        assert row.body not in out["body"] and len(out["wrapped_key"]) > 16
    assert [open_record(r, kek_of) for r in sealed] == [b"first", b"second", b"third"]
    # a body moved to another record, or to another tenant, does not open
    moved = dict(sealed[0], record_id=ids[1])
    with pytest.raises(WrapError):
        open_record(moved, kek_of)
    other_tenant = dict(sealed[2], tenant_id=a)
    with pytest.raises(WrapError):
        open_record(other_tenant, kek_of)
    # the same body and key with another row's data key: altered, refused
    swapped = dict(sealed[0], body=sealed[1]["body"])
    with pytest.raises(SealError):
        open_record(swapped, kek_of)
    with pytest.raises(WrapError):
        open_record(dict(sealed[0], kek_id="eu-k2"), kek_of)


def test_a_deleted_or_unsealed_record_opens_to_what_is_stored():
    row = {"tenant_id": str(uuid.uuid4()), "record_id": str(uuid.uuid4()), "body": None,
           "wrapped_key": None, "kek_id": None}
    assert open_record(row, kek_of) is None
    assert open_record(dict(row, body=b"as stored"), kek_of) == b"as stored"
    with pytest.raises(SealError, match="no wrapped data key"):
        open_record(dict(row, body=b"x" * 40, kek_id="eu-k1"), kek_of)


def _letter(source: tuple[str, int, int], tenant: str | None, record: str | None,
            body: bytes | None, error: str) -> dict:
    (sealed_body, sealed_error, wrapped), = seal_letters(
        KEK, [(letter_aad(*source, tenant, record), body, error.encode())])
    return {"source_topic": source[0], "source_partition": source[1],
            "source_offset": source[2], "tenant_id": tenant, "record_id": record,
            "body": sealed_body, "error": "", "error_sealed": sealed_error,
            "wrapped_key": wrapped, "kek_id": KEK.id}


def test_a_dead_letter_opens_as_its_own_source_only():
    tenant, record = str(uuid.uuid4()), str(uuid.uuid4())
    letter = _letter(("mdm.eu.upload", 2, 41), tenant, record, b"the message", "bad: why")
    assert open_letter(letter, kek_of) == b"the message"
    assert open_letter_error(letter, kek_of) == "bad: why"
    for column, value in (("source_topic", "mdm.na.upload"), ("source_partition", 3),
                          ("source_offset", 42), ("tenant_id", str(uuid.uuid4())),
                          ("record_id", str(uuid.uuid4()))):
        with pytest.raises(WrapError):
            open_letter(dict(letter, **{column: value}), kek_of)
        with pytest.raises(WrapError):
            open_letter_error(dict(letter, **{column: value}), kek_of)
    # the error does not open as the body, nor the body as the error
    with pytest.raises(SealError):
        open_letter(dict(letter, body=letter["error_sealed"]), kek_of)
    with pytest.raises(SealError):
        open_letter_error(dict(letter, error_sealed=letter["body"]), kek_of)


def test_a_dead_letter_without_a_body_or_unsealed_keeps_its_error():
    letter = _letter(("mdm.eu.relay", 0, 7), None, None, None, "no body kept")
    assert open_letter(letter, kek_of) is None
    assert open_letter_error(letter, kek_of) == "no body kept"
    plain = dict(letter, kek_id=None, error="in clear", error_sealed=None, body=b"raw")
    assert open_letter(plain, kek_of) == b"raw"
    assert open_letter_error(plain, kek_of) == "in clear"
    with pytest.raises(ValueError, match=r"dead letter mdm.eu.relay/0/7 has a KEK id but no "
                                         r"sealed error"):
        open_letter_error(dict(letter, error_sealed=None), kek_of)


def test_a_row_sealed_by_the_earlier_seal_still_opens():
    """A row sealed (on 2026-12-06) by the seal as it was before it was made faster, under a
    fixed KEK: its body and wrapped key are the oracle; the stored format has not changed."""
    kek = Kek("eu-0123456789abcdef", bytes(range(32)))
    stored = {
        "record_id": uuid.UUID("6f1c1f2e-8d3a-4c55-9a7e-0d2f4b6a8c10"),
        "tenant_id": uuid.UUID("3b9e2a44-1c7d-4f08-b2a1-5e6c7d8e9f00"),
        "body": bytes.fromhex(
            "035ff80ae6ff04bb83df77edf4e9f3da4886b8c5abc68513ff6f37ff6e8a1a6b0cd0c1820d1483a7"
            "86dbbc5357865822437815ed968678bc91976d230bf1d3c90debb106dd681effec"),
        "wrapped_key": bytes.fromhex(
            "8cfc9a305cf8160a99e4223cb436b88aa5b826cdec03e00f34cf0d67971e2c6f3a76d4d87b88d60c"
            "16d8a1565f21d9673a9725a38d07f39a97d3dcab"),
        "kek_id": kek.id}
    assert open_record(stored, {kek.id: kek}.__getitem__) == (
        b"a body sealed before the seal was made faster")
    # and what the seal makes now opens the same way, by the row's identity as text or UUID
    row = _row(str(stored["tenant_id"]), str(stored["record_id"]), b"sealed now")
    again = _as_read(sealed_record_tuples([row], kek)[0])
    assert open_record(dict(again, record_id=stored["record_id"],
                            tenant_id=stored["tenant_id"]), {kek.id: kek}.__getitem__) == (
        b"sealed now")


def test_the_stores_seal_is_the_envelopes_seal(monkeypatch):
    """The stores' seal and the envelope's: given the same random bytes, both make the same
    sealed bodies and wrapped keys, for ids as text and as UUIDs, several tenants in one
    batch, and the row's other columns as they were."""
    tenants = [str(uuid.uuid4()), uuid.uuid4()]
    rows = [_row(tenants[i % 2], str(uuid.uuid4()) if i % 3 else uuid.uuid4(), b"body %d" % i)
            for i in range(7)]
    randomness = os.urandom(SEAL_RANDOM * len(rows))
    monkeypatch.setattr(os, "urandom", lambda n: randomness[:n])
    fused = sealed_record_tuples(rows, KEK)
    generic = seal_batch(KEK, [(record_aad(r.tenant_id, r.record_id), r.body) for r in rows])
    assert [t[9:11] for t in fused] == generic
    assert [t[:9] for t in fused] == [r.as_tuple()[:9] for r in rows]
    assert {t[11] for t in fused} == {KEK.id}
