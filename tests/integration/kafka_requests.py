"""Kafka's ACL and SCRAM administration requests built by hand from aiokafka's protocol structs,
for the tests only: they show the broker's own answer code to a principal that must be refused.
The product administers through confluent-kafka's AdminClient (mdmbus/stack/kafka_admin.py),
which cannot serve as this oracle: confluent-kafka 2.16.1 answers a refused DescribeAcls with an
empty list, and a refused DescribeUserScramCredentials aborts the process (munmap_chunk)."""

from __future__ import annotations

from aiokafka.protocol.admin import (CreateAclsRequest_v1, DeleteAclsRequest_v1,
                                     DescribeAclsRequest_v1)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (CompactArray, CompactBytes, CompactString, Int8, Int16,
                                     Int32, Schema, TaggedFields)

from mdmbus.identities import Acl, Pattern, Resource

_RESOURCE = {Resource.TOPIC: 2, Resource.GROUP: 3}
_PATTERN = {Pattern.LITERAL: 3, Pattern.PREFIXED: 4}
_OP = {"ALL": 2, "READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6, "ALTER": 7, "DESCRIBE": 8,
       "CLUSTER_ACTION": 9, "DESCRIBE_CONFIGS": 10, "ALTER_CONFIGS": 11,
       "IDEMPOTENT_WRITE": 12}
_ALLOW, _ANY = 3, 1


def acl_tuple(acl: Acl) -> tuple:
    """(resource type, name, pattern, principal, host, operation, permission)."""
    return (_RESOURCE[acl.resource], acl.name, _PATTERN[acl.pattern], acl.principal, "*",
            _OP[acl.op.value], _ALLOW)


class CreateAcls(Request[CreateAclsRequest_v1]):
    API_KEY = 30

    def __init__(self, acls: list[Acl]):
        self._acls = acls

    def build(self, cls):
        return cls([acl_tuple(a) for a in self._acls])


class DescribeAcls(Request[DescribeAclsRequest_v1]):
    """Every ACL of the cluster (an all-"any" filter)."""
    API_KEY = 29

    def build(self, cls):
        return cls(_ANY, None, _ANY, None, None, _ANY, _ANY)


class DeleteAcls(Request[DeleteAclsRequest_v1]):
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


class AlterScram(Request[_AlterScramStruct]):
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


class DescribeScram(Request[_DescribeScramStruct]):
    API_KEY = 50

    def __init__(self, names: list[str]):
        self._names = names

    def build(self, cls):
        return cls([(n, {}) for n in self._names], {})
