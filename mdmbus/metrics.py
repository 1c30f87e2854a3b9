"""Every Prometheus metric of mdmbus, built in one place from an injected registry.

A process makes one ``Metrics(CollectorRegistry())`` and passes it down; tests make their
own, so nothing leaks between them. Labels are bounded: topic, kind, reason, region, rule,
category, state, group, partition -- never a tenant, device or record id.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["Metrics", "serve", "observe_many"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.records_in = Counter(
            "mdmbus_records_in_total", "Records read from a topic, by topic and kind "
            "(kind 'undecodable' when the bytes are not a known record).",
            ["topic", "kind"], registry=r)
        self.records_valid = Counter(
            "mdmbus_records_valid_total", "Records that passed schema and content validation.",
            ["topic", "kind"], registry=r)
        self.records_invalid = Counter(
            "mdmbus_records_invalid_total", "Records refused by validation, by reason.",
            ["topic", "reason"], registry=r)
        self.records_routed = Counter(
            "mdmbus_records_routed_total", "Valid records routed to their tenant's region store.",
            ["region", "category"], registry=r)
        self.records_stored = Counter(
            "mdmbus_records_stored_total", "Records durably stored (new rows; replays not counted).",
            ["region", "category"], registry=r)
        self.records_duplicate = Counter(
            "mdmbus_records_duplicate_total", "Records already stored (a replay): stored once.",
            ["region", "category"], registry=r)
        self.records_expired = Counter(
            "mdmbus_records_expired_total", "Records that arrived past their deadline (a "
            "command of a session that has expired): not stored.", ["region", "category"],
            registry=r)
        self.dead_letters = Counter(
            "mdmbus_dead_letters_total", "Records sent to the dead-letter topic, by reason.",
            ["source_topic", "reason"], registry=r)
        self.store_batches = Counter(
            "mdmbus_store_write_batches_total", "Store write transactions, by outcome "
            "(ok, or error when the store could not be written and the batch is retried).",
            ["region", "outcome"], registry=r)
        self.store_write_seconds = Histogram(
            "mdmbus_store_write_duration_seconds", "Duration of one store write transaction.",
            ["region"], buckets=_LATENCY_BUCKETS, registry=r)
        self.seal_cpu_seconds = Counter(
            "mdmbus_seal_cpu_seconds_total", "CPU seconds the pipeline spent sealing bodies, "
            "each under a data key of its own: set against the process's CPU, encryption's "
            "share of it.", ["region"], registry=r)
        self.end_to_end_seconds = Histogram(
            "mdmbus_end_to_end_latency_seconds", "From a record's event time to its durable "
            "row, in real seconds.", ["category"], buckets=_LATENCY_BUCKETS, registry=r)
        self.deletions = Counter(
            "mdmbus_deletions_total", "Rows deleted by a privacy rule.",
            ["rule", "region", "category"], registry=r)
        self.deletion_lag_seconds = Histogram(
            "mdmbus_deletion_lag_seconds", "From a row's deadline (or its acknowledgement) to "
            "its deletion, in real seconds.", ["rule"], buckets=_LAG_BUCKETS, registry=r)
        self.rows_past_deadline = Gauge(
            "mdmbus_rows_past_deadline", "Rows still present after their deadline plus the "
            "sweep tolerance. Must read 0.", ["region", "rule"], registry=r)
        self.consumer_lag = Gauge(
            "mdmbus_consumer_lag_messages", "Messages not yet consumed, by consumer group, "
            "topic and partition.", ["group", "topic", "partition"], registry=r)
        self.tenants = Gauge(
            "mdmbus_tenants", "Tenants by lifecycle state and region.",
            ["region", "state"], registry=r)
        self.stored_rows = Gauge(
            "mdmbus_stored_rows", "Rows with data held in each region store, by category.",
            ["region", "category"], registry=r)
        self.relay_downloaded = Counter(
            "mdmbus_relay_downloaded_total", "Relay records committed to the CM database and "
            "acknowledged.", ["kind"], registry=r)
        self.relay_conflicts = Counter(
            "mdmbus_relay_conflicts_total", "Relay records CM already holds under the same "
            "tenant and id with a different body: reported, never acknowledged.", registry=r)
        self.relay_foreign = Counter(
            "mdmbus_relay_foreign_total", "Relay records downloaded that name a tenant other "
            "than the connector's: neither stored nor acknowledged.", registry=r)
        self.lifecycle_events = Counter(
            "mdmbus_lifecycle_events_total", "Tenant lifecycle events applied, by kind.",
            ["kind"], registry=r)
        self.gateway_requests = Counter(
            "mdmbus_gateway_requests_total", "Gateway requests by region, route and status "
            "(aborted: the client went away).", ["region", "route", "status"], registry=r)
        self.gateway_request_seconds = Histogram(
            "mdmbus_gateway_request_duration_seconds", "Gateway request latency.",
            ["region", "route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.gateway_store_busy = Counter(
            "mdmbus_gateway_store_busy_total", "Requests answered 503 because no database "
            "connection became free within MDMBUS_GATEWAY_ACQUIRE_TIMEOUT, by region and "
            "route.", ["region", "route"], registry=r)
        self.gateway_kafka_unavailable = Counter(
            "mdmbus_gateway_kafka_unavailable_total", "Requests answered 503 because Kafka did "
            "not acknowledge their records within MDMBUS_GATEWAY_PRODUCE_TIMEOUT (a broker "
            "away, its partitions moving to new leaders), by region.", ["region"], registry=r)
        self.gateway_connections_cut = Counter(
            "mdmbus_gateway_connections_cut_total", "Client connections the gateway closed to "
            "protect the others: over_cap (MDMBUS_GATEWAY_MAX_CONNECTIONS open already, none "
            "of them idle), source_cap and source_rate (the source address over "
            "MDMBUS_GATEWAY_SOURCE_MAX_CONNECTIONS open, or over MDMBUS_GATEWAY_SOURCE_RATE and "
            "_BURST new connections), idle_closed (idle between requests, closed to make room for a new "
            "one at the cap) or slow_headers (no complete request headers within "
            "MDMBUS_GATEWAY_HEADER_TIMEOUT).",
            ["region", "reason"], registry=r)
        self.gateway_tokens_refused = Counter(
            "mdmbus_gateway_tokens_refused_total", "Bearer tokens refused, by reason.",
            ["reason"], registry=r)
        self.gateway_upload_refused = Counter(
            "mdmbus_gateway_upload_refused_total", "Uploaded records refused, by reason.",
            ["region", "reason"], registry=r)
        self.relay_pending = Gauge(
            "mdmbus_relay_pending", "Relay records stored and not yet downloaded and "
            "acknowledged by CM.", ["region"], registry=r)
        self.relay_pending_oldest_seconds = Gauge(
            "mdmbus_relay_pending_oldest_seconds", "Age of the oldest relay record waiting for "
            "CM (real seconds since it was stored; 0 when none waits).", ["region"], registry=r)
        self.transit_truncations = Counter(
            "mdmbus_transit_truncations_total", "Partitions of a transit topic truncated to "
            "their committed offset (Kafka DeleteRecords) after a batch was durable.",
            ["topic"], registry=r)
        self.transit_readable_age = Gauge(
            "mdmbus_transit_readable_age_seconds", "How long the oldest processed copy still "
            "readable in a transit topic has stayed readable (seconds since it was seen "
            "committed and not truncated).", ["topic"], registry=r)
        self.transit_readable_past_bound = Gauge(
            "mdmbus_transit_readable_past_bound", "Processed copies readable in a transit topic "
            "for longer than its bound (mdmbus/topics.py). Must read 0.", ["topic"], registry=r)
        # Cryptographic erasure (docs/design.md section 9): ids and counts, never a key.
        self.rows_past_kek_retirement = Gauge(
            "mdmbus_rows_past_kek_retirement", "Live rows whose data key is still wrapped under "
            "a KEK retired longer ago than the re-wrap allowance, or destroyed. Must read 0.",
            ["region"], registry=r)
        self.rows_unsealed = Gauge(
            "mdmbus_rows_unsealed", "Live rows stored before bodies were sealed (`mdmbus crypto "
            "upgrade` seals them). Must read 0 after the upgrade.", ["region"], registry=r)
        self.kek_rotations = Counter(
            "mdmbus_kek_rotations_total", "Times a new KEK became current.", ["region"],
            registry=r)
        self.kek_destroyed = Counter(
            "mdmbus_kek_destroyed_total", "Retired KEKs destroyed once nothing live was "
            "wrapped under them.", ["region"], registry=r)
        self.kek_rewrapped = Counter(
            "mdmbus_kek_rewrapped_total", "Data keys re-wrapped under the current KEK.",
            ["region"], registry=r)
        self.kek_age_seconds = Gauge(
            "mdmbus_kek_age_seconds", "Real seconds since the current KEK became current.",
            ["region"], registry=r)


    def prime(self, stores: Iterable[str], rules: Iterable[str] = ()) -> "Metrics":
        """Creates the series that would otherwise appear only at their first event (a store
        error, a rule's first deletion), so dashboards read 0, not "No data", and rate()
        sees the first increment."""
        rules = tuple(rules)
        for store in stores:
            for outcome in ("ok", "error"):
                self.store_batches.labels(store, outcome)
        for rule in rules:
            self.deletion_lag_seconds.labels(rule)
        return self

    def count_deletions(self, deletions) -> None:
        """Counts services.rules.audit.Deletion batches: rows by rule, lag by rule."""
        for d in deletions:
            self.deletions.labels(d.rule, d.region, d.category).inc(d.count)
            observe_many(self.deletion_lag_seconds.labels(d.rule), d.lags_s)


def observe_many(child: Any, amounts: Iterable[float]) -> None:
    """``child.observe(a)`` for each amount, as one update a batch: each bucket and the sum
    incremented once (Histogram.observe takes a lock and walks the buckets per value, which
    on the pipeline's path cost more per record than the rest of its metrics). ``child`` is
    a labelled Histogram (``h.labels(...)``); the result is what observing one by one gives
    (tests/unit/test_metrics_batch.py compares the two expositions), exemplars aside."""
    bounds = child._upper_bounds  # noqa: SLF001 -- prometheus_client's own layout (pinned)
    counts = [0] * len(bounds)
    total = 0.0
    for amount in amounts:
        counts[bisect_left(bounds, amount)] += 1  # the first bound >= amount, as observe()
        total += amount
    if not any(counts):
        return
    child._raise_if_not_observable()  # noqa: SLF001
    child._sum.inc(total)  # noqa: SLF001
    for bucket, n in zip(child._buckets, counts):  # noqa: SLF001
        if n:
            bucket.inc(n)


def serve(metrics: Metrics, port: int, addr: str = "127.0.0.1") -> None:
    """Expose /metrics on ``addr``:``port`` (port 0: don't)."""
    if port:
        start_http_server(port, addr=addr, registry=metrics.registry)
