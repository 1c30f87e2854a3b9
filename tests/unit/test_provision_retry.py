"""Provisioning repeats a request the broker answered with a retriable error (a timeout on a
cluster just started under load) until its deadline, and no other (mdmbus/stack/provision.py)."""

from __future__ import annotations

import time

import pytest
from aiokafka.errors import RequestTimedOutError, TopicAuthorizationFailedError

from mdmbus.stack.provision import _retried


class _Calls:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors, self.count = errors, 0

    async def __call__(self) -> str:
        self.count += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def test_timeouts_are_repeated_until_the_request_succeeds():
    call = _Calls([RequestTimedOutError(), RequestTimedOutError()])
    assert await _retried(call, time.monotonic() + 30) == "done"
    assert call.count == 3


async def test_a_refusal_is_raised_at_once():
    call = _Calls([TopicAuthorizationFailedError(), RequestTimedOutError()])
    with pytest.raises(TopicAuthorizationFailedError):
        await _retried(call, time.monotonic() + 30)
    assert call.count == 1


async def test_past_the_deadline_the_timeout_is_raised():
    call = _Calls([RequestTimedOutError()] * 100)
    with pytest.raises(RequestTimedOutError):
        await _retried(call, time.monotonic() + 1.2)
    assert 2 <= call.count < 10


async def test_the_acl_admins_errors_are_retried_as_librdkafka_judges_them():
    """The ACL and SCRAM requests go through confluent-kafka (mdmbus/stack/kafka_admin.py):
    its retriable verdict is followed, a refusal is raised at once."""
    from mdmbus.stack.kafka_admin import KafkaAdminError
    timeout = KafkaAdminError("set the SCRAM password of x", 7, "timed out", retriable=True)
    call = _Calls([timeout, timeout])
    assert await _retried(call, time.monotonic() + 30) == "done"
    assert call.count == 3
    refused = KafkaAdminError("create ACLs", 31, "Cluster authorization failed")
    call = _Calls([refused])
    with pytest.raises(KafkaAdminError):
        await _retried(call, time.monotonic() + 30)
    assert call.count == 1
