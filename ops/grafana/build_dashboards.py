#!/usr/bin/env python3
"""Writes mdmbus's Grafana dashboards (ops/grafana/dashboards/*.json) from the panels below.

    python ops/grafana/build_dashboards.py           # rewrite the JSON files
    python ops/grafana/build_dashboards.py --check   # exit 1 if a committed file is stale

Edit this file, not the JSON: tests/unit/test_ops_config.py fails when the committed JSON
differs from what this script writes. Standard library and mdmbus.topics (read from this
checkout, for the transit topics' bound); nothing in mdmbus imports this script.

Every panel has a title, a description and a unit, and reads the Prometheus datasource that
ops/grafana/provisioning/datasources/prometheus.yml provisions under a fixed uid. Queries use
the metrics of mdmbus/metrics.py, scraped as job="mdmbus" with a `process` label
(ops/prometheus/prometheus.yml, prometheus.compose.yml; under compose a regional process's
target also has a `region` label). Labels stay bounded: region, topic, route, status, reason,
rule, category -- never a tenant, device or record.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # run as a script from anywhere: mdmbus of this checkout
    sys.path.insert(0, str(REPO_ROOT))

from mdmbus.topics import TOPICS, TRUNCATE_INTERVAL_S  # noqa: E402  (stdlib-only module)

DATASOURCE_UID = "mdmbus-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
OUT_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 39

#: Deletion lag limits (docs/design.md rule 3): the source allows an hour after session expiry,
#: mdmbus aims at seconds.
SESSION_EXPIRY_ALLOWED_S = 3600
SESSION_EXPIRY_TARGET_S = 5
#: How long a processed copy may stay readable in a transit topic (docs/design.md rule 6):
#: mdmbus/topics.py's unreadable_s, twice the truncation interval; the transit watch counts the
#: copies readable longer than that in mdmbus_transit_readable_past_bound.
TRANSIT_UNREADABLE_S = max(spec.unreadable_s for spec in TOPICS if spec.transit)
#: What MdmbusRelayPendingTooLong (ops/prometheus/alerts.yml) calls too long a wait for CM.
RELAY_PENDING_ALERT_S = 3600

RATE = "$__rate_interval"

Panel = dict[str, Any]


# --- panel builders ----------------------------------------------------------------------------

def _target(ref: str, expr: str, legend: str = "", instant: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"refId": ref, "datasource": DATASOURCE, "expr": expr,
                         "legendFormat": legend or "__auto", "range": not instant,
                         "instant": instant}
    return t


def _targets(queries: list[tuple[str, str]], instant: bool = False) -> list[dict[str, Any]]:
    return [_target(chr(ord("A") + i), expr, legend, instant) for i, (expr, legend) in enumerate(queries)]


def _thresholds(steps: list[tuple[float | None, str]]) -> dict[str, Any]:
    return {"mode": "absolute",
            "steps": [{"color": color, "value": value} for value, color in steps]}


def timeseries(title: str, description: str, unit: str, queries: list[tuple[str, str]], *,
               w: int = 12, h: int = 8, stack: bool = False, log_scale: bool = False,
               thresholds: list[tuple[float | None, str]] | None = None, min0: bool = True) -> Panel:
    custom: dict[str, Any] = {
        "drawStyle": "line", "lineWidth": 1, "fillOpacity": 15 if stack else 0,
        "showPoints": "never", "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "line+area" if thresholds else "off"},
    }
    if log_scale:
        custom["scaleDistribution"] = {"type": "log", "log": 10}
    defaults: dict[str, Any] = {
        "unit": unit, "custom": custom, "color": {"mode": "palette-classic"},
        "thresholds": _thresholds(thresholds or [(None, "green")]),
    }
    if min0 and not log_scale:
        defaults["min"] = 0
    return {
        "type": "timeseries", "title": title, "description": description,
        "datasource": DATASOURCE, "_size": (w, h),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                               "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": _targets(queries),
    }


def stat(title: str, description: str, unit: str, queries: list[tuple[str, str]], *,
         w: int = 6, h: int = 5, thresholds: list[tuple[float | None, str]] | None = None,
         mappings: list[dict[str, Any]] | None = None, color_mode: str = "background") -> Panel:
    return {
        "type": "stat", "title": title, "description": description,
        "datasource": DATASOURCE, "_size": (w, h),
        "fieldConfig": {"defaults": {
            "unit": unit, "color": {"mode": "thresholds"},
            "thresholds": _thresholds(thresholds or [(None, "green")]),
            "mappings": mappings or [],
        }, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": color_mode, "graphMode": "area", "justifyMode": "auto",
                    "orientation": "auto", "textMode": "auto"},
        "targets": _targets(queries),
    }


def row(title: str) -> Panel:
    """A (non-collapsed) row: the panels after it, up to the next row, are its panels."""
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def bargauge(title: str, description: str, unit: str, queries: list[tuple[str, str]], *,
             w: int = 12, h: int = 8) -> Panel:
    return {
        "type": "bargauge", "title": title, "description": description,
        "datasource": DATASOURCE, "_size": (w, h),
        "fieldConfig": {"defaults": {
            "unit": unit, "min": 0, "color": {"mode": "palette-classic"},
            "thresholds": _thresholds([(None, "green")]),
        }, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True},
        "targets": _targets(queries, instant=True),
    }


def _quantiles(metric: str, by: str, selector: str = "", qs: tuple[float, ...] = (0.5, 0.99),
               window: str = RATE) -> list[tuple[str, str]]:
    sel = "{" + selector + "}" if selector else ""
    group = f"{by}, le" if by else "le"
    label = "".join("{{" + b.strip() + "}} " for b in by.split(",")) if by else ""
    return [(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{sel}[{window}])))",
             f"{label}p{round(q * 100):d}") for q in qs]


def _layout(panels: list[Panel]) -> list[Panel]:
    """Left to right, top to bottom, 24 columns wide; ids in order. A row starts a new line."""
    x = y = row_h = 0
    out = []
    for i, p in enumerate(panels, start=1):
        w, h = p.pop("_size")
        if x + w > 24 or (p["type"] == "row" and x > 0):
            x, y, row_h = 0, y + row_h, 0
        out.append({"id": i, "gridPos": {"h": h, "w": w, "x": x, "y": y}, **p})
        x += w
        row_h = max(row_h, h)
    return out


def dashboard(uid: str, title: str, description: str, panels: list[Panel],
              variables: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "uid": uid, "title": title, "description": description,
        "tags": ["mdmbus"], "timezone": "browser", "editable": True,
        "graphTooltip": 1, "refresh": "10s", "schemaVersion": SCHEMA_VERSION, "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["mdmbus"], "asDropdown": False,
                   "includeVars": False, "keepTime": True, "title": "mdmbus dashboards"}],
        "templating": {"list": variables or []},
        "panels": _layout(panels),
    }


# --- (a) pipeline overview -------------------------------------------------------------------

def pipeline_overview() -> dict[str, Any]:
    p = [
        stat("Processes up", "Whether Prometheus can scrape each mdmbus process (pipeline, "
             "sweeper, gateway, cm-connector; under compose the first three once per region). "
             "DOWN raises the MdmbusTargetDown alert.", "none",
             [('up{job="mdmbus"}', "{{process}} {{region}}")], w=8,
             thresholds=[(None, "red"), (1, "green")],
             mappings=[{"type": "value", "options": {
                 "0": {"text": "DOWN", "color": "red", "index": 0},
                 "1": {"text": "UP", "color": "green", "index": 1}}}]),
        stat("Dead letters (1 h)", "Records refused over the last hour, every region and "
             "reason (notices on mdm.<region>.deadletter; bodies listed by `mdmbus deadletters "
             "list --region R`).", "short",
             [("sum(increase(mdmbus_dead_letters_total[1h]))", "dead letters")], w=4,
             thresholds=[(None, "green"), (1, "yellow")]),
        stat("Store write errors (1 h)", "Store write transactions that failed (and were "
             "retried) over the last hour, every store. Should be 0.", "short",
             [('sum(increase(mdmbus_store_write_batches_total{outcome="error"}[1h]) or 0 * '
               "increase(mdmbus_store_write_batches_total[1h]))", "errors")], w=4,
             thresholds=[(None, "green"), (1, "red")]),
        stat("Consumer lag", "Messages not yet consumed, all mdmbus consumer groups "
             "(mdmbus-<region>-pipeline) and topics.",
             "short", [("sum(mdmbus_consumer_lag_messages)", "lag")], w=4,
             thresholds=[(None, "green"), (1000, "yellow")]),
        stat("Records in", "Records read from the input topics per second, every topic.", "cps",
             [(f"sum(rate(mdmbus_records_in_total[{RATE}]))", "records/s")], w=4,
             color_mode="value"),

        timeseries("Records in, valid and invalid by topic", "Throughput per input topic: "
                   "records read (in), accepted by schema and content validation (valid) and "
                   "refused (invalid, sent to the dead letters).", "cps", [
                       (f"sum by (topic) (rate(mdmbus_records_in_total[{RATE}]))", "{{topic}} in"),
                       (f"sum by (topic) (rate(mdmbus_records_valid_total[{RATE}]))", "{{topic}} valid"),
                       (f"sum by (topic) (rate(mdmbus_records_invalid_total[{RATE}]))", "{{topic}} invalid"),
                   ]),
        timeseries("Records by kind", "Records read per second by record kind (U1-U14 upload, "
                   "R1-R6 relay, commands, sessions, lifecycle; 'undecodable' for bytes that "
                   "are no known record), every region.", "cps",
                   [(f"sum by (kind) (rate(mdmbus_records_in_total[{RATE}]))", "{{kind}}")],
                   stack=True),

        timeseries("Routed, stored and duplicate records", "Valid records routed to their "
                   "tenant's region store, new rows durably stored, replays recognised "
                   "as already stored (stored once, counted here), and records that arrived "
                   "past their deadline (a command of an expired session: not stored).", "cps", [
                       (f"sum(rate(mdmbus_records_routed_total[{RATE}]))", "routed"),
                       (f"sum(rate(mdmbus_records_stored_total[{RATE}]))", "stored"),
                       (f"sum(rate(mdmbus_records_duplicate_total[{RATE}]))", "duplicate (replay)"),
                       (f"sum(rate(mdmbus_records_expired_total[{RATE}]))", "expired on arrival"),
                   ]),
        timeseries("Stored records by region and category", "New rows per second in each "
                   "region store, by category (upload, relay, inventory_cache, command, "
                   "session).", "cps",
                   [(f"sum by (region, category) (rate(mdmbus_records_stored_total[{RATE}]))",
                     "{{region}} {{category}}")], stack=True),

        timeseries("Store write latency by region", "Duration of one store write transaction "
                   "(a batch of records), median and 99th percentile, per region store.", "s",
                   _quantiles("mdmbus_store_write_duration_seconds", "region")),
        timeseries("Sealing CPU per stored record", "CPU time the pipeline spends sealing a "
                   "record's body under a data key of its own (AES-256-GCM, the key wrapped "
                   "by the region's KEK), per record stored, per region: encryption's cost "
                   "where it is paid. BENCHMARKS.md sets it against the worker's whole CPU a "
                   "record (target: under 10 %).", "s",
                   [(f"sum by (region) (rate(mdmbus_seal_cpu_seconds_total[{RATE}])) / "
                     f"sum by (region) (rate(mdmbus_records_stored_total[{RATE}]))",
                     "{{region}}")]),
        timeseries("End-to-end latency", "From a record's event time to its durable row in the "
                   "region store, in real seconds: median and 99th percentile over every "
                   "category, and the 99th percentile per category.", "s",
                   _quantiles("mdmbus_end_to_end_latency_seconds", "")
                   + _quantiles("mdmbus_end_to_end_latency_seconds", "category", qs=(0.99,))),

        timeseries("Consumer lag by group and topic", "Messages not yet consumed, per consumer "
                   "group (mdmbus-<region>-pipeline) and topic (mdm.<region>.<kind>), summed "
                   "over partitions, measured by the sweeper. MdmbusConsumerLagHigh fires above "
                   "1000 for 5 minutes.", "short",
                   [("sum by (group, topic) (mdmbus_consumer_lag_messages)", "{{group}} {{topic}}")],
                   thresholds=[(None, "green"), (1000, "red")]),
        timeseries("Dead letters by reason", "Records refused per second, by source topic and "
                   "reason (undecodable, schema or content violations, tenant_not_onboarded, "
                   "tenant_in_retention, ...); notices on the source region's "
                   "mdm.<region>.deadletter.", "cps",
                   [(f"sum by (source_topic, reason) (rate(mdmbus_dead_letters_total[{RATE}]))",
                     "{{source_topic}} {{reason}}")], stack=True),

        timeseries("Store write errors by store", "Failed store write transactions per second "
                   "(retried until the store answers), per store: a region, cm, lifecycle (the "
                   "directory), or all (a process connecting to its stores). 0 when healthy; "
                   "MdmbusStoreWriteFailing fires above 0.", "cps",
                   [(f'sum by (region) (rate(mdmbus_store_write_batches_total{{outcome="error"}}[{RATE}])'
                     f" or 0 * rate(mdmbus_store_write_batches_total[{RATE}]))", "{{region}}")],
                   thresholds=[(None, "green"), (0.0001, "red")]),
        timeseries("Store write batches by store and outcome", "Store write transactions per "
                   "second by store and outcome (ok, error).", "cps",
                   [(f"sum by (region, outcome) (rate(mdmbus_store_write_batches_total[{RATE}]))",
                     "{{region}} {{outcome}}")]),

        timeseries("Relay records downloaded by CM", "Relay records committed to the CM database "
                   "and acknowledged through the region's gateway, per second by kind; each "
                   "acknowledgement deletes the cloud copy (delete after download).", "cps",
                   [(f"sum by (kind) (rate(mdmbus_relay_downloaded_total[{RATE}]))", "{{kind}}")],
                   stack=True),
        timeseries("Relay records CM did not take", "Relay records the CM connector did not "
                   "acknowledge since it started: conflicts (CM already holds another body "
                   "under the same tenant and record id) and records naming another tenant "
                   "than the connector's. Both stay in the cloud until an operator decides; 0 "
                   "when healthy.", "short",
                   [("sum(mdmbus_relay_conflicts_total)", "conflicts"),
                    ("sum(mdmbus_relay_foreign_total)", "another tenant's")],
                   thresholds=[(None, "green"), (1, "red")]),
        timeseries("Tenant lifecycle events", "Lifecycle events applied per second by kind "
                   "(onboarded, subscription ended, cancelled, device unenrolled, ...).", "cps",
                   [(f"sum by (kind) (rate(mdmbus_lifecycle_events_total[{RATE}]))", "{{kind}}")],
                   stack=True),

        timeseries("Transit truncations by topic", "Partitions of each transit topic truncated "
                   "per second by the pipeline (Kafka DeleteRecords up to the committed offset, "
                   "once a batch is durable in its store): what makes processed copies "
                   "unreadable (rule 6). A topic with traffic and no truncations keeps its "
                   "copies readable (MdmbusTransitCopiesReadable).", "ops",
                   [(f"sum by (topic) (rate(mdmbus_transit_truncations_total[{RATE}]))", "{{topic}}")]),
        timeseries("Relay records waiting for CM by region", "Relay records stored in each "
                   "region and not yet downloaded and acknowledged by CM, measured by the "
                   "sweeper. They are kept until CM acknowledges them; MdmbusRelayPendingTooLong "
                   "fires when the oldest has waited over an hour.", "short",
                   [("sum by (region) (mdmbus_relay_pending)", "{{region}}")], stack=True),

        row("Gateway"),
        timeseries("Gateway requests by route and status", "Requests per second to the "
                   "regions' gateways (the tenants' and CM's HTTPS door), by route and HTTP "
                   "status ('aborted': the client went away). MdmbusGatewayErrors fires on 5xx.",
                   "reqps",
                   [(f"sum by (route, status) (rate(mdmbus_gateway_requests_total[{RATE}]))",
                     "{{route}} {{status}}")], stack=True),
        timeseries("Gateway latency p99 by route", "99th percentile of the gateways' request "
                   "duration, per route, every region.", "s",
                   _quantiles("mdmbus_gateway_request_duration_seconds", "route", qs=(0.99,))),
        timeseries("Tokens refused by reason", "Bearer tokens refused per second by the "
                   "gateways, by reason (missing, malformed, expired, bad signature, bad claim, "
                   "...). MdmbusTokensRefusedHigh fires above 1 per second for 10 minutes.", "cps",
                   [(f"sum by (reason) (rate(mdmbus_gateway_tokens_refused_total[{RATE}]))",
                     "{{reason}}")], thresholds=[(None, "green"), (1, "red")]),
        timeseries("Gateway shedding: busy store, Kafka away, cut connections", "Requests "
                   "answered 503 because no database connection came free within the acquire "
                   "timeout, or because Kafka did not acknowledge their records within the "
                   "produce timeout (a broker away, its partitions moving to new leaders), and "
                   "client connections cut (over the connection cap, or headers too slow), since "
                   "each gateway started. Rising under attack or overload: the gateway protects "
                   "the other tenants instead of queueing.", "short",
                   [("sum by (route) (mdmbus_gateway_store_busy_total)", "503 {{route}}"),
                    ("sum by (region) (mdmbus_gateway_kafka_unavailable_total)",
                     "503 Kafka away {{region}}"),
                    ("sum by (reason) (mdmbus_gateway_connections_cut_total)",
                     "cut {{reason}}")]),
        timeseries("Uploads refused by reason", "Records in tenants' uploads refused by the "
                   "gateways per second, by reason (contract violations, foreign_tenant, "
                   "wrong_topic, ...); the other records of the batch are accepted.", "cps",
                   [(f"sum by (reason) (rate(mdmbus_gateway_upload_refused_total[{RATE}]))",
                     "{{reason}}")], stack=True),
    ]
    return dashboard("mdmbus-pipeline", "mdmbus / Pipeline overview",
                     "Throughput, latency, lag and errors of the mdmbus pipeline and its "
                     "gateways, every region (for SREs).", p)


# --- (b) privacy & retention compliance --------------------------------------------------------

def compliance() -> dict[str, Any]:
    lag_p99 = (f"histogram_quantile(0.99, sum by (rule, le) "
               f"(rate(mdmbus_deletion_lag_seconds_bucket[{RATE}])))")
    session_p99 = (f"histogram_quantile(0.99, sum by (le) "
                   f'(rate(mdmbus_deletion_lag_seconds_bucket{{rule="session_expiry"}}[{RATE}])))')
    bound = f"{TRANSIT_UNREADABLE_S:g} s"
    p = [
        stat("Rows past deadline", "Rows still stored after their deadline plus the sweep "
             "tolerance, every region and rule. Must be 0: anything else means data is kept "
             "longer than the rules allow (alert MdmbusRowsPastDeadline).", "short",
             [("sum(mdmbus_rows_past_deadline)", "rows past deadline")], w=6,
             thresholds=[(None, "green"), (1, "red")]),
        stat("Session commands deletion lag p99", "99th percentile of the time from a device "
             "session's expiry to the deletion of its temporary commands. The source allows "
             f"{SESSION_EXPIRY_ALLOWED_S} s (one hour); mdmbus targets "
             f"{SESSION_EXPIRY_TARGET_S} s.", "s",
             [(session_p99, "p99")], w=6,
             thresholds=[(None, "green"), (SESSION_EXPIRY_TARGET_S, "yellow"),
                         (SESSION_EXPIRY_ALLOWED_S, "red")]),
        stat("Rows deleted by the rules", "Rows deleted by any privacy rule over the dashboard's "
             "time range.", "short",
             [("sum(increase(mdmbus_deletions_total[$__range]))", "rows deleted")], w=6,
             color_mode="value"),
        stat("Tenants in retention", "Tenants whose subscription ended: read-only for 90 days, "
             "then purged 30 days later.", "short",
             [('sum(mdmbus_tenants{state="retention"})', "tenants in retention")], w=6,
             color_mode="value"),

        stat("Processed copies readable in Kafka past their bound (must be 0)", "Copies in the "
             "transit topics (mdm.<region>.upload, .relay, .device.sessions, .device.commands) "
             "whose record is durable in its store, yet still readable through Kafka more than "
             f"{bound} (twice the {TRUNCATE_INTERVAL_S:g} s truncation interval) after they "
             "were seen committed, every topic. Must be 0 (rule 6: deletion is real; alert "
             "MdmbusTransitCopiesReadable).", "short",
             [("sum(mdmbus_transit_readable_past_bound)", "copies past their bound")], w=8,
             thresholds=[(None, "green"), (1, "red")]),
        stat("Relay records waiting for CM", "Relay records stored in the region stores and "
             "not yet downloaded and acknowledged by CM, every region. They are deleted once "
             "CM acknowledges them (rule 2, delete after download), never before.", "short",
             [("sum(mdmbus_relay_pending)", "waiting")], w=8, color_mode="value"),
        stat("Oldest relay record waiting (s)", "How long the oldest relay record not yet "
             "acknowledged by CM has been stored, every region (0 when none waits). "
             f"MdmbusRelayPendingTooLong fires above {RELAY_PENDING_ALERT_S} s (an hour): "
             "the record is kept, not lost.", "s",
             [("max(mdmbus_relay_pending_oldest_seconds)", "oldest")], w=8,
             thresholds=[(None, "green"), (RELAY_PENDING_ALERT_S, "yellow")]),

        stat("Rows under a KEK past its retirement (must be 0)", "Live rows whose data key is "
             "still wrapped under a key-encryption key retired longer ago than the re-wrap "
             "allowance, or destroyed, every region (docs/design.md section 9). Must be 0: then "
             "every copy of a deleted row in PostgreSQL's files and backups is unreadable "
             "within the rotation period plus the re-wrap time (alert "
             "MdmbusRowsPastKekRetirement).", "short",
             [("sum(mdmbus_rows_past_kek_retirement)", "rows past KEK retirement")], w=6,
             thresholds=[(None, "green"), (1, "red")]),
        stat("Rows stored in clear (must be 0)", "Live rows stored before bodies were sealed; "
             "`mdmbus crypto upgrade` seals them. Must be 0 once the upgrade has run.", "short",
             [("sum(mdmbus_rows_unsealed)", "rows in clear")], w=6,
             thresholds=[(None, "green"), (1, "red")]),
        stat("Age of the current KEK", "Real seconds since each region's current "
             "key-encryption key became current (the oldest region shown); a new one becomes "
             "current every MDMBUS_KEK_ROTATION_HOURS of the shared clock.", "s",
             [("max(mdmbus_kek_age_seconds)", "KEK age")], w=6, color_mode="value"),
        stat("KEKs rotated and destroyed", "Key-encryption keys that became current, and "
             "retired ones destroyed once nothing live was wrapped under them, over the "
             "dashboard's time range; data keys re-wrapped (never a body read).", "short",
             [("sum(increase(mdmbus_kek_rotations_total[$__range]))", "rotated"),
              ("sum(increase(mdmbus_kek_destroyed_total[$__range]))", "destroyed"),
              ("sum(increase(mdmbus_kek_rewrapped_total[$__range]))", "data keys re-wrapped")],
             w=6, color_mode="value"),

        timeseries("Rows past deadline by region and rule", "Rows kept past their deadline "
                   "(plus tolerance), per region and rule (session_expiry, retention_purge, "
                   "dead_letter_expiry). Must stay 0.", "short",
                   [("sum by (region, rule) (mdmbus_rows_past_deadline)", "{{region}} {{rule}}")],
                   thresholds=[(None, "green"), (1, "red")]),
        timeseries("Deletions by rule", "Rows deleted per second by each privacy rule: "
                   "session_expiry, delete_after_download, inventory_cache_removal, "
                   "retention_purge, deletion_request, dead_letter_expiry (refused records' "
                   "bodies).", "cps",
                   [(f"sum by (rule) (rate(mdmbus_deletions_total[{RATE}]))", "{{rule}}")],
                   stack=True),

        timeseries("Deletion lag p99 by rule, against the limit", "99th percentile of the time "
                   "from a row's deadline (or its CM acknowledgement) to its deletion, per rule. "
                   f"Lines: mdmbus's target ({SESSION_EXPIRY_TARGET_S} s) and what the source "
                   f"allows for session commands ({SESSION_EXPIRY_ALLOWED_S} s = one hour).", "s",
                   [(lag_p99, "{{rule}} p99")], log_scale=True,
                   thresholds=[(None, "green"), (SESSION_EXPIRY_TARGET_S, "yellow"),
                               (SESSION_EXPIRY_ALLOWED_S, "red")]),
        bargauge("Rows deleted by rule and category", "Rows deleted over the dashboard's time "
                 "range, per rule and category of data.", "short",
                 [("sum by (rule, category) (increase(mdmbus_deletions_total[$__range]))",
                   "{{rule}} {{category}}")]),

        timeseries("Tenants by lifecycle state", "Tenants per lifecycle state (active, "
                   "retention) and region; purged tenants leave the count.", "short",
                   [("sum by (region, state) (mdmbus_tenants)", "{{region}} {{state}}")],
                   stack=True),
        timeseries("Data held per region", "Rows holding data in each region store (residency: "
                   "a tenant's data lives only in its region), by category (dead_letter: bodies "
                   "of refused records).", "short",
                   [("sum by (region, category) (mdmbus_stored_rows)", "{{region}} {{category}}")],
                   stack=True),

        timeseries("Deletions by region", "Rows deleted per second in each region store, all "
                   "rules.", "cps",
                   [(f"sum by (region) (rate(mdmbus_deletions_total[{RATE}]))", "{{region}}")],
                   stack=True),
        timeseries("Records refused by reason", "Records refused per second, by reason: "
                   "tenant_not_onboarded (no region known: residency), tenant_in_retention "
                   "(read-only), content violations (minimisation), undecodable bytes.", "cps",
                   [(f"sum by (reason) (rate(mdmbus_dead_letters_total[{RATE}]))", "{{reason}}")],
                   stack=True),

        timeseries("Oldest processed copy still readable, by topic", "Per transit topic, how "
                   "long the oldest copy already durable in its store and committed has stayed "
                   "readable through Kafka, measured by the sweeper's transit watch. The "
                   f"pipeline truncates within seconds; the line is the bound ({bound}, "
                   "mdmbus/topics.py), past which the copies are counted as readable past "
                   "their bound (rule 6).", "s",
                   [("max by (topic) (mdmbus_transit_readable_age_seconds)", "{{topic}}")],
                   thresholds=[(None, "green"), (TRANSIT_UNREADABLE_S, "red")]),
        timeseries("Oldest relay record waiting for CM, by region", "How long the oldest relay "
                   "record of each region store has waited for CM to download and acknowledge "
                   "it (0 when none waits). Kept until then, deleted at once after (rule 2). "
                   f"The line: MdmbusRelayPendingTooLong ({RELAY_PENDING_ALERT_S} s).", "s",
                   [("max by (region) (mdmbus_relay_pending_oldest_seconds)", "{{region}}")],
                   thresholds=[(None, "green"), (RELAY_PENDING_ALERT_S, "yellow")]),
    ]
    return dashboard("mdmbus-compliance", "mdmbus / Privacy & retention compliance",
                     "Is anything kept past its deadline or readable in Kafka past its bound, "
                     "how fast the rules delete, what waits for CM, and where each tenant's "
                     "data lives (for privacy and compliance officers).", p)


# --- (c) per-region store --------------------------------------------------------------------

REGION = 'region=~"$region"'
#: The region's topics (mdm.<region>.<kind>) and consumer groups (mdmbus-<region>-<process>).
REGION_TOPIC = 'topic=~"mdm[.]$region[.].+"'
REGION_GROUP = 'group=~"mdmbus-$region-.+"'


def region_board() -> dict[str, Any]:
    variable = {
        "name": "region", "label": "Region", "type": "query", "datasource": DATASOURCE,
        "definition": "label_values(mdmbus_stored_rows, region)",
        "query": "label_values(mdmbus_stored_rows, region)",
        "refresh": 2, "sort": 1, "multi": False, "includeAll": False,
        "current": {}, "options": [], "hide": 0, "regex": "", "skipUrlSync": False,
        "description": "The residency region whose store is shown.",
    }
    p = [
        stat("Rows held", "Rows holding data in the $region store, every category.", "short",
             [(f"sum(mdmbus_stored_rows{{{REGION}}})", "rows")], w=6, color_mode="value"),
        stat("Tenants", "Tenants of region $region, every lifecycle state.", "short",
             [(f"sum(mdmbus_tenants{{{REGION}}})", "tenants")], w=6, color_mode="value"),
        stat("Rows past deadline", "Rows kept past their deadline in $region. Must be 0.",
             "short", [(f"sum(mdmbus_rows_past_deadline{{{REGION}}})", "rows")], w=6,
             thresholds=[(None, "green"), (1, "red")]),
        stat("Write latency p99", "99th percentile duration of a store write transaction in "
             "$region.", "s",
             [(f"histogram_quantile(0.99, sum by (le) (rate(mdmbus_store_write_duration_seconds_bucket"
               f"{{{REGION}}}[{RATE}])))", "p99")], w=6, color_mode="value"),

        stat("Copies readable past their bound", "Processed copies in $region's transit topics "
             f"still readable through Kafka more than {TRANSIT_UNREADABLE_S:g} s after they "
             "were stored and committed. Must be 0 (rule 6).", "short",
             [(f"sum(mdmbus_transit_readable_past_bound{{{REGION_TOPIC}}})", "copies")], w=6,
             thresholds=[(None, "green"), (1, "red")]),
        stat("Consumer lag", "Messages of $region's topics not yet consumed by the region's "
             "consumer groups.", "short",
             [(f"sum(mdmbus_consumer_lag_messages{{{REGION_GROUP}}})", "lag")], w=6,
             thresholds=[(None, "green"), (1000, "yellow")]),
        stat("Relay records waiting for CM", "Relay records in the $region store not yet "
             "downloaded and acknowledged by CM (kept until then).", "short",
             [(f"sum(mdmbus_relay_pending{{{REGION}}})", "waiting")], w=6, color_mode="value"),
        stat("Oldest relay record waiting", "How long the oldest relay record of $region has "
             f"waited for CM (0 when none waits); alert above {RELAY_PENDING_ALERT_S} s.", "s",
             [(f"max(mdmbus_relay_pending_oldest_seconds{{{REGION}}})", "oldest")], w=6,
             thresholds=[(None, "green"), (RELAY_PENDING_ALERT_S, "yellow")]),

        timeseries("Records routed to $region by category", "Valid records routed to the $region "
                   "store per second, by category.", "cps",
                   [(f"sum by (category) (rate(mdmbus_records_routed_total{{{REGION}}}[{RATE}]))",
                     "{{category}}")], stack=True),
        timeseries("Records stored in $region by category", "New rows durably stored in the "
                   "$region store per second, by category (replays not counted).", "cps",
                   [(f"sum by (category) (rate(mdmbus_records_stored_total{{{REGION}}}[{RATE}]))",
                     "{{category}}")], stack=True),

        timeseries("Rows held in $region by category", "Rows holding data in the $region store, "
                   "by category.", "short",
                   [(f"sum by (category) (mdmbus_stored_rows{{{REGION}}})", "{{category}}")],
                   stack=True),
        timeseries("Tenants in $region by state", "Tenants of region $region per lifecycle "
                   "state.", "short",
                   [(f"sum by (state) (mdmbus_tenants{{{REGION}}})", "{{state}}")], stack=True),

        timeseries("Write batches in $region by outcome", "Store write transactions per second "
                   "in $region, by outcome (ok, error: retried).", "cps",
                   [(f"sum by (outcome) (rate(mdmbus_store_write_batches_total{{{REGION}}}[{RATE}]))",
                     "{{outcome}}")]),
        timeseries("Write latency in $region", "Duration of one store write transaction in "
                   "$region: median and 99th percentile.", "s",
                   _quantiles("mdmbus_store_write_duration_seconds", "", REGION)),

        timeseries("Deletions in $region by rule", "Rows deleted per second in $region by each "
                   "privacy rule.", "cps",
                   [(f"sum by (rule) (rate(mdmbus_deletions_total{{{REGION}}}[{RATE}]))", "{{rule}}")],
                   stack=True),
        timeseries("Deletions in $region by category", "Rows deleted per second in $region by "
                   "category of data.", "cps",
                   [(f"sum by (category) (rate(mdmbus_deletions_total{{{REGION}}}[{RATE}]))",
                     "{{category}}")], stack=True),

        timeseries("Oldest processed copy still readable in $region, by topic", "Per transit "
                   "topic of $region, how long the oldest copy already stored and committed has "
                   f"stayed readable through Kafka. The line is the bound ({TRANSIT_UNREADABLE_S:g} "
                   "s, mdmbus/topics.py).", "s",
                   [(f"max by (topic) (mdmbus_transit_readable_age_seconds{{{REGION_TOPIC}}})",
                     "{{topic}}")],
                   thresholds=[(None, "green"), (TRANSIT_UNREADABLE_S, "red")]),
        timeseries("Transit truncations in $region by topic", "Partitions of $region's transit "
                   "topics truncated per second once their batch was durable (Kafka "
                   "DeleteRecords).", "ops",
                   [(f"sum by (topic) (rate(mdmbus_transit_truncations_total{{{REGION_TOPIC}}}[{RATE}]))",
                     "{{topic}}")]),

        timeseries("Consumer lag in $region by topic", "Messages of $region's topics not yet "
                   "consumed, per topic (summed over partitions and groups).", "short",
                   [(f"sum by (topic) (mdmbus_consumer_lag_messages{{{REGION_GROUP}}})", "{{topic}}")],
                   thresholds=[(None, "green"), (1000, "red")]),
        timeseries("Relay records waiting for CM in $region", "Relay records of the $region "
                   "store not yet downloaded and acknowledged by CM; they are deleted at once "
                   "after (rule 2).", "short",
                   [(f"sum(mdmbus_relay_pending{{{REGION}}})", "waiting")]),
    ]
    return dashboard("mdmbus-region", "mdmbus / Region store",
                     "One region's store: what is routed, stored, held and deleted there, how "
                     "fast it is written, how long processed copies stay readable in its topics "
                     "and what waits for CM. Pick the region at the top.", p, [variable])


DASHBOARDS = {
    "mdmbus-pipeline.json": pipeline_overview,
    "mdmbus-compliance.json": compliance,
    "mdmbus-region.json": region_board,
}


def build() -> dict[str, str]:
    """File name -> the JSON text this script writes."""
    return {name: json.dumps(make(), indent=2, ensure_ascii=False) + "\n"
            for name, make in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for name, text in build().items():
        path = OUT_DIR / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            OUT_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"stale: {', '.join(stale)} (run python {Path(__file__).name})", file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {OUT_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
