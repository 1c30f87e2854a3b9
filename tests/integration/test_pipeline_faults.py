"""Bad input never costs a valid record, and a restarted processor stores nothing twice."""

from __future__ import annotations

import signal
import uuid

import pytest

from mdmbus import topics
from mdmbus.contract import REDACTED
from mdmbus.regions import REGIONS
from tests.conftest import wait_for
from tests.integration.harness import Processes, Workload
from tests.unit.examples import der, pem

pytestmark = pytest.mark.integration

PRIVATE_KEY = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
               "-----END PRIVATE KEY-----\n")


@pytest.fixture(scope="module")
def pipeline(stack, tmp_path_factory):
    procs = Processes(stack, tmp_path_factory.mktemp("pipeline"), speed=1.0)
    procs.start("pipeline")
    yield procs
    procs.stop()


@pytest.fixture
async def work(stack, pipeline):
    async with Workload(stack, pipeline.clock, seed=uuid.uuid4().int) as w:
        yield w


async def _onboarded(work: Workload, region: str) -> str:
    tenant = await work.onboard(region)
    await wait_for(lambda: work.tenant_region(tenant), 60, "tenant onboarded")
    return tenant


async def test_invalid_records_go_to_dead_letters_and_their_neighbours_are_stored(work, pipeline):
    region = "eu"
    tenant = await _onboarded(work, region)
    start = await work.end_offsets(topics.DEAD_LETTER)
    valid, bad = [], {}
    codec = work.contract.codec
    for i in range(20):
        valid.append((await work.produce("U9", tenant))["envelope"]["record_id"])
        kind = i % 7
        if kind == 0:
            await work.send_raw(topics.UPLOAD, b"\x00garbage" * 3, key=tenant.encode())
            bad.setdefault("wrong_marker", 0)
            bad["wrong_marker"] += 1
        elif kind == 1:
            good = codec.encode("U1", work.make("U1", tenant))
            await work.send_raw(topics.UPLOAD, good[:-3], key=tenant.encode())
            bad["truncated"] = bad.get("truncated", 0) + 1
        elif kind == 2:
            await work.send_raw(topics.UPLOAD, b"\xc3\x01" + b"\xff" * 8 + b"body",
                                key=tenant.encode())
            bad["unknown_fingerprint"] = bad.get("unknown_fingerprint", 0) + 1
        elif kind == 3:
            rec = work.make("U3", tenant, subject_name_format=PRIVATE_KEY)
            await work.send_raw(topics.UPLOAD, codec.encode("U3", rec), key=tenant.encode())
            bad["private_key_material"] = bad.get("private_key_material", 0) + 1
        elif kind == 4:
            rec = work.make("U7", tenant, email="someone@contoso.com", email_profile_deployed=False)
            await work.send_raw(topics.UPLOAD, codec.encode("U7", rec), key=tenant.encode())
            bad["email_without_profile"] = bad.get("email_without_profile", 0) + 1
        elif kind == 5:  # a private key where only a public certificate may go
            rec = work.make("U10", tenant,
                            scep_challenge_encryption_certificate=der("ec_private_pkcs8"))
            await work.send_raw(topics.UPLOAD, codec.encode("U10", rec), key=tenant.encode())
            bad["private_key_material"] = bad.get("private_key_material", 0) + 1
        else:  # a certificate body outside U10's public-key field
            cert = pem("CERTIFICATE", der("certificate")).decode()
            rec = work.make("U3", tenant, subject_name_format=cert)
            await work.send_raw(topics.UPLOAD, codec.encode("U3", rec), key=tenant.encode())
            bad["certificate_body"] = bad.get("certificate_body", 0) + 1

    async def all_valid_stored() -> bool:
        return await work.stored(region, valid) == set(valid)
    await wait_for(all_valid_stored, 60, "every valid neighbour stored")

    want = sum(bad.values())
    letters = []

    async def all_dead() -> bool:
        nonlocal letters
        letters = [m for m in await work.dead_letters(start, timeout_s=2)
                   if m.key == tenant.encode()]
        return len(letters) >= want
    await wait_for(all_dead, 60, f"{want} dead letters")
    reasons: dict[str, int] = {}
    for m in letters:
        headers = dict(m.headers)
        reason = headers["mdmbus.reason"].decode()
        reasons[reason] = reasons.get(reason, 0) + 1
        assert headers["mdmbus.source.topic"] == topics.UPLOAD.encode()
        assert int(headers["mdmbus.source.offset"]) >= 0
        assert headers["mdmbus.error"], "a dead letter says what was wrong"
        # The secret is stored nowhere: not in the dead letter, whatever the reason.
        assert b"PRIVATE KEY" not in (m.value or b"")
        if reason == "private_key_material":
            assert headers["mdmbus.redacted"] == b"true"
            kind, record = work.contract.codec.decode(m.value)
            if kind == "U10":
                assert record["scep_challenge_encryption_certificate"] == REDACTED.encode()
            else:
                assert kind == "U3" and record["subject_name_format"] == REDACTED
    assert reasons == bad
    pipeline.assert_alive()


async def test_a_restarted_processor_stores_nothing_twice(work, pipeline):
    region = "ap"
    tenant = await _onboarded(work, region)
    ids = []
    for i in range(3000):
        ids.append((await work.send("U1", work.make("U1", tenant)))["envelope"]["record_id"])
        if i == 1000:
            # Killed mid-stream, without a chance to commit its offsets.
            pipeline.kill("pipeline", signal.SIGKILL)
            pipeline.start("pipeline")

    async def all_stored() -> bool:
        return await work.stored(region, ids) == set(ids)
    await wait_for(all_stored, 120, "all 3000 records stored after the restart")
    count = await work.region_pool(region).fetchval(
        "SELECT count(*) FROM records WHERE tenant_id = $1", uuid.UUID(tenant))
    assert count == len(ids), "a record was stored twice (or lost)"
    for other in REGIONS:
        if other != region:
            assert not await work.stored(other, ids)
