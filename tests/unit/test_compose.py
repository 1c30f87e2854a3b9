"""compose.yaml, checked as far as a machine without a container engine can check it."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path, PurePosixPath

import jsonschema
import pytest
import yaml

from mdmbus.regions import all_databases


@pytest.fixture(scope="module")
def compose(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "compose.yaml").read_text())


def test_compose_file_validates_against_the_compose_specification(compose, data_dir):
    schema = json.loads((data_dir / "compose-spec" / "compose-spec.json").read_text())
    jsonschema.validate(compose, schema, cls=jsonschema.Draft7Validator)


def test_a_broken_compose_file_is_caught_by_the_same_check(compose, data_dir):
    schema = json.loads((data_dir / "compose-spec" / "compose-spec.json").read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["ports"] = {"not": "a list"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft7Validator)


def test_kafka_is_the_same_release_as_the_embedded_stack(compose):
    from mdmbus.settings import Settings
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{Settings().kafka_version}"


def test_one_postgres_server_per_region_the_directory_and_cm(compose):
    dbs = sorted(s["environment"]["POSTGRES_DB"] for s in compose["services"].values()
                 if s.get("image", "").startswith("postgres:"))
    assert dbs == sorted(all_databases())


def test_no_two_services_publish_the_same_host_port(compose):
    seen: dict[str, str] = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host = str(port).rsplit(":", 1)[0]
            assert host not in seen, f"{name} and {seen[host]} both publish {host}"
            seen[host] = name


def test_every_bind_mount_exists_in_the_repo(compose, repo_root):
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                assert (repo_root / source).exists(), f"{name} mounts missing {source}"


def test_no_secret_in_plain_text(compose, repo_root):
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        for key, value in (env.items() if isinstance(env, dict) else []):
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[?-][^}]*)?\}", str(value)), \
                    f"{name}: {key} must come from .env, not the file"
    assert (repo_root / ".env.example").exists()


# --- the mdmbus services, Prometheus and Grafana -----------------------------------------------

MDMBUS_IMAGE = "mdmbus:local"


def _process_services() -> dict[str, tuple[str, str | None]]:
    """compose service -> (process, region): a service per region of each regional process."""
    from mdmbus.cli.processes import PROCESSES, REGIONAL
    from mdmbus.regions import REGIONS
    out = {}
    for process in PROCESSES:
        for region in (REGIONS if process in REGIONAL else (None,)):
            out[process if region is None else f"{process}-{region}"] = (process, region)
    return out


PROCESS_SERVICES = tuple(_process_services())
_VAR = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def _mdmbus_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if s.get("image") == MDMBUS_IMAGE}


def _with_defaults(value: str) -> str:
    """Compose interpolation with every variable at its default (as with an empty .env)."""
    return _VAR.sub(lambda m: m.group(3) if m.group(2) == "-" else "x", value)


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping, please"
    return {k: _with_defaults(str(v)) for k, v in env.items()}


def test_every_mdmbus_service_runs_the_image_built_from_the_dockerfile(compose):
    services = _mdmbus_services(compose)
    assert set(services) >= {"mdmbus-init", *PROCESS_SERVICES, "simulator"}
    for name, service in services.items():
        assert service.get("build", {}).get("context") == ".", name


def test_every_command_a_service_runs_is_a_subcommand_the_cli_knows(compose):
    from mdmbus.cli import _parser
    parser = _parser()
    known = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, service in _mdmbus_services(compose).items():
        command = service.get("command")
        assert isinstance(command, list) and command, f"{name}: command as a list, please"
        argv = [_with_defaults(str(a)) for a in command]
        assert argv[0] in known, f"{name} runs `mdmbus {argv[0]}`, which mdmbus/cli.py does not have"
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{name}: `mdmbus {' '.join(argv)}` is refused by mdmbus/cli.py")


def test_each_process_service_runs_its_process(compose):
    for name, (process, region) in _process_services().items():
        want = ["process", process] + ([] if region is None else ["--region", region])
        assert compose["services"][name]["command"] == want, name
    assert compose["services"]["mdmbus-init"]["command"] == ["provision"]
    assert compose["services"]["mdmbus-init"]["restart"] == "no"


def test_prometheus_scrapes_each_process_where_it_serves_metrics(compose, repo_root):
    config = yaml.safe_load((repo_root / "ops" / "prometheus" / "prometheus.compose.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "mdmbus")
    scraped = {}
    for sc in job["static_configs"]:
        (target,) = sc["targets"]
        host, port = target.rsplit(":", 1)
        scraped[host] = (port, sc["labels"]["process"], sc["labels"].get("region"))
    assert set(scraped) == set(PROCESS_SERVICES)
    for host, (port, process, region) in scraped.items():
        service = compose["services"][host]
        env = _env(service)
        assert env["MDMBUS_METRICS_PORT"] == port and env["MDMBUS_METRICS_ADDR"] == "0.0.0.0", host
        assert service["command"][:2] == ["process", process]
        assert (service["command"][3] if region else None) == region, host
        assert port in [str(p) for p in service.get("expose", [])]
        assert f"127.0.0.1:{port}/metrics" in " ".join(service["healthcheck"]["test"])


def test_every_database_is_reached_on_its_own_server(compose):
    from mdmbus.settings import Settings
    server_of = {s["environment"]["POSTGRES_DB"]: name for name, s in compose["services"].items()
                 if s.get("image", "").startswith("postgres:")}
    for name, service in _mdmbus_services(compose).items():
        env = _env(service)
        settings = Settings.from_env(env)
        assert settings.kafka_bootstrap == "kafka:9092", name
        for db in all_databases():
            assert settings.pg_server(db) == (server_of[db], 5432), f"{name}: {db}"
            server_env = compose["services"][server_of[db]]["environment"]
            assert env["MDMBUS_PG_USER"] == _with_defaults(server_env["POSTGRES_USER"])
            assert service["environment"]["MDMBUS_PG_PASSWORD"].split(":")[0] == \
                server_env["POSTGRES_PASSWORD"].split(":")[0], f"{name}: not the servers' password"


def test_services_start_in_order(compose):
    services = compose["services"]
    for name, service in services.items():
        for dep, spec in service.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert not services[dep].get("profiles") or service.get("profiles"), \
                f"{name} depends on {dep}, which only runs in a profile"
            condition = spec["condition"]
            assert condition in ("service_started", "service_healthy",
                                 "service_completed_successfully"), name
            if condition == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; it has no healthcheck"
    init = services["mdmbus-init"]["depends_on"]
    assert {d for d, s in init.items() if s["condition"] == "service_healthy"} == \
        {"kafka", "postgres-na", "postgres-eu", "postgres-ap", "postgres-directory", "postgres-cm"}
    for name in PROCESS_SERVICES + ("simulator",):
        assert services[name]["depends_on"]["mdmbus-init"]["condition"] == "service_completed_successfully"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"

    # No cycles: a topological order exists.
    pending = {n: set(s.get("depends_on", {})) for n, s in services.items()}
    while pending:
        ready = [n for n, deps in pending.items() if not deps & set(pending)]
        assert ready, f"depends_on cycle among {sorted(pending)}"
        for n in ready:
            del pending[n]


def test_every_long_running_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        if name in ("mdmbus-init", "simulator"):
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_the_demo_simulator_is_optional(compose):
    assert compose["services"]["simulator"]["profiles"] == ["demo"]
    assert all(not s.get("profiles") for n, s in compose["services"].items() if n != "simulator")


def test_prometheus_and_grafana_are_configured_from_ops(compose, repo_root):
    prometheus = compose["services"]["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./ops/prometheus/prometheus.compose.yml"
    assert mounts["/etc/prometheus/alerts.yml"] == "./ops/prometheus/alerts.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    grafana = compose["services"]["grafana"]
    assert grafana["image"].startswith("grafana/grafana:")
    assert "GF_SECURITY_ADMIN_PASSWORD" in grafana["environment"]
    # The home dashboard is one of the mounted, provisioned dashboards.
    home = PurePosixPath(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    mounts = {PurePosixPath(v.split(":")[1]): v.split(":")[0] for v in grafana["volumes"]}
    assert (repo_root / mounts[home.parent] / home.name).is_file()


def test_every_variable_compose_reads_is_in_env_example(compose, repo_root):
    text = (repo_root / "compose.yaml").read_text()
    used = {m.group(1) for m in _VAR.finditer(text.replace("$$", ""))}
    example = {line.split("=", 1)[0].strip() for line in
               (repo_root / ".env.example").read_text().splitlines()
               if line.strip() and not line.lstrip().startswith("#")}
    assert used - example == set(), ".env.example must list every variable compose.yaml reads"
    required = {m.group(1) for m in _VAR.finditer(text) if m.group(2) == "?"}
    assert {"MDMBUS_PG_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} <= required


def test_secrets_stay_out_of_git_and_the_image(repo_root):
    assert ".env" in (repo_root / ".gitignore").read_text().split()
    ignored = (repo_root / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored


def test_the_dockerfile_installs_the_package_and_runs_mdmbus(repo_root):
    text = (repo_root / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    assert 'ENTRYPOINT ["mdmbus"]' in lines
    assert re.search(r"^RUN pip install (-e )?\.", text, re.M)
    copied = {m.group(1).rstrip("/") for m in re.finditer(r"^COPY (\S+)", text, re.M)}
    # What pip needs to build the package: its code, its contract (package data of
    # mdmbus.schemas) and what pyproject.toml names.
    assert {"mdmbus", "streams", "services", "schemas"} <= copied
    ignored = set((repo_root / ".dockerignore").read_text().split())
    assert not ({"mdmbus", "streams", "services", "schemas", "pyproject.toml", "README.md"} & ignored)
