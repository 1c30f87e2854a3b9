"""The topic catalogue: every topic mdmbus uses, its key, partitions and broker settings.

Topics model the directions of docs/design.md section 3. Keys keep one tenant's (or one device's)
records in order on one partition; the device topics share a partition count so that a device's
session events and its commands land on the same partition number.

How each topic's copies stop being readable (docs/design.md rule 6) is set here, in ``config``, and
said in ``copies``: the broker deletes whole segments, so a record is unreadable at the latest
``segment.ms + retention.ms`` after it was written (plus the broker's retention check interval,
``log.retention.check.interval.ms``, set to 30 s on the embedded broker).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

__all__ = ["TopicSpec", "TOPICS", "topic", "UPLOAD", "RELAY", "RELAY_ACK", "DEVICE_SESSIONS",
           "DEVICE_COMMANDS", "TENANT_LIFECYCLE", "DEAD_LETTER", "SMOKE"]

_MINUTE_MS = 60_000
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS


@dataclass(frozen=True)
class TopicSpec:
    name: str
    #: The record field whose value is the message key.
    key: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    #: Why a copy in this topic becomes unreadable, in words (rule 6).
    copies: str = ""


def _delete(retention_ms: int, segment_ms: int) -> dict[str, str]:
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(retention_ms),
        "segment.ms": str(segment_ms),
        # A size bound too, so a burst cannot keep a segment open past segment.ms.
        "segment.bytes": str(64 * 1024 * 1024),
    }


UPLOAD = "mdm.upload"
RELAY = "mdm.relay"
RELAY_ACK = "mdm.relay.ack"
DEVICE_SESSIONS = "mdm.device.sessions"
DEVICE_COMMANDS = "mdm.device.commands"
TENANT_LIFECYCLE = "mdm.tenant.lifecycle"
DEAD_LETTER = "mdm.deadletter"
SMOKE = "mdm.smoke"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        UPLOAD, key="tenant_id", partitions=6,
        config=_delete(retention_ms=6 * _HOUR_MS, segment_ms=30 * _MINUTE_MS),
        copies="The region store is the record of truth; the topic is a transit buffer: "
               "every copy is gone at most 6.5 h after it was written.",
    ),
    TopicSpec(
        RELAY, key="tenant_id", partitions=6,
        config=_delete(retention_ms=6 * _HOUR_MS, segment_ms=30 * _MINUTE_MS),
        copies="Transit buffer in front of the cloud relay store; gone at most 6.5 h after write.",
    ),
    TopicSpec(
        RELAY_ACK, key="tenant_id", partitions=6,
        config=_delete(retention_ms=6 * _HOUR_MS, segment_ms=30 * _MINUTE_MS),
        copies="Acknowledgements hold ids only, no customer data; kept 6.5 h at most.",
    ),
    TopicSpec(
        DEVICE_SESSIONS, key="device_id", partitions=6,
        config=_delete(retention_ms=30 * _MINUTE_MS, segment_ms=5 * _MINUTE_MS),
        copies="Session events; gone at most 35 min after write.",
    ),
    TopicSpec(
        DEVICE_COMMANDS, key="device_id", partitions=6,
        config=_delete(retention_ms=30 * _MINUTE_MS, segment_ms=5 * _MINUTE_MS),
        copies="Temporary commands must be gone within 1 h of session expiry; a command is "
               "written before its session expires and its copy is gone at most 35 min later.",
    ),
    TopicSpec(
        TENANT_LIFECYCLE, key="tenant_id", partitions=3,
        config=_delete(retention_ms=6 * _HOUR_MS, segment_ms=30 * _MINUTE_MS),
        copies="Transit to the region stores, where each tenant's state lives; not compacted, "
               "since compaction could drop an onboarding before it was applied. Gone at most "
               "6.5 h after write.",
    ),
    TopicSpec(
        DEAD_LETTER, key="tenant_id", partitions=3,
        config=_delete(retention_ms=_DAY_MS, segment_ms=_HOUR_MS),
        copies="Rejected records for operators to inspect; private key material is redacted "
               "before a record is written here; gone at most 25 h after write.",
    ),
    TopicSpec(
        SMOKE, key="probe_id", partitions=1,
        config=_delete(retention_ms=10 * _MINUTE_MS, segment_ms=_MINUTE_MS),
        copies="`mdmbus smoke` probes carry no customer data; gone 11 min after write.",
    ),
)


def topic(name: str) -> TopicSpec:
    for spec in TOPICS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown topic {name!r}; known: {', '.join(t.name for t in TOPICS)}")
