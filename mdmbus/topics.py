"""The topic catalogue: every topic mdmbus uses, per region, with its key, partitions, broker
settings, the consumer groups that read it, and how long a copy in it stays readable.

Topics model the directions of docs/design.md section 3. Each region has its own record
topics (``mdm.<region>.upload`` ...); only the tenant lifecycle topic is global, and it carries
no personal data. Keys keep one tenant's (or one device's) records in order on one partition;
the device topics share a partition count so that a device's session events and its commands
land on the same partition number.

How a copy stops being readable (docs/design.md rules 6 and 7) is declared here:

- a **transit** topic (``readers`` set) is truncated by its readers' consumer once a batch is
  durable in its store and committed (Kafka's DeleteRecords, ``mdmbus.streams.transit``), never
  past the lowest offset any reader group has committed: the copy is unreadable through Kafka
  within ``unreadable_s`` of its commit, and removed from disk within ``removed_s`` (the next
  segment roll, the broker's retention check, the delayed file delete);
- every topic is also bounded by time (``cleanup.policy=delete``): whatever happens, a copy is
  gone from disk at most ``bound_s`` after it was written.

The bounds assume the broker checks retention every :data:`RETENTION_CHECK_MS` (the embedded
broker's and compose's ``log.retention.check.interval.ms``); a test reads every topic's
configuration back from the broker and recomputes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Iterable, Mapping

from mdmbus.regions import REGIONS

__all__ = ["TopicKind", "TopicSpec", "TOPICS", "spec_of", "topic_name", "parse_topic",
           "regional_topics", "all_topics", "group_name", "RETENTION_CHECK_MS",
           "TRUNCATE_INTERVAL_S", "MARKER_HEADER"]

_SECOND_MS = 1000
_MINUTE_MS = 60 * _SECOND_MS
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS

#: The broker's retention check interval the bounds below assume (server.properties.in).
RETENTION_CHECK_MS = 10 * _SECOND_MS
#: How often a consumer truncates what it has committed (real seconds; the bounds assume it).
TRUNCATE_INTERVAL_S = 2.0
#: Header of a record that carries nothing (no value, a constant key): appended to an idle transit
#: partition so that its segment of truncated copies rolls and is removed from disk
#: (services/transit_watch.py); readers skip it.
MARKER_HEADER = "mdmbus.marker"


class TopicKind(StrEnum):
    """What a topic carries; a schema's ``"mdmbus": {"topic": ...}`` names one of these."""

    UPLOAD = "upload"
    RELAY = "relay"
    DEVICE_SESSIONS = "device.sessions"
    DEVICE_COMMANDS = "device.commands"
    DEAD_LETTER = "deadletter"
    TENANT_LIFECYCLE = "tenant.lifecycle"
    DELETION_REQUESTS = "deletion.requests"
    SMOKE = "smoke"


def _config(retention_ms: int, segment_ms: int) -> dict[str, str]:
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(retention_ms),
        "segment.ms": str(segment_ms),
        # A size bound too, so a burst cannot keep a segment open past segment.ms.
        "segment.bytes": str(64 * 1024 * 1024),
        # A deleted segment's files go one second later, not the default minute.
        "file.delete.delay.ms": str(_SECOND_MS),
    }


@dataclass(frozen=True)
class TopicSpec:
    kind: TopicKind
    #: The envelope field whose value is the message key.
    key: str
    partitions: int
    #: One topic per region (``mdm.<region>.<kind>``), or one global topic (``mdm.<kind>``).
    regional: bool
    config: Mapping[str, str] = field(default_factory=dict)
    #: The processes whose consumer groups must have committed past a record before its copy
    #: may be truncated; empty: not a transit topic (its copies live until retention).
    readers: tuple[str, ...] = ()
    #: What a copy here holds and why it may stay as long as it does, in words.
    copies: str = ""
    #: The topic kind whose records this one carries, where it is not its own: the contract
    #: names one topic kind a schema belongs on, and a topic that carries another's records
    #: (a region's deletion requests are lifecycle records) is checked against that one.
    carries: TopicKind | None = None

    @property
    def contract_kind(self) -> TopicKind:
        return self.carries or self.kind

    def name(self, region: str | None = None) -> str:
        if self.regional:
            if region not in REGIONS:
                raise ValueError(f"{self.kind} topics are per region; {region!r} is not one of "
                                 f"{', '.join(REGIONS)}")
            return f"mdm.{region}.{self.kind}"
        return f"mdm.{self.kind}"

    @property
    def transit(self) -> bool:
        return bool(self.readers)

    @property
    def bound_s(self) -> float:
        """Gone from disk at most this long after it was written, whatever happens."""
        cfg = self.config
        return (int(cfg["retention.ms"]) + int(cfg["segment.ms"]) + RETENTION_CHECK_MS
                + int(cfg["file.delete.delay.ms"])) / 1000

    @property
    def unreadable_s(self) -> float:
        """A processed copy is unreadable through Kafka at most this long after its offset
        was committed (transit topics); other topics: ``bound_s`` after it was written."""
        return 2 * TRUNCATE_INTERVAL_S if self.transit else self.bound_s

    @property
    def removed_s(self) -> float:
        """A processed copy is removed from disk at most this long after its commit (transit
        topics): its segment rolls within ``segment.ms`` (an idle partition is rolled by a
        marker record the pipeline appends, mdmbus.streams.transit), and the roll is followed
        by a truncation, a retention check and the delayed file delete."""
        if not self.transit:
            return self.bound_s
        cfg = self.config
        return (self.unreadable_s * 2 + int(cfg["segment.ms"]) / 1000 + 2 * RETENTION_CHECK_MS
                / 1000 + int(cfg["file.delete.delay.ms"]) / 1000)


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        TopicKind.UPLOAD, key="tenant_id", partitions=6, regional=True,
        config=_config(retention_ms=6 * _HOUR_MS, segment_ms=_MINUTE_MS), readers=("pipeline",),
        copies="Transit to the region store (the gateway writes, the pipeline stores): truncated "
               "once stored; bounded by 6 h if the pipeline is down that long.",
    ),
    TopicSpec(
        TopicKind.RELAY, key="tenant_id", partitions=6, regional=True,
        config=_config(retention_ms=6 * _HOUR_MS, segment_ms=_MINUTE_MS), readers=("pipeline",),
        copies="Transit to the region store, from which CM downloads through the gateway: "
               "truncated once stored.",
    ),
    TopicSpec(
        TopicKind.DEVICE_SESSIONS, key="device_id", partitions=6, regional=True,
        config=_config(retention_ms=30 * _MINUTE_MS, segment_ms=_MINUTE_MS),
        readers=("pipeline",),
        copies="Session events and device un-enrolments: truncated once applied.",
    ),
    TopicSpec(
        TopicKind.DEVICE_COMMANDS, key="device_id", partitions=6, regional=True,
        config=_config(retention_ms=30 * _MINUTE_MS, segment_ms=_MINUTE_MS),
        readers=("pipeline",),
        copies="Temporary commands: truncated once stored (the store deletes them at session "
               "expiry); never readable for more than 31 min in any case.",
    ),
    TopicSpec(
        TopicKind.DEAD_LETTER, key="tenant_id", partitions=3, regional=True,
        config=_config(retention_ms=_DAY_MS, segment_ms=_HOUR_MS),
        copies="Refusal notices: reason, field, source offset, record and tenant ids; never a "
               "body (bodies are in the region store's dead_letters table, under its rules).",
    ),
    TopicSpec(
        TopicKind.TENANT_LIFECYCLE, key="tenant_id", partitions=3, regional=False,
        config=_config(retention_ms=7 * _DAY_MS, segment_ms=_HOUR_MS),
        copies="Global; tenant ids, countries, states and times, no personal data. Every "
               "region's pipeline reads it; the directory keeps each tenant's state, so a "
               "replay cannot bring a purged tenant back. Not compacted: compaction could drop "
               "an onboarding before it was applied.",
    ),
    TopicSpec(
        TopicKind.DELETION_REQUESTS, key="tenant_id", partitions=3, regional=True,
        config=_config(retention_ms=6 * _HOUR_MS, segment_ms=_MINUTE_MS), readers=("pipeline",),
        carries=TopicKind.TENANT_LIFECYCLE,
        copies="A region's tenants' deletion requests, from that region's gateway only, read by "
               "that region's pipeline only, which acts on them only for tenants of its region: "
               "a regional credential cannot reach another region's tenants. Tenant ids and "
               "times, no personal data; truncated once applied.",
    ),
    TopicSpec(
        TopicKind.SMOKE, key="probe_id", partitions=1, regional=False,
        config=_config(retention_ms=10 * _MINUTE_MS, segment_ms=_MINUTE_MS),
        copies="`mdmbus smoke` probes carry no customer data.",
    ),
)


@lru_cache(maxsize=None)
def spec_of(kind: str) -> TopicSpec:
    for spec in TOPICS:
        if spec.kind == kind:
            return spec
    raise KeyError(f"unknown topic kind {kind!r}; known: {', '.join(t.kind for t in TOPICS)}")


def topic_name(kind: str, region: str | None = None) -> str:
    """``mdm.<region>.<kind>`` for a regional kind, ``mdm.<kind>`` for a global one."""
    return spec_of(kind).name(region)


def regional_topics(region: str) -> list[tuple[str, TopicSpec]]:
    """(name, spec) of every topic of ``region``."""
    return [(spec.name(region), spec) for spec in TOPICS if spec.regional]


def all_topics(regions: Iterable[str] = REGIONS) -> list[tuple[str, TopicSpec]]:
    """(name, spec) of every topic of the given regions, and every global topic."""
    out = [(spec.name(), spec) for spec in TOPICS if not spec.regional]
    for region in regions:
        out += regional_topics(region)
    return out


@lru_cache(maxsize=1024)
def parse_topic(name: str) -> tuple[TopicSpec, str | None]:
    """(spec, region) of a topic name; KeyError for a name that is not mdmbus's."""
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "mdm" and parts[1] in REGIONS:
        spec = spec_of(parts[2])
        if spec.regional:
            return spec, parts[1]
    elif parts[0] == "mdm":
        spec = spec_of(name[4:])
        if not spec.regional:
            return spec, None
    raise KeyError(f"{name!r} is not an mdmbus topic")


def group_name(process: str, region: str) -> str:
    """The consumer group of ``process`` in ``region`` (e.g. ``mdmbus-eu-pipeline``)."""
    return f"mdmbus-{region}-{process}"
