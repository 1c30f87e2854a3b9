"""The envelope and the file keyring on their own (no servers): a sealed body opens only in its
own row under a KEK the keyring still holds; rotation, pick-up by another process and
destruction behave as docs/design.md section 9 says; no key shows in a repr or an error."""

from __future__ import annotations

import os
import stat
import uuid

import pytest

from mdmbus.crypto import envelope
from mdmbus.crypto.keyring import FileKeyring, KeyUnavailable, WrapError, REFRESH_S


def _ids() -> tuple[str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4())


def test_a_sealed_body_opens_in_its_own_row_only(tmp_path) -> None:
    ring = FileKeyring(tmp_path, "eu")
    kek = ring.current()
    tenant, record = _ids()
    aad = envelope.record_aad(tenant, record)
    body, wrapped = envelope.seal(kek, aad, b"canary-body")
    assert b"canary-body" not in body and len(wrapped) == 12 + 32 + 16
    assert envelope.open_body(ring.kek, aad, body, wrapped, kek.id) == b"canary-body"
    # the same ciphertext and wrapped key moved to another record, or another tenant
    for other in (envelope.record_aad(tenant, str(uuid.uuid4())),
                  envelope.record_aad(str(uuid.uuid4()), record)):
        with pytest.raises(WrapError):
            envelope.open_body(ring.kek, other, body, wrapped, kek.id)
    # a flipped bit in the body, or in the wrapped key
    with pytest.raises(envelope.SealError):
        envelope.open_body(ring.kek, aad, body[:-1] + bytes([body[-1] ^ 1]), wrapped, kek.id)
    with pytest.raises(WrapError):
        envelope.open_body(ring.kek, aad, body, wrapped[:-1] + bytes([wrapped[-1] ^ 1]), kek.id)
    # the wrapped key presented under the next KEK's id
    with pytest.raises(WrapError):
        envelope.open_body(ring.kek, aad, body, wrapped, ring.status().next)


def test_every_body_has_its_own_data_key(tmp_path) -> None:
    kek = FileKeyring(tmp_path, "na").current()
    aad = envelope.record_aad(*_ids())
    sealed = envelope.seal_batch(kek, [(aad, b"same")] * 3)
    assert len({b for b, _ in sealed}) == 3 and len({w for _, w in sealed}) == 3
    deks = {kek.unwrap(w, aad) for _, w in sealed}
    assert len(deks) == 3 and all(len(d) == 32 for d in deks)


def test_a_row_stored_before_sealing_opens_as_stored(tmp_path) -> None:
    ring = FileKeyring(tmp_path, "ap")
    assert envelope.open_body(ring.kek, b"x", b"plain", None, None) == b"plain"
    assert envelope.open_body(ring.kek, b"x", None, None, None) is None


def test_the_keyring_is_private_on_disk(tmp_path) -> None:
    ring = FileKeyring(tmp_path / "keyring", "eu")
    for d in (tmp_path / "keyring", ring.dir):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    files = list(ring.dir.glob("*.kek"))
    assert len(files) == 2  # current and next
    for f in [*files, ring.dir / "keyring.json"]:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    manifest = (ring.dir / "keyring.json").read_bytes()
    for f in files:
        assert f.read_bytes() not in manifest and f.read_bytes().hex().encode() not in manifest


def test_rotation_is_picked_up_by_another_process_and_destruction_is_final(tmp_path) -> None:
    job, worker = FileKeyring(tmp_path, "eu"), FileKeyring(tmp_path, "eu")
    first, prepared = job.current().id, job.status().next
    aad = envelope.record_aad(*_ids())
    body, wrapped = envelope.seal(worker.current(), aad, b"canary")
    status = job.rotate()
    assert status.current == prepared and first in status.retired and status.next != prepared
    worker.refresh(force=True)
    assert worker.current().id == prepared
    # the worker still opens what it wrapped under the retired KEK; re-wrapped, it opens too
    assert envelope.open_body(worker.kek, aad, body, wrapped, first) == b"canary"
    rewrapped = envelope.rewrap(job.kek(first), job.current(), aad, wrapped)
    job.destroy(first)
    assert not (job.dir / f"{first}.kek").exists()
    assert first in job.status().destroyed and first not in job.status().retired
    worker.refresh(force=True)  # what it does by itself within REFRESH_S
    with pytest.raises(KeyUnavailable):
        envelope.open_body(worker.kek, aad, body, wrapped, first)
    assert envelope.open_body(worker.kek, aad, body, rewrapped, prepared) == b"canary"
    # a fresh process has no way to the destroyed KEK either
    with pytest.raises(KeyUnavailable):
        FileKeyring(tmp_path, "eu").kek(first)
    with pytest.raises(KeyUnavailable):  # only retired KEKs are destroyed
        job.destroy(job.current().id)


def test_no_key_in_a_repr_or_an_error(tmp_path) -> None:
    ring = FileKeyring(tmp_path, "eu")
    kek = ring.current()
    raw = (ring.dir / f"{kek.id}.kek").read_bytes()
    texts = [repr(kek), str(kek), repr(ring.status())]
    aad = envelope.record_aad(*_ids())
    body, wrapped = envelope.seal(kek, aad, b"x")
    for bad in (lambda: envelope.open_body(ring.kek, b"other", body, wrapped, kek.id),
                lambda: ring.kek("eu-0000000000000000"), lambda: ring.kek("../../etc")):
        with pytest.raises(Exception) as info:
            bad()
        texts.append(str(info.value))
    for text in texts:
        for form in (raw.hex(), raw.hex().upper(), repr(raw)):
            assert form not in text
    assert REFRESH_S <= 1.0


def test_a_dead_letters_body_and_error_share_its_key_and_stand_in_for_nothing(tmp_path) -> None:
    ring = FileKeyring(tmp_path, "eu")
    kek = ring.current()
    aad = envelope.letter_aad("mdm.eu.upload", 1, 42, uuid.uuid4(), None)
    (body, error, wrapped), (no_body, error2, _) = envelope.seal_letters(
        kek, [(aad, b"the body", b"field x: 'a value'"), (aad, None, b"e")])
    assert no_body is None and error2 != error
    assert envelope.open_body(ring.kek, aad, body, wrapped, kek.id) == b"the body"
    assert envelope.open_body(ring.kek, aad, error, wrapped, kek.id,
                              aad + envelope.ERROR_AAD) == b"field x: 'a value'"
    with pytest.raises(envelope.SealError):  # the error is not a body, nor the other way round
        envelope.open_body(ring.kek, aad, error, wrapped, kek.id)
    with pytest.raises(envelope.SealError):
        envelope.open_body(ring.kek, aad, body, wrapped, kek.id, aad + envelope.ERROR_AAD)
    other = envelope.letter_aad("mdm.eu.upload", 1, 43, None, None)
    with pytest.raises(WrapError):
        envelope.open_body(ring.kek, other, body, wrapped, kek.id)
