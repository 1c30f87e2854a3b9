"""Store faults told apart (services/stores/retry.py): an outage is waited out, a certificate
the store no longer accepts stops with its reason."""

from __future__ import annotations

import ssl

import pytest

from mdmbus.services.stores.retry import Backoff, StoreMisconfigured, until_written


async def test_an_outage_is_retried_until_the_store_answers():
    attempts, errors = [], []

    async def write() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionRefusedError(111, "refused")
        if len(attempts) == 2:
            raise ssl.SSLEOFError(8, "EOF in violation of protocol")  # a server restarting
        return "written"
    assert await until_written(write, errors.append, backoff=Backoff(0.001, 0.01)) == "written"
    assert [type(e) for e in errors] == [ConnectionRefusedError, ssl.SSLEOFError]


@pytest.mark.parametrize("fault", [
    ssl.SSLCertVerificationError(1, "certificate verify failed: unable to get local issuer"),
    FileNotFoundError(2, "No such file", "/state/pki/pipeline.key"),
    PermissionError(13, "Permission denied", "/state/pki/pipeline.key"),
])
async def test_a_fault_of_configuration_fails_at_once_with_its_reason(fault):
    attempts = []

    async def write() -> None:
        attempts.append(1)
        raise fault
    with pytest.raises(StoreMisconfigured, match=type(fault).__name__):
        await until_written(write, lambda exc: None, backoff=Backoff(0.001, 0.01))
    assert len(attempts) == 1


def test_the_backoff_doubles_to_its_bound_and_starts_over_after_a_success():
    backoff = Backoff(0.2, 5.0)
    assert [backoff.next() for _ in range(8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 0.2
