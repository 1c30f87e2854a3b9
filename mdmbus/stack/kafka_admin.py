"""ACLs and SCRAM users on a Kafka cluster, for provisioning, through confluent-kafka's
AdminClient (librdkafka): aiokafka's admin client has no public call for either.

``sync_acls`` makes the cluster's ACLs exactly the declared ones (mdmbus/identities.py):
missing ones are created, others deleted, then it waits until the broker enforces them (the
controller commits an ACL before the broker applies it; right after a start that took more than
100 ms). librdkafka's calls answer with concurrent futures; each is awaited without blocking the
event loop, and a broker's refusal is raised as :class:`KafkaAdminError` with Kafka's error code.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import Future
from typing import Any, Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, ResourcePatternType,
                                   ResourceType, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from mdmbus.identities import Acl, Op, Pattern, Resource

__all__ = ["AclAdmin", "KafkaAdminError", "SCRAM_MECHANISM"]

SCRAM_MECHANISM = "SCRAM-SHA-512"
_SCRAM = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256,
          "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}
_SCRAM_NAMES = {mechanism: name for name, mechanism in _SCRAM.items()}
_ITERATIONS = 8192
#: Kafka's RESOURCE_NOT_FOUND: describing a SCRAM user that does not exist.
_RESOURCE_NOT_FOUND = 91

_RESOURCE = {Resource.TOPIC: ResourceType.TOPIC, Resource.GROUP: ResourceType.GROUP}
_PATTERN = {Pattern.LITERAL: ResourcePatternType.LITERAL,
            Pattern.PREFIXED: ResourcePatternType.PREFIXED}
#: None matches any name, principal and host in a filter (confluent-kafka documents it; its type
#: hints say str only).
_ANY: Any = None
_EVERY_ACL = AclBindingFilter(ResourceType.ANY, _ANY, ResourcePatternType.ANY, _ANY, _ANY,
                              AclOperation.ANY, AclPermissionType.ANY)


class KafkaAdminError(Exception):
    """The broker refused an administrative request; ``code`` is Kafka's error code, and
    ``retriable`` says whether the same request may succeed later (a timeout on a cluster that
    has just started, a leader moving)."""

    def __init__(self, what: str, code: int, reason: str, retriable: bool = False):
        super().__init__(f"{what}: {reason} (Kafka error {code})")
        self.code, self.retriable = code, retriable


def binding(acl: Acl) -> AclBinding:
    """The declared ACL as librdkafka's binding (host "*", ALLOW)."""
    return AclBinding(_RESOURCE[acl.resource], acl.name, _PATTERN[acl.pattern], acl.principal,
                      "*", AclOperation[acl.op.value], AclPermissionType.ALLOW)


def declared(bound: AclBinding) -> Acl | None:
    """The ACL mdmbus could have declared, or None for one it never writes (DENY, a host
    limit, a cluster or transactional-id resource, an operation it does not use)."""
    resource = next((k for k, v in _RESOURCE.items() if v == bound.restype), None)
    pattern = next((k for k, v in _PATTERN.items() if v == bound.resource_pattern_type), None)
    operation = bound.operation
    if resource is None or pattern is None or bound.host != "*" \
            or bound.permission_type != AclPermissionType.ALLOW \
            or not isinstance(operation, AclOperation) or operation.name not in Op.__members__:
        return None
    return Acl(bound.principal, resource, bound.name, pattern, Op[operation.name])


async def _result(future: Future, what: str) -> Any:
    try:
        return await asyncio.wrap_future(future)
    except KafkaException as exc:
        error = exc.args[0]
        raise KafkaAdminError(what, error.code(), error.str(), error.retriable()) from None


class AclAdmin:
    """The ACL and SCRAM administration of one cluster, as the principal its librdkafka
    configuration names (connections.librdkafka_config): the provisioning admin, or, in the
    tests, a principal that must be refused. It must act as a super user or hold ALTER on the
    cluster."""

    def __init__(self, config: dict[str, Any], request_timeout_s: float = 10.0):
        self._client = AdminClient(dict(config))
        self._timeout = request_timeout_s

    async def acls(self) -> set[Acl]:
        """Every ALLOW ACL on topics and groups, as declared ACLs (others are skipped: mdmbus
        writes none, and a DENY or a cluster ACL is reported by :meth:`foreign_acls`)."""
        return {acl for acl in map(declared, await self._describe()) if acl is not None}

    async def foreign_acls(self) -> list[AclBinding]:
        """ACLs mdmbus cannot have written: DENY rules, host-limited rules, other resources."""
        return [b for b in await self._describe() if declared(b) is None]

    async def _describe(self) -> list[AclBinding]:
        return await _result(self._client.describe_acls(
            _EVERY_ACL, request_timeout=self._timeout), "describe ACLs")

    async def create_acls(self, acls: Iterable[Acl]) -> None:
        for acl, future in self._client.create_acls(
                [binding(a) for a in acls], request_timeout=self._timeout).items():
            await _result(future, f"create {acl}")

    async def delete_acls(self, bindings: Iterable[AclBinding]) -> None:
        """Deletes exactly the given bindings (each used as a filter that matches only it)."""
        filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal,
                                    b.host, b.operation, b.permission_type) for b in bindings]
        if not filters:
            return
        for _, future in self._client.delete_acls(filters,
                                                  request_timeout=self._timeout).items():
            await _result(future, "delete ACLs")

    async def sync_acls(self, wanted: Iterable[Acl], timeout: float = 30.0) -> tuple[int, int]:
        """Makes the cluster's ACLs exactly ``wanted``; returns (created, deleted) and
        returns once the broker reports them."""
        want = set(wanted)
        have = {b: declared(b) for b in await self._describe()}
        missing = sorted(want - set(have.values()))
        extra = [b for b, acl in have.items() if acl is None or acl not in want]
        if missing:
            await self.create_acls(missing)
        await self.delete_acls(extra)
        deadline = time.monotonic() + timeout
        while await self.acls() != want or await self.foreign_acls():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker does not report the declared ACLs after "
                                   f"{timeout:.0f} s")
            await asyncio.sleep(0.05)
        return len(missing), len(extra)

    async def scram_users(self, names: list[str]) -> dict[str, list[str]]:
        """user -> its SCRAM mechanisms, for those of ``names`` that exist (asking for every user, as a principal
        without DESCRIBE on the cluster, makes Kafka 4.3.1 drop the connection instead of
        answering with an error)."""
        out: dict[str, list[str]] = {}
        futures = self._client.describe_user_scram_credentials(names,
                                                               request_timeout=self._timeout)
        assert isinstance(futures, dict)  # one future a user when users are named
        for user, future in futures.items():
            try:
                description = await _result(future, f"describe SCRAM user {user}")
            except KafkaAdminError as exc:
                if exc.code == _RESOURCE_NOT_FOUND:  # no such user: absent from the answer
                    continue
                raise
            out[user] = [_SCRAM_NAMES.get(i.mechanism, str(i.mechanism))
                         for i in description.scram_credential_infos]
        return out

    async def set_scram_password(self, name: str, password: str,
                                 mechanism: str = SCRAM_MECHANISM) -> None:
        """Creates the user or changes its password. librdkafka salts and hashes it here, so
        only a salt and the salted password leave this process (over TLS): the broker never
        sees the password."""
        upsert = UserScramCredentialUpsertion(
            name, ScramCredentialInfo(_SCRAM[mechanism], _ITERATIONS), password.encode(),
            os.urandom(32))
        for _, future in self._client.alter_user_scram_credentials(
                [upsert], request_timeout=self._timeout).items():
            await _result(future, f"set the SCRAM password of {name}")

    async def delete_scram_user(self, name: str, mechanism: str = SCRAM_MECHANISM) -> None:
        for _, future in self._client.alter_user_scram_credentials(
                [UserScramCredentialDeletion(name, _SCRAM[mechanism])],
                request_timeout=self._timeout).items():
            await _result(future, f"delete SCRAM user {name}")
