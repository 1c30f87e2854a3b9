"""ops/prometheus and ops/grafana, checked without servers: promtool accepts the configs and
rules, the alerts fire when they should (promtool's rule unit tests), the dashboards are what
ops/grafana/build_dashboards.py writes, every panel is complete, and every metric a panel or an
alert reads is one mdmbus exports (mdmbus/metrics.py).

The helpers at the top are shared with tests/integration/test_dashboards.py, which evaluates
the same expressions against a real Prometheus scraping the real processes.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from prometheus_client import CollectorRegistry

from mdmbus.metrics import Metrics
from mdmbus.cli.processes import PROCESSES, REGIONAL
from mdmbus.regions import REGIONS
from tests.conftest import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "ops" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "ops" / "grafana"
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
DATASOURCE_UID = "mdmbus-prometheus"
SEVERITIES = ("critical", "warning")

#: What the tests put in place of Grafana's variables. $__rate_interval is Grafana's; in the
#: tests a window of a few minutes covers everything the workload did.
GRAFANA_DEFAULTS = {"__rate_interval": "5m", "__interval": "15s", "__range": "1h"}


# --- shared helpers ----------------------------------------------------------------------------

def promtool() -> str:
    """Path of promtool; fails (never skips) when it is missing."""
    path = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if path is None:
        pytest.fail("promtool is not installed: run `./run tests`, which installs Debian's "
                    "`prometheus` package (it provides /usr/bin/prometheus and /usr/bin/promtool)")
    return path


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold theirs


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every target of every panel."""
    return [(p["title"], t["expr"]) for p in panels(dashboard) for t in p.get("targets", [])]


def variable_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(variable name, query) of every query variable."""
    out = []
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]
            out.append((v["name"], q if isinstance(q, str) else q["query"]))
    return out


def label_values_as_promql(query: str) -> tuple[str, str]:
    """Grafana's `label_values(metric, label)` as (PromQL returning one series per value, label)."""
    m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", query)
    assert m, f"unsupported variable query {query!r}"
    return f"group by ({m.group(2)}) ({m.group(1)})", m.group(2)


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    """Replaces Grafana variables ($name, ${name}, [[name]]) by values."""
    values = dict(GRAFANA_DEFAULTS, **(variables or {}))

    def value(m: re.Match) -> str:
        name = next(g for g in m.groups() if g)
        if name not in values:
            raise AssertionError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


def dashboard_variables(dashboard: dict[str, Any]) -> list[str]:
    return [v["name"] for v in dashboard.get("templating", {}).get("list", [])]


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


_COMPARISON = re.compile(r"^(?P<query>.+?)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<bool>bool\s+)?"
                         r"(?P<threshold>-?[0-9.]+(?:e[-+]?[0-9]+)?)\s*$", re.S)


def split_comparison(expr: str) -> tuple[str, str, float]:
    """`<query> <op> <number>` -> (query, op, number); the convention of ops/prometheus/alerts.yml."""
    m = _COMPARISON.match(expr.strip())
    assert m, f"alert expression is not `<query> <op> <number>`: {expr!r}"
    return m["query"], m["op"], float(m["threshold"])


def metric_names(expr: str) -> set[str]:
    """Every mdmbus_* metric an expression reads (string literals ignored)."""
    code = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    return set(re.findall(r"(?<![\w:])mdmbus_\w+", code))


def exported_families() -> dict[str, str]:
    """Family name -> type of every metric mdmbus/metrics.py registers."""
    return {f.name: f.type for f in Metrics(CollectorRegistry()).registry.collect()}


def exported_series_names() -> dict[str, str]:
    """Every series name the metrics expose (with _total/_bucket/... suffixes) -> its family."""
    suffixes = {"counter": ("_total", "_created"), "gauge": ("",),
                "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("", "_count", "_sum", "_created")}
    return {name + s: name for name, kind in exported_families().items() for s in suffixes[kind]}


def all_expressions() -> list[tuple[str, str]]:
    """(where, expression) of every dashboard panel target, variable query and alert."""
    out = []
    for file, d in load_dashboards().items():
        out += [(f"{file}: {title}", e) for title, e in panel_queries(d)]
        out += [(f"{file}: ${name}", label_values_as_promql(q)[0]) for name, q in variable_queries(d)]
    out += [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    return out


def _build_module():
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA_DIR / "build_dashboards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=60)


# --- Prometheus ------------------------------------------------------------------------------------

@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_promtool_accepts_the_prometheus_config(config):
    done = _run(promtool(), "check", "config", str(PROMETHEUS_DIR / config))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_the_alert_rules():
    done = _run(promtool(), "check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def _mdmbus_job(config: str) -> dict[str, Any]:
    doc = yaml.safe_load((PROMETHEUS_DIR / config).read_text())
    (job,) = [j for j in doc["scrape_configs"] if j["job_name"] == "mdmbus"]
    return job


def exported_label_names() -> set[str]:
    """Every label name a metric of mdmbus/metrics.py has."""
    metrics = vars(Metrics(CollectorRegistry())).values()
    return {name for m in metrics for name in getattr(m, "_labelnames", ())}


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_one_mdmbus_job_with_a_process_label_per_target(config):
    doc = yaml.safe_load((PROMETHEUS_DIR / config).read_text())
    assert doc["rule_files"] == ["alerts.yml"]
    job = _mdmbus_job(config)
    processes = [sc["labels"]["process"] for sc in job["static_configs"]]
    assert set(processes) == set(PROCESSES)
    assert all(len(sc["targets"]) == 1 for sc in job["static_configs"])
    targets = [sc["targets"][0] for sc in job["static_configs"]]
    assert len(targets) == len(set(targets)), "a target is scraped twice"


def test_embedded_config_scrapes_each_process_once_for_every_region():
    """The demo runs each process once (pipeline, sweeper and gateway with --region all): one
    target each, no region label (the series carry their own)."""
    job = _mdmbus_job("prometheus.yml")
    assert sorted(sc["labels"]["process"] for sc in job["static_configs"]) == sorted(PROCESSES)
    assert all(set(sc["labels"]) == {"process"} for sc in job["static_configs"])


def test_compose_config_scrapes_every_process_of_every_region():
    job = _mdmbus_job("prometheus.compose.yml")
    got = [(sc["labels"]["process"], sc["labels"].get("region"), sc["targets"][0])
           for sc in job["static_configs"]]
    wanted = [(p, r, f"{p}-{r}:9100") for p in REGIONAL for r in REGIONS] + \
             [(p, None, f"{p}:9100") for p in PROCESSES if p not in REGIONAL]
    assert sorted(got, key=str) == sorted(wanted, key=str)
    assert all(set(sc["labels"]) <= {"process", "region"} for sc in job["static_configs"])


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_target_labels_do_not_overwrite_the_metrics_own_labels(config):
    """A target label that a metric has too (compose's `region`) must not replace the metric's
    value (e.g. mdmbus_store_write_batches_total{region="lifecycle"} counted by pipeline-eu):
    without honor_labels Prometheus would, and move the metric's own value to exported_region."""
    job = _mdmbus_job(config)
    shared = {name for sc in job["static_configs"] for name in sc["labels"]} & exported_label_names()
    if shared:
        assert job.get("honor_labels") is True, f"{config}: target labels {sorted(shared)} " \
            "are metric labels too: set honor_labels: true"


def test_embedded_config_scrapes_the_ports_the_demo_uses():
    from mdmbus.cli import _parser
    from mdmbus.cli.demo import metrics_ports
    base = _parser().parse_args(["demo"]).metrics_base_port
    doc = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    job = next(j for j in doc["scrape_configs"] if j["job_name"] == "mdmbus")
    targets = {sc["labels"]["process"]: sc["targets"][0] for sc in job["static_configs"]}
    assert targets == {name: f"127.0.0.1:{port}" for name, port in metrics_ports(base).items()}
    assert len(targets) == len(job["static_configs"])


def test_every_alert_has_severity_summary_description_and_the_expr_convention():
    rules = alert_rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in rules:
        assert rule.get("labels", {}).get("severity") in SEVERITIES, rule["alert"]
        for key in ("summary", "description"):
            assert str(rule.get("annotations", {}).get(key, "")).strip(), f"{rule['alert']}: no {key}"
        split_comparison(rule["expr"])


def test_the_alerts_the_issue_asks_for_exist():
    exprs = {r["alert"]: r["expr"] for r in alert_rules()}
    wanted = {
        "rows past deadline": r"mdmbus_rows_past_deadline",
        "dead-letter rate": r"rate\(mdmbus_dead_letters_total\[5m\]\)",
        "consumer lag": r"mdmbus_consumer_lag_messages",
        "store cannot be written": r'mdmbus_store_write_batches_total\{outcome="error"\}',
        "target down": r"^up\{.*\} == 0$",
        "processed copies readable in Kafka past their bound": r"mdmbus_transit_readable_past_bound",
        "relay records waiting for CM": r"mdmbus_relay_pending_oldest_seconds",
        "gateway server errors": r'mdmbus_gateway_requests_total\{status=~"5\.\."\}',
        "tokens refused": r"rate\(mdmbus_gateway_tokens_refused_total\[5m\]\)",
    }
    for what, pattern in wanted.items():
        assert any(re.search(pattern, e) for e in exprs.values()), f"no alert on {what}"


# Series for promtool's rule unit tests: (series, values every 15 s). Alerts are checked on
# labels only (annotations are removed from the copy of the rules promtool runs here: their
# presence is checked above, their text is for people).
_PROMTOOL_TESTS = [{
    "interval": "15s",
    "input_series": [
        {"series": 'mdmbus_rows_past_deadline{region="na",rule="session_expiry"}', "values": "0x20"},
        {"series": 'mdmbus_rows_past_deadline{region="eu",rule="session_expiry"}', "values": "0 0 3x20"},
        {"series": 'mdmbus_store_write_batches_total{region="na",outcome="ok"}', "values": "0+10x20"},
        {"series": 'mdmbus_store_write_batches_total{region="eu",outcome="ok"}', "values": "0+10x20"},
        {"series": 'mdmbus_store_write_batches_total{region="eu",outcome="error"}', "values": "0+1x20"},
        {"series": 'mdmbus_dead_letters_total{source_topic="mdm.eu.upload",reason="undecodable"}',
         "values": "0+60x60"},
        {"series": 'mdmbus_dead_letters_total{source_topic="mdm.na.relay",reason="schema"}',
         "values": "0+1x60"},
        {"series": 'mdmbus_consumer_lag_messages{group="mdmbus-eu-pipeline",topic="mdm.eu.upload",partition="0"}',
         "values": "3000x30"},
        {"series": 'mdmbus_consumer_lag_messages{group="mdmbus-na-pipeline",topic="mdm.na.relay",partition="0"}',
         "values": "10x30"},
        # Compose's targets (a region label on the regional processes) and the embedded ones.
        {"series": 'up{job="mdmbus",process="sweeper",region="eu",instance="sweeper-eu:9100"}',
         "values": "1 1 0x20"},
        {"series": 'up{job="mdmbus",process="pipeline",region="eu",instance="pipeline-eu:9100"}',
         "values": "1x20"},
        {"series": 'up{job="mdmbus",process="cm-connector",instance="cm-connector:9100"}',
         "values": "1x20"},
        {"series": 'up{job="mdmbus",process="gateway",instance="127.0.0.1:9103"}', "values": "1x20"},
        # Transit copies: eu's uploads readable past their bound from 45 s on; na's relay never.
        {"series": 'mdmbus_transit_readable_past_bound{topic="mdm.eu.upload"}', "values": "0 0 0 5x20"},
        {"series": 'mdmbus_transit_readable_past_bound{topic="mdm.na.relay"}', "values": "0x20"},
        # Relay records waiting for CM: eu's oldest passes the hour at 15 s and keeps ageing;
        # na's are downloaded within two minutes.
        # Rows under a retired KEK: eu's re-wrap falls behind from 30 s on; na's never.
        {"series": 'mdmbus_rows_past_kek_retirement{region="eu"}', "values": "0 0 7x20"},
        {"series": 'mdmbus_rows_past_kek_retirement{region="na"}', "values": "0x20"},
        {"series": 'mdmbus_relay_pending_oldest_seconds{region="eu"}', "values": "3600+15x60"},
        {"series": 'mdmbus_relay_pending_oldest_seconds{region="na"}', "values": "120x60"},
        # Gateways: eu answers some uploads with 503, na only with 2xx (and a 401).
        {"series": 'mdmbus_gateway_requests_total{region="eu",route="upload",status="200"}',
         "values": "0+10x60"},
        {"series": 'mdmbus_gateway_requests_total{region="eu",route="upload",status="503"}',
         "values": "0+1x60"},
        {"series": 'mdmbus_gateway_requests_total{region="na",route="relay_download",status="200"}',
         "values": "0+10x60"},
        {"series": 'mdmbus_gateway_requests_total{region="na",route="relay_download",status="401"}',
         "values": "0+45x60"},
        # Tokens: 3 expired ones a second (above 1), 0.2 malformed ones (below).
        {"series": 'mdmbus_gateway_tokens_refused_total{reason="expired"}', "values": "0+45x60"},
        {"series": 'mdmbus_gateway_tokens_refused_total{reason="malformed"}', "values": "0+3x60"},
        # Session commands: every deletion between 5 and 10 s late (p99 above the 5 s target),
        # then from minute 5 on also some later than the hour.
        *({"series": f'mdmbus_deletion_lag_seconds_bucket{{rule="session_expiry",le="{le}"}}',
           "values": values}
          for le, values in (("1.0", "0x60"), ("5.0", "0x60"), ("10.0", "0+10x60"),
                             ("3600.0", "0+10x60"), ("+Inf", "0+10x20 200+12x40"))),
        {"series": 'mdmbus_deletion_lag_seconds_count{rule="session_expiry"}',
         "values": "0+10x20 200+12x40"},
    ],
    "alert_rule_test": [
        {"eval_time": "30s", "alertname": "MdmbusRowsPastDeadline", "exp_alerts": []},
        {"eval_time": "3m", "alertname": "MdmbusRowsPastDeadline", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "region": "eu", "rule": "session_expiry"}}]},
        {"eval_time": "4m", "alertname": "MdmbusStoreWriteFailing", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "region": "eu"}}]},
        {"eval_time": "14m", "alertname": "MdmbusDeadLettersHigh", "exp_alerts": [
            {"exp_labels": {"severity": "warning", "source_topic": "mdm.eu.upload",
                            "reason": "undecodable"}}]},
        {"eval_time": "4m", "alertname": "MdmbusDeadLettersHigh", "exp_alerts": []},
        {"eval_time": "6m", "alertname": "MdmbusConsumerLagHigh", "exp_alerts": [
            {"exp_labels": {"severity": "warning", "group": "mdmbus-eu-pipeline",
                            "topic": "mdm.eu.upload"}}]},
        {"eval_time": "2m", "alertname": "MdmbusConsumerLagHigh", "exp_alerts": []},
        {"eval_time": "30s", "alertname": "MdmbusTargetDown", "exp_alerts": []},
        {"eval_time": "2m", "alertname": "MdmbusTargetDown", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "job": "mdmbus", "process": "sweeper",
                            "region": "eu", "instance": "sweeper-eu:9100"}}]},
        {"eval_time": "4m", "alertname": "MdmbusSessionCommandsPastOneHour", "exp_alerts": []},
        {"eval_time": "7m", "alertname": "MdmbusSessionCommandsPastOneHour", "exp_alerts": [
            {"exp_labels": {"severity": "critical"}}]},
        {"eval_time": "5m", "alertname": "MdmbusSessionCommandsDeletedLate", "exp_alerts": []},
        {"eval_time": "12m", "alertname": "MdmbusSessionCommandsDeletedLate", "exp_alerts": [
            {"exp_labels": {"severity": "warning"}}]},
        {"eval_time": "30s", "alertname": "MdmbusTransitCopiesReadable", "exp_alerts": []},
        {"eval_time": "90s", "alertname": "MdmbusTransitCopiesReadable", "exp_alerts": []},
        {"eval_time": "3m", "alertname": "MdmbusTransitCopiesReadable", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "topic": "mdm.eu.upload"}}]},
        {"eval_time": "30s", "alertname": "MdmbusRowsPastKekRetirement", "exp_alerts": []},
        {"eval_time": "3m", "alertname": "MdmbusRowsPastKekRetirement", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "region": "eu"}}]},
        {"eval_time": "10m", "alertname": "MdmbusRelayPendingTooLong", "exp_alerts": []},
        {"eval_time": "11m", "alertname": "MdmbusRelayPendingTooLong", "exp_alerts": [
            {"exp_labels": {"severity": "warning", "region": "eu"}}]},
        {"eval_time": "4m", "alertname": "MdmbusGatewayErrors", "exp_alerts": []},
        {"eval_time": "6m", "alertname": "MdmbusGatewayErrors", "exp_alerts": [
            {"exp_labels": {"severity": "warning", "region": "eu"}}]},
        {"eval_time": "9m", "alertname": "MdmbusTokensRefusedHigh", "exp_alerts": []},
        {"eval_time": "12m", "alertname": "MdmbusTokensRefusedHigh", "exp_alerts": [
            {"exp_labels": {"severity": "warning", "reason": "expired"}}]},
    ],
}]


def test_the_alerts_fire_when_they_should_and_not_otherwise(tmp_path):
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(
        {"rule_files": ["alerts.yml"], "evaluation_interval": "15s", "tests": _PROMTOOL_TESTS}))
    tested = {t["alertname"] for t in _PROMTOOL_TESTS[0]["alert_rule_test"]}
    assert tested == {r["alert"] for r in alert_rules()}, "every alert has a firing test"
    done = _run(promtool(), "test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


# --- Grafana ---------------------------------------------------------------------------------

def test_committed_dashboards_are_what_the_builder_writes():
    built = _build_module().build()
    committed = {p.name: p.read_text(encoding="utf-8") for p in DASHBOARD_DIR.glob("*.json")}
    assert set(committed) == set(built), "ops/grafana/dashboards holds files the builder does not write"
    for name, text in built.items():
        assert committed[name] == text, \
            f"{name} is stale: run `.venv/bin/python ops/grafana/build_dashboards.py`"


def test_the_three_dashboards_exist_with_unique_uids():
    dashboards = load_dashboards()
    uids = [d["uid"] for d in dashboards.values()]
    assert sorted(uids) == ["mdmbus-compliance", "mdmbus-pipeline", "mdmbus-region"]
    region = next(d for d in dashboards.values() if d["uid"] == "mdmbus-region")
    assert dashboard_variables(region) == ["region"]


def test_every_panel_has_title_unit_description_and_the_fixed_datasource():
    for file, d in load_dashboards().items():
        ids = [p["id"] for p in panels(d)]
        assert len(ids) == len(set(ids)), f"{file}: duplicate panel ids"
        for p in panels(d):
            where = f"{file} panel {p.get('id')} {p.get('title')!r}"
            assert str(p.get("title", "")).strip(), f"{where}: no title"
            if p.get("type") == "row":  # a heading that groups panels (checked on their own)
                assert not p.get("targets"), f"{where}: a row has no query"
                continue
            assert str(p.get("description", "")).strip(), f"{where}: no description"
            assert str(p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")).strip(), \
                f"{where}: no unit"
            assert p.get("datasource") == {"type": "prometheus", "uid": DATASOURCE_UID}, where
            assert p.get("targets"), f"{where}: no query"
            for t in p["targets"]:
                assert t.get("datasource", {}).get("uid") == DATASOURCE_UID, where
                assert str(t.get("expr", "")).strip(), f"{where}: empty expression"
        for v in d.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                assert v["datasource"]["uid"] == DATASOURCE_UID, f"{file}: variable {v['name']}"


def test_every_grafana_variable_used_is_defined():
    for _file, d in load_dashboards().items():
        known = {name: "x" for name in dashboard_variables(d)}
        for _title, expr in panel_queries(d):
            substitute(expr, known)  # raises on an unknown variable


def test_every_metric_a_panel_or_alert_reads_is_exported():
    exported = exported_series_names()
    for where, expr in all_expressions():
        unknown = metric_names(expr) - set(exported)
        assert not unknown, f"{where} reads {sorted(unknown)}, which mdmbus/metrics.py does not export"


def test_every_exported_metric_is_on_a_dashboard():
    exported = exported_series_names()
    shown = {exported[n] for file, d in load_dashboards().items()
             for _, e in panel_queries(d) for n in metric_names(e) if n in exported}
    assert set(exported_families()) - shown == set()


def test_the_helpers_see_through_strings_and_suffixes():
    assert metric_names('sum(rate(mdmbus_x_total{group="mdmbus_not_a_metric"}[5m]))') == {"mdmbus_x_total"}
    assert "mdmbus_deletion_lag_seconds_bucket" in exported_series_names()
    assert "mdmbus_deletions_total" in exported_series_names()
    assert "mdmbus_deletions" not in exported_series_names()
    assert {"region", "topic", "route"} <= exported_label_names()
    assert substitute('rate(x{region=~"$region"}[$__rate_interval])', {"region": "eu"}) == \
        'rate(x{region=~"eu"}[5m])'
    assert split_comparison("up{job=\"mdmbus\"} == 0") == ('up{job="mdmbus"}', "==", 0.0)
    assert label_values_as_promql("label_values(m, region)") == ("group by (region) (m)", "region")


def test_every_dashboard_expression_is_valid_promql(tmp_path):
    """promtool parses each expression (variables substituted) as a recording rule."""
    rules = []
    for i, (_where, expr) in enumerate(all_expressions()):
        variables = {"region": "na"} if "$region" in expr else {}
        rules.append({"record": f"mdmbus:check_{i}", "expr": substitute(expr, variables)})
    path = tmp_path / "expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
    done = _run(promtool(), "check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_provisioning_points_at_the_fixed_datasource_and_the_dashboards(repo_root):
    ds = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "mdmbus.yml").read_text())
    (prov,) = provider["providers"]
    # compose.yaml mounts ops/grafana/dashboards where the provider looks.
    compose = yaml.safe_load((repo_root / "compose.yaml").read_text())
    mounts = {v.split(":")[1]: v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]
              if isinstance(v, str)}
    assert Path(mounts[prov["options"]["path"]]) == Path("./ops/grafana/dashboards")
    assert Path(mounts["/etc/grafana/provisioning"]) == Path("./ops/grafana/provisioning")
