"""ACLs and SCRAM users on a Kafka cluster, for provisioning: aiokafka's admin client has no
call for either, so the requests are built here from aiokafka's own protocol structs (ACLs:
CreateAcls / DescribeAcls / DeleteAcls v1) and two small flexible structs (KIP-554's
AlterUserScramCredentials / DescribeUserScramCredentials v0).

``sync_acls`` makes the cluster's ACLs exactly the declared ones (mdmbus/identities.py):
missing ones are created, others deleted, then it waits until the broker enforces them (the
controller commits an ACL before the broker applies it; right after a start that took more than
100 ms).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Iterable

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code
from aiokafka.protocol.admin import (CreateAclsRequest_v1, DeleteAclsRequest_v1,
                                     DescribeAclsRequest_v1)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (CompactArray, CompactBytes, CompactString, Int8, Int16,
                                     Int32, Schema, TaggedFields)

from mdmbus.identities import Acl, Op, Pattern, Resource

__all__ = ["SecureAdmin", "SCRAM_MECHANISM"]

SCRAM_MECHANISM = "SCRAM-SHA-512"
_SCRAM = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
_SCRAM_NAMES = {code: name for name, (code, _) in _SCRAM.items()}
_ITERATIONS = 8192


_RESOURCE = {Resource.TOPIC: 2, Resource.GROUP: 3}
_PATTERN = {Pattern.LITERAL: 3, Pattern.PREFIXED: 4}
_OP = {"ALL": 2, "READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6, "ALTER": 7, "DESCRIBE": 8,
       "CLUSTER_ACTION": 9, "DESCRIBE_CONFIGS": 10, "ALTER_CONFIGS": 11,
       "IDEMPOTENT_WRITE": 12}
_OP_NAMES = {code: name for name, code in _OP.items()}
_ALLOW, _ANY = 3, 1
_RESOURCE_NOT_FOUND = 91


def _acl_tuple(acl: Acl) -> tuple:
    """(resource type, name, pattern, principal, host, operation, permission)."""
    return (_RESOURCE[acl.resource], acl.name, _PATTERN[acl.pattern], acl.principal, "*",
            _OP[acl.op.value], _ALLOW)


class _CreateAcls(Request[CreateAclsRequest_v1]):
    API_KEY = 30

    def __init__(self, acls: list[Acl]):
        self._acls = acls

    def build(self, cls):
        return cls([_acl_tuple(a) for a in self._acls])


class _DescribeAcls(Request[DescribeAclsRequest_v1]):
    """Every ACL of the cluster (an all-"any" filter)."""
    API_KEY = 29

    def build(self, cls):
        return cls(_ANY, None, _ANY, None, None, _ANY, _ANY)


class _DeleteAcls(Request[DeleteAclsRequest_v1]):
    API_KEY = 31

    def __init__(self, acls: list[tuple]):
        self._acls = acls

    def build(self, cls):
        return cls(self._acls)


class _AlterScramResponse(Response):
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("results", CompactArray(("user", CompactString("utf-8")), ("error_code", Int16),
                                 ("error_message", CompactString("utf-8")),
                                 ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _AlterScramStruct(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterScramResponse
    SCHEMA = Schema(
        ("deletions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                   ("tags", TaggedFields))),
        ("upsertions", CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8),
                                    ("iterations", Int32), ("salt", CompactBytes),
                                    ("salted_password", CompactBytes), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _AlterScram(Request[_AlterScramStruct]):
    API_KEY = 51

    def __init__(self, deletions: list, upsertions: list):
        self._deletions, self._upsertions = deletions, upsertions

    def build(self, cls):
        return cls(self._deletions, self._upsertions, {})


class _DescribeScramResponse(Response):
    API_KEY = 50
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("error_message", CompactString("utf-8")),
        ("results", CompactArray(
            ("user", CompactString("utf-8")), ("error_code", Int16),
            ("error_message", CompactString("utf-8")),
            ("credential_infos", CompactArray(("mechanism", Int8), ("iterations", Int32),
                                              ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _DescribeScramStruct(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 50
    API_VERSION = 0
    RESPONSE_TYPE = _DescribeScramResponse
    SCHEMA = Schema(
        ("users", CompactArray(("name", CompactString("utf-8")), ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _DescribeScram(Request[_DescribeScramStruct]):
    API_KEY = 50

    def __init__(self, names: list[str]):
        self._names = names

    def build(self, cls):
        return cls([(n, {}) for n in self._names], {})


def _raise(code: int, message: str | None, what: str) -> None:
    if code:
        raise for_code(code)(f"{what}: {message}")


class SecureAdmin(AIOKafkaAdminClient):
    """The admin client with ACLs and SCRAM users. It must act as a super user (the
    provisioning admin) or hold ALTER on the cluster."""

    async def acls(self) -> set[Acl]:
        """Every ALLOW ACL on topics and groups, as declared ACLs (others are skipped: mdmbus
        writes none, and a DENY or a cluster ACL is reported by :meth:`foreign_acls`)."""
        out = set()
        for tuple_ in await self._describe():
            acl = _from_tuple(tuple_)
            if acl is not None:
                out.add(acl)
        return out

    async def foreign_acls(self) -> list[tuple]:
        """ACLs mdmbus cannot have written: DENY rules, host-limited rules, other resources."""
        return [t for t in await self._describe() if _from_tuple(t) is None]

    async def _describe(self) -> list[tuple]:
        resp = await self._send_request(_DescribeAcls())
        _raise(resp.error_code, resp.error_message, "describe ACLs")
        return [(rtype, rname, ptype, principal, host, op, perm)
                for rtype, rname, ptype, acls in resp.resources
                for principal, host, op, perm in acls]

    async def sync_acls(self, declared: Iterable[Acl], timeout: float = 30.0) -> tuple[int, int]:
        """Makes the cluster's ACLs exactly ``declared``; returns (created, deleted) and
        returns once the broker reports them."""
        want = set(declared)
        have_raw = await self._describe()
        have = {_from_tuple(t): t for t in have_raw}
        missing = sorted(want - set(have))
        extra = [t for acl, t in have.items() if acl is None or acl not in want]
        if missing:
            resp = await self._send_request(_CreateAcls(missing))
            for acl, (code, msg) in zip(missing, resp.creation_responses):
                _raise(code, msg, f"create {acl}")
        if extra:
            resp = await self._send_request(_DeleteAcls(extra))
            for code, msg, _ in resp.filter_responses:
                _raise(code, msg, "delete ACLs")
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
        resp = await self._send_request(_DescribeScram(names))
        _raise(resp.error_code, resp.error_message, "describe SCRAM users")
        out: dict[str, list[str]] = {}
        for user, code, msg, infos, _ in resp.results:
            if code == _RESOURCE_NOT_FOUND:  # no such user: absent from the answer
                continue
            _raise(code, msg, f"describe SCRAM user {user}")
            out[user] = [_SCRAM_NAMES.get(m, str(m)) for m, _, _ in infos]
        return out

    async def set_scram_password(self, name: str, password: str,
                                 mechanism: str = SCRAM_MECHANISM) -> None:
        """Creates the user or changes its password. Only a salt and the salted password
        leave this process (over TLS); the broker never sees the password."""
        code, digest = _SCRAM[mechanism]
        salt = os.urandom(32)
        salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, _ITERATIONS)
        resp = await self._send_request(
            _AlterScram([], [(name, code, _ITERATIONS, salt, salted, {})]))
        for user, err, msg, _ in resp.results:
            _raise(err, msg, f"set the SCRAM password of {user}")

    async def delete_scram_user(self, name: str, mechanism: str = SCRAM_MECHANISM) -> None:
        resp = await self._send_request(_AlterScram([(name, _SCRAM[mechanism][0], {})], []))
        for user, err, msg, _ in resp.results:
            _raise(err, msg, f"delete SCRAM user {user}")


def _from_tuple(t: tuple) -> Acl | None:
    rtype, rname, ptype, principal, host, op, perm = t
    resource = {v: k for k, v in _RESOURCE.items()}.get(rtype)
    pattern = {v: k for k, v in _PATTERN.items()}.get(ptype)
    name = _OP_NAMES.get(op)
    if resource is None or pattern is None or perm != _ALLOW or host != "*" \
            or name is None or name not in Op.__members__:
        return None
    return Acl(principal, resource, rname, pattern, Op[name])
