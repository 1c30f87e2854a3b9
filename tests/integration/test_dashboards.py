"""Every dashboard panel and every alert, evaluated by a real Prometheus scraping the real
processes while a simulated workload exercises every rule.

The pipeline, the sweeper, the gateway (each for every region) and the CM connector run as
processes (through the launcher of tests/integration/harness.py) on a clock a million times
faster than real time, each serving /metrics on a free port. The
Prometheus server of Debian's `prometheus` package scrapes them every second with a copy of
ops/prometheus/prometheus.yml (ports substituted) and ops/prometheus/alerts.yml as its rules.

What is checked, through /api/v1/query:
- every PromQL expression of every panel of every dashboard ($region set to each region in
  turn, $__rate_interval to 5m, $__range to 1h) parses and returns at least one series with a
  finite value -- non-zero where it takes a rate, an increase or a quantile, which must see the
  workload (failed store writes excepted: there are none). A panel that shows "No data" after
  this workload reads a metric or a label the processes do not export;
- every alert: its whole expression parses (it may be empty: a healthy pipeline fires nothing),
  and its query without the final comparison (`<query> <op> <number>`, the convention of
  alerts.yml) returns a series with a finite value, so the alert is not silently watching a
  metric that does not exist (non-zero too where it is a rate of the workload's activity,
  e.g. dead letters). The alerts are written to give 0 when healthy; whether they fire
  at the right thresholds is tested by promtool in tests/unit/test_ops_config.py;
- the compliance headlines read 0: no row is kept past its deadline, no processed copy stays
  readable in Kafka past its bound.

Expressions are polled until they have data or a shared deadline passes (no blind sleeps).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mdmbus.cli.launcher import end_process
from mdmbus.cli.processes import PROCESSES
from mdmbus.regions import REGIONS
from mdmbus.services.connector.client import GatewayError
from mdmbus.services.simulators.records import UPLOAD_KINDS
from mdmbus.topics import TopicKind, topic_name
from tests.conftest import wait_for
from tests.integration.harness import ALL_PROCESSES, Workload, launcher
from tests.ports import free_ports
from tests.unit.test_ops_config import (PROMETHEUS_DIR, alert_rules, dashboard_variables,
                                        label_values_as_promql, load_dashboards, panel_queries,
                                        split_comparison, substitute, variable_queries)

pytestmark = pytest.mark.integration

SPEED = 1_000_000.0
#: How long, after the workload, every expression may take to show data.
DATA_DEADLINE_S = 120.0


# --- Prometheus -------------------------------------------------------------------------------

@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen
    log: Path

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 4xx with Prometheus's JSON error body
            body = exc.read()
            try:
                return json.loads(body)
            except ValueError:
                return {"status": "error", "error": f"HTTP {exc.code}: {body[:500]!r}"}

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now; fails on a query error."""
        answer = self.get("/api/v1/query", query=expr)
        assert answer.get("status") == "success", f"{expr}\n  -> {answer.get('errorType')}: {answer.get('error')}"
        data = answer["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _prometheus_binary() -> str:
    path = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if path is None:
        pytest.fail("the prometheus server is not installed: run `./run tests`, which installs "
                    "Debian's `prometheus` package (/usr/bin/prometheus and /usr/bin/promtool)")
    return path


def _scrape_config(ports: dict[str, int]) -> dict[str, Any]:
    """ops/prometheus/prometheus.yml with the test's ports, a 1 s scrape and the repo's alerts."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / f) for f in config["rule_files"]]
    for job in config["scrape_configs"]:
        for sc in job["static_configs"]:
            sc["targets"] = [f"127.0.0.1:{ports[sc['labels']['process']]}"]
    return config


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    free = free_ports(len(PROCESSES) + 1)
    return {**dict(zip(PROCESSES, free)), "prometheus": free[-1]}


@pytest.fixture(scope="module")
def pipeline(stack, ports, tmp_path_factory):
    procs = launcher(stack, tmp_path_factory.mktemp("dashboards"), speed=SPEED)
    try:
        for name, region in ALL_PROCESSES:
            procs.start(name, region, metrics_port=ports[name])
        yield procs
    finally:
        procs.stop()


@pytest.fixture(scope="module")
def prometheus(pipeline, ports, tmp_path_factory):
    binary = _prometheus_binary()
    home = tmp_path_factory.mktemp("prometheus")
    (home / "prometheus.yml").write_text(yaml.safe_dump(_scrape_config(ports)))
    log = home / "prometheus.log"
    listen = f"127.0.0.1:{ports['prometheus']}"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address={listen}", "--storage.tsdb.retention.time=1h"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=home)
    prom = Prometheus(f"http://{listen}", proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"prometheus exited with {proc.returncode}:\n{prom.tail()}"
            try:
                with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"prometheus not ready after 60 s:\n{prom.tail()}"
            time.sleep(0.1)
        # The workload starts only once every process has been scraped a few times: rates and
        # histograms then see the counters move. (Prometheus applies discovered targets a few
        # seconds after start.)
        while not _scraped(prom):
            assert proc.poll() is None, f"prometheus exited with {proc.returncode}:\n{prom.tail()}"
            pipeline.assert_alive()
            assert time.monotonic() < deadline + 60, \
                f"targets not scraped three times in time: {_target_health(prom)}\n{prom.tail()}"
            time.sleep(0.2)
        yield prom
    finally:
        end_process(proc)


def _target_health(prom: Prometheus) -> dict[str, str]:
    targets = prom.get("/api/v1/targets")["data"]["activeTargets"]
    return {t["labels"].get("process", t["scrapeUrl"]): f"{t['health']} {t.get('lastError', '')}".strip()
            for t in targets if t["labels"].get("job") == "mdmbus"}


def _scraped(prom: Prometheus, times: int = 3) -> bool:
    """Every process's target is up and has been scraped at least ``times`` times."""
    health = _target_health(prom)
    if sorted(health) != sorted(PROCESSES) or not all(h == "up" for h in health.values()):
        return False
    counts = prom.query('count_over_time(up{job="mdmbus"}[1m])')
    return len(counts) == len(PROCESSES) and all(float(c["value"][1]) >= times for c in counts)


# --- the workload -----------------------------------------------------------------------------

async def _onboarded(work: Workload, region: str) -> str:
    tenant = await work.onboard(region)
    await wait_for(lambda: work.tenant_region(tenant), 60, f"tenant onboarded in {region}")
    return tenant


async def _stored(work: Workload, region: str, ids: list[str]) -> bool:
    return await work.stored(region, ids) == set(ids)


async def _gone(work: Workload, region: str, ids: list[str]) -> bool:
    return not await work.stored(region, ids)


async def _uploads_and_replay(work: Workload, region: str) -> None:
    tenant = await _onboarded(work, region)
    device = work.factory.uuid()
    sent = [(kind, await work.produce(kind, tenant, device_id=device))
            for _ in range(3) for kind in UPLOAD_KINDS]
    ids = [record["envelope"]["record_id"] for _, record in sent]
    await wait_for(lambda: _stored(work, region, ids), 90, f"uploads stored in {region}")
    for kind, record in sent[:3]:  # a replay: stored once, counted as duplicates
        await work.send(kind, record)


async def _relay(work: Workload, region: str) -> None:
    tenant = await _onboarded(work, region)
    work.connect_cm(tenant)  # its CM connector downloads them through the gateway
    ids = [(await work.produce(kind, tenant, device_id=work.factory.uuid()))["envelope"]["record_id"]
           for _ in range(2) for kind in ("R1", "R2", "R3", "R4", "R5", "R6")]
    await wait_for(lambda: work.cm.fetchval(
        "SELECT count(*) = $2 FROM relayed_records WHERE record_id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in ids], len(ids)), 90, f"relay records of {region} in CM")
    await wait_for(lambda: _gone(work, region, ids), 60, f"relay copies deleted in {region}")


async def _sessions_and_inventory(work: Workload, region: str) -> None:
    tenant = await _onboarded(work, region)
    device, session = work.factory.uuid(), work.factory.uuid()
    expires_ms = work.clock.now_ms() + int(3 * SPEED * 1000)  # three real seconds from now
    await work.produce("device_session", tenant, device_id=device, session_id=session,
                       event_type="START", expires_at=expires_ms)
    commands = [(await work.produce("device_command", tenant, device_id=device, session_id=session))
                ["envelope"]["record_id"] for _ in range(4)]
    cached = [(await work.produce("inventory_cache", tenant, device_id=device))["envelope"]["record_id"]
              for _ in range(3)]
    # A command of a session that is not known: its fallback deadline (15 simulated minutes,
    # a millisecond here) has passed by the time it is written: not stored.
    await work.produce("device_command", tenant, device_id=work.factory.uuid(),
                       session_id=work.factory.uuid())
    await wait_for(lambda: _stored(work, region, cached), 60, f"inventory cached in {region}")
    await work.produce("device_unenrolled", tenant, device_id=device)
    await wait_for(lambda: _gone(work, region, cached), 60, f"inventory cache removed in {region}")
    await wait_for(lambda: _gone(work, region, commands), 60, f"commands deleted at expiry in {region}")


async def _retention_and_purge(work: Workload, region: str) -> None:
    tenant = await _onboarded(work, region)
    ids = [(await work.produce(kind, tenant))["envelope"]["record_id"] for kind in ("U1", "U9", "U11")]
    await wait_for(lambda: _stored(work, region, ids), 60, f"data of the leaving tenant in {region}")
    await work.produce("tenant_subscription_ended", tenant)
    await wait_for(lambda: work.region_pool(region).fetchval(
        "SELECT state = 'retention' FROM tenants WHERE tenant_id = $1", uuid.UUID(tenant)), 30,
        f"tenant in retention in {region}")
    await work.produce("U2", tenant)  # refused: read-only during retention
    # 90 + 30 simulated days: about ten real seconds.
    await wait_for(lambda: _purged(work, tenant), 60, f"tenant of {region} purged")


async def _purged(work: Workload, tenant: str) -> bool:
    return await work.tenant_region(tenant) is None


async def _cancellation(work: Workload, region: str) -> None:
    tenant = await _onboarded(work, region)
    ids = [(await work.produce(kind, tenant))["envelope"]["record_id"] for kind in ("U3", "U7", "U14")]
    await wait_for(lambda: _stored(work, region, ids), 60, f"data of the cancelling tenant in {region}")
    await work.produce("tenant_subscription_cancelled", tenant, deletion_requested=True)
    await wait_for(lambda: _purged(work, tenant), 60, f"deletion on request in {region}")


async def _invalid(work: Workload) -> None:
    for region in REGIONS:
        for i in range(4):  # keys spread over the partitions
            await work.send_raw(topic_name(TopicKind.UPLOAD, region), b"not an avro record %d" % i,
                                key=b"garbage-%d" % i)
            await work.send_raw(topic_name(TopicKind.RELAY, region), b"\xc3\x01garbage %d" % i,
                                key=b"garbage-%d" % i)
    await work.produce("U9", work.factory.uuid(), region="eu")  # a tenant never onboarded


async def _gateway(work: Workload, region: str) -> None:
    """A tenant's systems at its region's door: uploads (one record refused), status, export,
    and callers with tokens the gateway refuses."""
    from mdmbus.contract import to_json
    tenant = await _onboarded(work, region)
    records = [work.make(kind, tenant) for kind in ("U1", "U9", "U12")]
    lines = [{"kind": r["envelope"]["kind"],
              "record": to_json(work.contract.spec(r["envelope"]["kind"]).expanded, r)}
             for r in records]
    foreign = work.make("U1", work.factory.uuid())
    lines.append({"kind": "U1", "record": to_json(work.contract.spec("U1").expanded, foreign)})
    answer = await work.client(tenant, "connector").upload(lines)
    assert len(answer["accepted"]) == 3 and answer["refused"][0]["reason"] == "foreign_tenant"
    await work.client(tenant, "auditor").status()
    [line async for line in work.client(tenant, "admin").export()]
    for token in ("not-a-token", work.token(tenant, "connector", ttl_s=-3600)):
        try:
            await work.client(tenant, token=token).status()
        except GatewayError as exc:
            assert exc.status == 401
        else:
            raise AssertionError("a bad token was accepted")
    ids = [r["envelope"]["record_id"] for r in records]
    await wait_for(lambda: _stored(work, region, ids), 60, f"uploads through the {region} gateway")


@pytest.fixture(scope="module")
async def workload(stack, pipeline, prometheus):
    """Runs the whole workload twice, in every region at the same time; returns when every rule
    has done its work (each step waits on the stores, not on time).

    Twice, because Prometheus's rate() cannot see the increments that created a series: a
    label set touched in one burst (six relay kinds, a replay, the garbage) first appears with
    its final value, and its rate reads 0. The second round, started once Prometheus has
    scraped the first, moves every series the first one created."""
    async with Workload(stack, pipeline.clock, seed=uuid.uuid4().int,
                        tokens_dir=pipeline.log_dir / "tokens") as work:
        for round_ in (1, 2):
            scenarios = [_invalid(work)]
            for region in REGIONS:
                scenarios += [_uploads_and_replay(work, region), _relay(work, region),
                              _sessions_and_inventory(work, region),
                              _retention_and_purge(work, region), _cancellation(work, region),
                              _gateway(work, region)]
            await asyncio.gather(*scenarios)
            pipeline.assert_alive()
            if round_ == 1:
                done = time.time() + 1.0  # the sweeper counts once its pass is over
                await wait_for(lambda done=done: _scraped_after(prometheus, done), 30,
                               "every process scraped after the first round", interval_s=0.2)
    return time.monotonic() + DATA_DEADLINE_S


async def _scraped_after(prometheus: Prometheus, t: float) -> bool:
    last = await asyncio.to_thread(prometheus.query, 'timestamp(up{job="mdmbus"})')
    return len(last) == len(PROCESSES) and min(float(s["value"][1]) for s in last) > t


# --- the checks -------------------------------------------------------------------------------

def _expressions() -> list[tuple[str, str]]:
    """(id, expression) of every panel target and variable query, per value of $region."""
    out = []
    for file, d in load_dashboards().items():
        names = dashboard_variables(d)
        assert set(names) <= {"region"}, f"{file}: give the test values for {names}"
        for title, expr in panel_queries(d):
            if "$region" in expr or "${region}" in expr:
                out += [(f"{file}: {title} [region={r}]", substitute(expr, {"region": r}))
                        for r in REGIONS]
            else:
                out.append((f"{file}: {title}", substitute(expr)))
        for name, query in variable_queries(d):
            out.append((f"{file}: variable ${name}", label_values_as_promql(query)[0]))
    return out


#: Alerts whose query reads 0 on a healthy pipeline, even with rates over the workload.
ZERO_WHEN_HEALTHY = {"MdmbusStoreWriteFailing", "MdmbusSessionCommandsPastOneHour",
                     "MdmbusGatewayErrors"}


def _moves(expr: str) -> bool:
    """Whether the workload must make ``expr`` non-zero: it takes rates, increases or quantiles
    of what the workload does (failed store writes excepted: there are none)."""
    return bool(re.search(r"\b(rate|irate|increase|histogram_quantile)\s*\(", expr)) \
        and 'outcome="error"' not in expr


async def _has_data(prometheus: Prometheus, expr: str, deadline: float,
                    nonzero: bool = False) -> list[dict[str, Any]]:
    """Polls until ``expr`` returns a series with a finite value (non-zero if asked)."""
    result: list[dict[str, Any]] = []

    async def check() -> bool:
        nonlocal result
        result = await asyncio.to_thread(prometheus.query, expr)
        values = [float(s["value"][1]) for s in result]
        return any(math.isfinite(v) and (v != 0 or not nonzero) for v in values)
    try:
        await wait_for(check, max(0.0, deadline - time.monotonic()), f"data for {expr}",
                       interval_s=0.5)
    except AssertionError:
        raise AssertionError(f"no {'non-zero ' if nonzero else ''}data for {expr}; last result: "
                             f"{[(s['metric'], s['value'][1]) for s in result][:10]}") from None
    return result


async def test_prometheus_scrapes_every_process_with_its_process_label(prometheus, pipeline, ports):
    targets = (await asyncio.to_thread(prometheus.get, "/api/v1/targets"))["data"]["activeTargets"]
    mine = {t["labels"]["process"]: t for t in targets if t["labels"].get("job") == "mdmbus"}
    assert sorted(mine) == sorted(PROCESSES)
    for name, target in mine.items():
        assert target["health"] == "up", f"{name}: {target.get('lastError')}"
        assert target["labels"]["instance"] == f"127.0.0.1:{ports[name]}"
    pipeline.assert_alive()


@pytest.mark.parametrize("where,expr", _expressions(), ids=[w for w, _ in _expressions()])
async def test_every_panel_expression_has_data(prometheus, workload, where, expr):
    await _has_data(prometheus, expr, workload, nonzero=_moves(expr))


async def test_the_region_variable_offers_every_region(prometheus, workload):
    for file, d in load_dashboards().items():
        for name, query in variable_queries(d):
            expr, label = label_values_as_promql(query)

            async def all_regions(expr: str = expr, label: str = label) -> bool:
                got = await asyncio.to_thread(prometheus.query, expr)
                return sorted(s["metric"].get(label) for s in got) == sorted(REGIONS)
            await wait_for(all_regions, max(0.0, workload - time.monotonic()),
                           f"${name} of {file} offering {REGIONS}", interval_s=0.5)


@pytest.mark.parametrize("rule", alert_rules(), ids=[r["alert"] for r in alert_rules()])
async def test_every_alert_parses_and_watches_a_metric_with_data(prometheus, workload, rule):
    # The whole expression must be valid PromQL (its result may be empty: nothing fires).
    await asyncio.to_thread(prometheus.query, rule["expr"])
    query, _, _ = split_comparison(rule["expr"])
    await _has_data(prometheus, query, workload,
                    nonzero=_moves(query) and rule["alert"] not in ZERO_WHEN_HEALTHY)


async def test_the_rules_loaded_are_the_repos_alerts(prometheus):
    groups = (await asyncio.to_thread(prometheus.get, "/api/v1/rules"))["data"]["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {r["alert"] for r in alert_rules()}
    bad = {name: r.get("lastError") for name, r in loaded.items() if r.get("health") == "err"}
    assert not bad, f"rules failing in Prometheus: {bad}"


async def test_no_row_is_kept_past_its_deadline(prometheus, workload):
    result = await _has_data(prometheus, "sum by (region, rule) (mdmbus_rows_past_deadline)", workload)
    late = {(s["metric"]["region"], s["metric"]["rule"]): s["value"][1] for s in result
            if float(s["value"][1]) != 0}
    assert not late, f"rows past their deadline (must be 0): {late}"


async def test_no_processed_copy_stays_readable_past_its_bound(prometheus, workload):
    result = await _has_data(prometheus, "sum by (topic) (mdmbus_transit_readable_past_bound)",
                             workload)
    readable = {s["metric"]["topic"]: s["value"][1] for s in result if float(s["value"][1]) != 0}
    assert not readable, f"processed copies readable past their bound (must be 0): {readable}"
