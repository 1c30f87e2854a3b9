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
    broken["services"][KAFKA]["ports"] = {"not": "a list"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft7Validator)


def test_kafka_is_the_same_release_as_the_embedded_stack(compose, repo_root):
    """Every node runs the image built from the jars the embedded stack fetches (its pom)."""
    from mdmbus.settings import Settings
    for node in KAFKA_NODES:
        kafka = compose["services"][node]
        assert kafka["image"] == f"mdmbus-kafka:{Settings().kafka_version}", node
        assert kafka["build"] == {"context": ".", "dockerfile": "ops/kafka/Dockerfile"}, node
    text = (repo_root / "ops/kafka/Dockerfile").read_text()
    assert re.search(r"^COPY \.build/kafka-libs/? /opt/kafka/libs/?$", text, re.M)
    prepare = (repo_root / "ops/compose/prepare").read_text()
    assert "ensure_jars" in prepare, "the jars come the way the embedded stack gets them"


def test_the_kafka_cluster_is_three_replicated_kraft_nodes(compose):
    """Three combined broker+controller nodes, each its own id, name and data volume, voting
    on one quorum; every topic on three brokers, acknowledged by two, no unclean election."""
    from mdmbus.settings import Settings
    services = compose["services"]
    props = {node: {_kafka_property(k): _interpolate(v)
                    for k, v in services[node]["environment"].items()
                    if k.startswith("KAFKA_") and k not in _KAFKA_NOT_PROPERTIES}
             for node in KAFKA_NODES}
    voters = {f"{p['node.id']}@{node}:9093" for node, p in props.items()}
    assert len({p["node.id"] for p in props.values()}) == 3
    assert len({services[n]["environment"]["CLUSTER_ID"] for n in KAFKA_NODES}) == 1
    for node, p in props.items():
        assert set(p["controller.quorum.voters"].split(",")) == voters, node
        assert p["process.roles"] == "broker,controller", node
        assert set(_listeners(p["advertised.listeners"]).values()) == \
            {(node, "9092"), (node, "9094")}, node
        assert p["default.replication.factor"] == "3" and p["min.insync.replicas"] == "2", node
        assert p["unclean.leader.election.enable"] == "false", node
        for internal in ("offsets.topic", "transaction.state.log",
                         "share.coordinator.state.topic"):
            assert p[f"{internal}.replication.factor"] == "3", (node, internal)
        assert p["transaction.state.log.min.isr"] == p["share.coordinator.state.topic.min.isr"] == "2"
        data = [source for source, _ in _mounts(services[node]).values()
                if source.startswith("kafka-") and source.endswith("-data")]
        assert data == [f"{node}-data"], node
    init = Settings.from_env(_env(services["mdmbus-init"]))
    assert init.kafka_replication_factor == 3
    for name, service in _mdmbus_services(compose).items():
        bootstrap = Settings.from_env(_env(service)).kafka_bootstrap.split(",")
        assert bootstrap == [f"{n}:9092" for n in KAFKA_NODES], name


def test_one_postgres_server_per_region_the_directory_and_cm(compose):
    dbs = sorted(s["environment"]["POSTGRES_DB"] for s in compose["services"].values()
                 if s.get("image", "").startswith("mdmbus-postgres:"))
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
                 if s.get("image", "").startswith("mdmbus-postgres:")}
    for name, service in _mdmbus_services(compose).items():
        env = _env(service)
        settings = Settings.from_env(env)
        assert settings.kafka_bootstrap == ",".join(f"{n}:9092" for n in KAFKA_NODES), name
        for db in all_databases():
            assert settings.pg_server(db) == (server_of[db], 5432), f"{name}: {db}"
            server_env = compose["services"][server_of[db]]["environment"]
            assert env["MDMBUS_PG_USER"] == _with_defaults(server_env["POSTGRES_USER"])


def test_only_certs_and_provisioning_get_the_postgres_superuser_password(compose):
    """The processes log in as their own roles; the superuser's password (from .env) goes to
    mdmbus-init, which provisions with it, and mdmbus-certs, which then generates none."""
    variables = {s["environment"]["POSTGRES_PASSWORD"].split(":")[0]
                 for s in _postgres_services(compose).values()}
    assert len(variables) == 1, "every PostgreSQL server has the same superuser password"
    (want,) = variables
    holders = {name for name, s in _mdmbus_services(compose).items()
               if "MDMBUS_PG_PASSWORD" in s.get("environment", {})}
    assert holders == {"mdmbus-certs", "mdmbus-init"}
    for name in holders:
        given = compose["services"][name]["environment"]["MDMBUS_PG_PASSWORD"]
        assert given.split(":")[0] == want, f"{name}: not the servers' password"


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
        {*KAFKA_NODES, "postgres-na", "postgres-eu", "postgres-ap", "postgres-directory", "postgres-cm"}
    assert init["mdmbus-certs"]["condition"] == "service_completed_successfully"
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
        if name in ("mdmbus-certs", "mdmbus-init", "simulator"):
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_the_demo_simulator_is_optional(compose):
    assert compose["services"]["simulator"]["profiles"] == ["demo"]
    # Grafana's image is the one not built here (pulled from Docker Hub): optional too.
    assert compose["services"]["grafana"]["profiles"] == ["grafana"]
    assert all(not s.get("profiles") for n, s in compose["services"].items()
               if n not in ("simulator", "grafana"))


def test_prometheus_and_grafana_are_configured_from_ops(compose, repo_root):
    prometheus = compose["services"]["prometheus"]
    assert prometheus["build"] == {"context": ".", "dockerfile": "ops/prometheus/Dockerfile"}
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
    # One Debian base for every image the project builds (Debian's python3 is 3.11).
    assert lines[:2] == ["ARG BASE=debian:bookworm-slim", "FROM ${BASE}"]
    assert re.search(r"apt-get install .*\bpython3 python3-venv\b", text)
    assert 'ENTRYPOINT ["mdmbus"]' in lines
    # The package and its dependencies from the wheels ops/compose/prepare builds, no index.
    assert re.search(r"pip install -q --no-index --find-links /tmp/wheels mdmbus", text)
    copied = {m.group(1).rstrip("/") for m in re.finditer(r"^COPY (\S+)", text, re.M)}
    assert copied == {".build/wheels"}
    assert "pip wheel" in (repo_root / "ops/compose/prepare").read_text()
    ignored = set((repo_root / ".dockerignore").read_text().split())
    assert not ({".build", "ops", "ops/kafka", "ops/postgres", "ops/prometheus"} & ignored)
    for dockerfile in ("ops/kafka/Dockerfile", "ops/postgres/Dockerfile",
                       "ops/prometheus/Dockerfile"):
        text = (repo_root / dockerfile).read_text()
        assert re.search(r"^ARG BASE=debian:bookworm-slim\nFROM \$\{BASE\}$", text, re.M), dockerfile


# --- security: the embedded stack's, in containers ---------------------------------------------
# The embedded stack (mdmbus/stack/) is the reference: Kafka's properties are those of
# mdmbus/stack/conf/server.properties.in, PostgreSQL's those of mdmbus/stack/postgres.py. The
# server images are configured through their own conventions; the helpers below mirror them.

CERTS = "mdmbus-certs"
#: The Kafka cluster's nodes (x-kafka in compose.yaml); KAFKA is the one a test reads.
KAFKA_NODES = ("kafka-1", "kafka-2", "kafka-3")
KAFKA = KAFKA_NODES[0]
#: The volumes mdmbus-certs fills: the mdmbus containers' state, and the servers' copies.
CERT_VOLUMES = ("mdmbus-state", "kafka-tls", "pg-tls")
#: The users the server images run as (apache/kafka: appuser; postgres:15, Debian: postgres).
KAFKA_UID, POSTGRES_UID = "1000", "999"

_COMPOSE_TOKEN = re.compile(r"\$\$|\$\{(\w+)(?::?([-?])([^}]*))?\}")


def _interpolate(value: object) -> str:
    """What compose makes of a value with an empty .env: defaults, "x" for a required
    variable, and "$$" is a literal "$"."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return m.group(3) if m.group(2) == "-" else "x"
    return _COMPOSE_TOKEN.sub(sub, str(value))


def _properties(text: str) -> dict[str, str]:
    """A Java properties file of the simple kind server.properties.in is: key=value lines."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        out[key.strip()] = value.strip()
    return out


#: Variables of KAFKA_ form that the apache/kafka image does not turn into server properties
#: (KafkaDockerWrapper's ExcludeServerPropsEnv).
_KAFKA_NOT_PROPERTIES = {"KAFKA_VERSION", "KAFKA_HEAP_OPT", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS",
                         "KAFKA_JMX_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_GC_LOG_OPTS",
                         "KAFKA_LOG4J_ROOT_LOGLEVEL", "KAFKA_LOG4J_LOGGERS",
                         "KAFKA_TOOLS_LOG4J_LOGLEVEL", "KAFKA_JMX_HOSTNAME"}


def _kafka_property(variable: str) -> str:
    """The server property the apache/kafka image (4.x: kafka.docker.KafkaDockerWrapper) makes
    of a KAFKA_* variable: every "KAFKA_" removed, lower case, "_" -> ".", then "..." -> "-"
    and ".." -> "_"."""
    return (variable.replace("KAFKA_", "").lower().replace("_", ".")
            .replace("...", "-").replace("..", "_"))


#: Properties of the cluster only (the embedded broker runs with Kafka's defaults).
CLUSTER_ONLY = {"default.replication.factor", "min.insync.replicas",
                "unclean.leader.election.enable", "broker.session.timeout.ms"}
#: Properties whose value in a three-node cluster differs from the single embedded broker's.
CLUSTER_SETTINGS = CLUSTER_ONLY | {
    "controller.quorum.voters", "node.id", "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor", "transaction.state.log.min.isr",
    "share.coordinator.state.topic.replication.factor", "share.coordinator.state.topic.min.isr"}


def _kafka_properties(compose: dict) -> dict[str, str]:
    env = compose["services"][KAFKA]["environment"]
    return {_kafka_property(k): _interpolate(v) for k, v in env.items()
            if k.startswith("KAFKA_") and k not in _KAFKA_NOT_PROPERTIES}


@pytest.fixture(scope="module")
def embedded_kafka() -> dict[str, str]:
    from mdmbus.stack.kafka import CONF
    return _properties((CONF / "server.properties.in").read_text())


def _listeners(value: str) -> dict[str, tuple[str, str]]:
    """NAME://host:port,... -> {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, sep, address = item.strip().partition("://")
        assert sep, f"not NAME://host:port: {item!r}"
        host, _, port = address.rpartition(":")
        assert name not in out, f"listener {name} twice"
        out[name] = (host, port)
    return out


def _protocols(props: dict[str, str]) -> dict[str, str]:
    return dict(item.split(":") for item in props["listener.security.protocol.map"].split(","))


def _mounts(service: dict) -> dict[str, tuple[str, bool]]:
    """target -> (source, read-only) of every volume of a service (short syntax)."""
    out = {}
    for volume in service.get("volumes", []):
        assert isinstance(volume, str), "volumes in the short syntax, please"
        source, target, *mode = volume.split(":")
        out[target] = (source, "ro" in (mode[0].split(",") if mode else []))
    return out


def _in_volume(service: dict, path: str) -> tuple[str, str]:
    """(volume, path inside it) of a file a service reads from a mounted volume."""
    for target, (source, _) in _mounts(service).items():
        if path.startswith(target.rstrip("/") + "/"):
            return source, path[len(target.rstrip("/")) + 1:]
    pytest.fail(f"{path} is on no volume of the service")


def _certs_script(compose: dict) -> str:
    entrypoint = compose["services"][CERTS]["entrypoint"]
    assert entrypoint[:2] == ["/bin/sh", "-eu"] and entrypoint[2] == "-c", \
        "mdmbus-certs: a shell step that stops at the first failing command"
    return _interpolate(entrypoint[3])


def _installed(compose: dict) -> dict[tuple[str, str], dict[str, str]]:
    """(volume, path inside it) -> owner, group, mode and source of each file mdmbus-certs
    installs (`install -o UID -g GID -m MODE SOURCE DEST`)."""
    certs = compose["services"][CERTS]
    pki = _env(certs)["MDMBUS_STATE_DIR"] + "/pki"
    script = _certs_script(compose).replace("$pki", pki)
    out = {}
    for m in re.finditer(r"^\s*install -o (\d+) -g (\d+) -m (0[0-7]{3}) (\S+) (\S+)\s*$",
                         script, re.M):
        owner, group, mode, source, dest = m.groups()
        out[_in_volume(certs, dest)] = {"owner": owner, "group": group, "mode": mode,
                                        "source": source.strip('"')}
    return out


def _postgres_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items()
            if s.get("image", "").startswith("mdmbus-postgres:")}


def _pg_settings(service: dict) -> dict[str, str]:
    """The -c name=value settings of a postgres service's command."""
    command = service["command"]
    assert command[0] == "postgres", "the image's entrypoint passes `postgres ...` to initdb's server too"
    out = {}
    for flag, setting in zip(command[1::2], command[2::2]):
        assert flag == "-c", f"postgres arguments as -c name=value pairs, not {flag!r}"
        name, _, value = setting.partition("=")
        out[name] = value
    return out


def _hba_rules(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


# Kafka ------------------------------------------------------------------------------------------

def test_kafka_variables_name_the_properties_the_image_makes_of_them(compose):
    assert _kafka_property("KAFKA_LISTENER_NAME_CLIENT_SCRAM___SHA___512_SASL_JAAS_CONFIG") == \
        "listener.name.client.scram-sha-512.sasl.jaas.config"
    assert _kafka_property("KAFKA_SSL_KEYSTORE_TYPE") == "ssl.keystore.type"
    for variable in compose["services"][KAFKA]["environment"]:
        # The image removes every "KAFKA_", not only the prefix; four underscores are undefined.
        assert variable.count("KAFKA_") <= 1 and "____" not in variable, variable


def test_kafka_has_the_properties_of_the_embedded_broker(compose, embedded_kafka):
    """Every property of server.properties.in, and no other: the same listeners' security,
    TLS stores, client authentication, principal mapping, SASL mechanism, authorizer, super
    users and broker defaults. Placeholders (@NAME@) take one value each."""
    props = _kafka_properties(compose)
    extra = set(props) - set(embedded_kafka)
    assert extra == CLUSTER_ONLY, "properties the embedded broker does not have"
    assert set(embedded_kafka) - set(props) == set(), "properties of the embedded broker missing"
    # A cluster's own (test_the_kafka_cluster_is_three_replicated_kraft_nodes).
    embedded_kafka = {k: v for k, v in embedded_kafka.items() if k not in CLUSTER_SETTINGS}
    placeholder = re.compile(r"@([A-Z_]+)@")
    bound: dict[str, str] = {}

    def bind(name: str, value: str, where: str) -> None:
        assert bound.setdefault(name, value) == value, f"{where}: @{name}@ is {bound[name]} elsewhere"

    for key, template in embedded_kafka.items():
        if key in ("listeners", "advertised.listeners"):
            continue
        names = placeholder.findall(template)
        if not names:
            assert props[key] == template, key
            continue
        pattern = "".join(re.escape(part) if i % 2 == 0 else "(.+?)"
                          for i, part in enumerate(placeholder.split(template)))
        m = re.fullmatch(pattern, props[key])
        assert m, f"{key}={props[key]!r} is not of the form {template!r}"
        for name, value in zip(names, m.groups()):
            bind(name, value, key)

    # The same listeners on the same (placeholder) ports; the controller, on loopback in the
    # embedded broker, listens in the node's container for the other two nodes (published
    # nowhere, and mutual TLS as there).
    template, listeners = _listeners(embedded_kafka["listeners"]), _listeners(props["listeners"])
    assert set(listeners) == set(template)
    for name, (_host, port) in template.items():
        bind(placeholder.fullmatch(port).group(1), listeners[name][1], f"listener {name}")
    controller = props["controller.listener.names"]
    assert template[controller][0] == "127.0.0.1"
    assert _protocols(props)[controller] == "SSL"
    assert props[f"listener.name.{controller.lower()}.ssl.client.auth"] == "required"
    for node in KAFKA_NODES:
        node_props = {_kafka_property(k): _interpolate(v)
                      for k, v in compose["services"][node]["environment"].items()
                      if k.startswith("KAFKA_") and k not in _KAFKA_NOT_PROPERTIES}
        advertised = _listeners(node_props["advertised.listeners"])
        assert set(advertised) == set(_listeners(embedded_kafka["advertised.listeners"]))
        for name, (host, port) in advertised.items():
            assert host == node and port == listeners[name][1], (node, name)


def test_no_plaintext_kafka_listener_and_client_certificates_where_there_is_no_sasl(compose):
    props = _kafka_properties(compose)
    protocols = _protocols(props)
    for key in ("listeners", "advertised.listeners"):
        for name in _listeners(props[key]):
            assert protocols[name] in ("SSL", "SASL_SSL"), f"{key}: {name} is {protocols[name]}"
    assert set(protocols.values()) <= {"SSL", "SASL_SSL"}
    for name, protocol in protocols.items():
        if protocol == "SSL":
            assert props[f"listener.name.{name.lower()}.ssl.client.auth"] == "required", name
        else:
            assert props[f"listener.name.{name.lower()}.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
            jaas = props[f"listener.name.{name.lower()}.scram-sha-512.sasl.jaas.config"]
            assert jaas.startswith("org.apache.kafka.common.security.scram.ScramLoginModule required")
            assert "password" not in jaas.lower(), "the SCRAM users live in Kafka's metadata"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    from mdmbus.identities import SUPER_USERS
    assert props["super.users"].split(";") == [f"User:{u}" for u in SUPER_USERS]
    # Nothing of Kafka (or PostgreSQL) is published to the host.
    for name in (*KAFKA_NODES, *_postgres_services(compose)):
        assert not compose["services"][name].get("ports"), f"{name} publishes ports"
    # ... and no mdmbus container is told to talk plaintext.
    from mdmbus.settings import Settings
    client = ",".join(f"{node}:" + _listeners(props["advertised.listeners"])["CLIENT"][1]
                      for node in KAFKA_NODES)
    for name, service in _mdmbus_services(compose).items():
        settings = Settings.from_env(_env(service))
        assert settings.kafka_security == "sasl_ssl" and settings.pg_tls, name
        assert settings.kafka_bootstrap == client and protocols["CLIENT"] == "SASL_SSL", name


def test_the_images_scripts_leave_the_kafka_configuration_alone(compose):
    """apache/kafka's configure script demands JKS stores, password files and a JAAS file in
    KAFKA_OPTS when an advertised listener's text contains "SSL://" or "SASL_...://" (it
    looks at names, not protocols); configureDefaults fills in PLAINTEXT listeners for any of
    its variables left unset."""
    env = {k: _interpolate(v) for k, v in compose["services"][KAFKA]["environment"].items()}
    assert "SSL://" not in env["KAFKA_ADVERTISED_LISTENERS"]
    assert not re.search(r"SASL_.*://", env["KAFKA_ADVERTISED_LISTENERS"])
    defaults = {"CLUSTER_ID", "KAFKA_NODE_ID", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS", "KAFKA_PROCESS_ROLES",
                "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_INTER_BROKER_LISTENER_NAME",
                "KAFKA_CONTROLLER_LISTENER_NAMES", "KAFKA_LOG_DIRS",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"}
    assert defaults - set(env) == set()
    assert "KAFKA_OPTS" not in env


def test_kafka_reads_its_stores_and_data_where_mdmbus_certs_and_compose_put_them(compose):
    kafka = compose["services"][KAFKA]
    props = _kafka_properties(compose)
    installed = _installed(compose)
    state = _env(compose["services"][CERTS])["MDMBUS_STATE_DIR"]
    from mdmbus.settings import Settings
    from mdmbus.stack.kafka import keystore
    settings = Settings.from_env({"MDMBUS_STATE_DIR": state})
    for key, source in (("ssl.keystore.location", keystore(settings)),
                        ("ssl.truststore.location", settings.pki_dir / "ca.crt")):
        volume, path = _in_volume(kafka, props[key])
        assert volume == "kafka-tls" and _mounts(kafka)[props[key].rsplit("/", 1)[0]][1], \
            f"{key}: from the kafka-tls volume, read-only"
        copy = installed[(volume, path)]
        assert copy["source"] == str(source), key
        assert copy["owner"] == KAFKA_UID and int(copy["mode"], 8) & 0o400, key
    for node in KAFKA_NODES:
        assert _in_volume(compose["services"][node], props["log.dirs"] + "/x") == \
            (f"{node}-data", "x")
    assert "mdmbus-state" not in {s for s, _ in _mounts(kafka).values()}, \
        "the broker needs its key store, not every password and the CA's key"


def test_kafka_healthcheck_authenticates_on_the_mutual_tls_listener(compose, repo_root):
    kafka = compose["services"][KAFKA]
    props = _kafka_properties(compose)
    test = " ".join(kafka["healthcheck"]["test"])
    m = re.search(r"python3 /opt/kafka/bin/healthcheck\.py (\S+):(\d+) (\S+)", test)
    assert m, "an ApiVersions round trip with a client configuration"
    host, port, config = m.groups()
    name = next(n for n, (_, p) in _listeners(props["listeners"]).items() if p == port)
    assert _protocols(props)[name] == "SSL"
    assert props[f"listener.name.{name.lower()}.ssl.client.auth"] == "required"
    copy = _installed(compose)[_in_volume(kafka, config)]
    assert copy["owner"] == KAFKA_UID
    certs_mounts = _mounts(compose["services"][CERTS])
    source, read_only = certs_mounts[copy["source"]]
    assert read_only and (repo_root / source).is_file()
    client = _properties((repo_root / source).read_text())
    assert client["security.protocol"] == "SSL"
    assert client["ssl.keystore.location"] == props["ssl.keystore.location"]
    assert client["ssl.truststore.location"] == props["ssl.truststore.location"]
    assert client["ssl.keystore.type"] == client["ssl.truststore.type"] == "PEM"
    assert not [k for k in client if "password" in k], "a certificate, no password"


def test_provisioning_reaches_kafka_as_admin_on_the_mutual_tls_listener(compose):
    from mdmbus.identities import ADMIN, SUPER_USERS
    from mdmbus.settings import Settings
    props = _kafka_properties(compose)
    settings = Settings.from_env(_env(compose["services"]["mdmbus-init"]))
    admin = [a.rpartition(":") for a in settings.kafka_admin_bootstrap.split(",")]
    assert [host for host, _, _ in admin] == list(KAFKA_NODES)
    host, _, port = admin[0]
    (name,) = [n for n, a in _listeners(props["advertised.listeners"]).items() if a == (host, port)]
    assert name == props["inter.broker.listener.name"] and _protocols(props)[name] == "SSL"
    assert props[f"listener.name.{name.lower()}.ssl.client.auth"] == "required"
    # The admin's certificate (CN=admin) maps to User:admin, a super user.
    rule = re.match(r"RULE:(.+)/(.+)/,DEFAULT$", props["ssl.principal.mapping.rules"])
    assert re.sub(rule.group(1), rule.group(2).replace("$1", r"\1"), f"CN={ADMIN}") == ADMIN
    assert ADMIN in SUPER_USERS
    assert all("MDMBUS_KAFKA_ADMIN_BOOTSTRAP" not in s.get("environment", {})
               for n, s in _mdmbus_services(compose).items() if n != "mdmbus-init")


# PostgreSQL -------------------------------------------------------------------------------------

def test_every_postgres_server_has_the_embedded_servers_tls_and_password_settings(compose):
    from mdmbus.stack import postgres
    embedded = {}
    for line in postgres._SECURITY_CONF.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            embedded[name.strip()] = value.strip().strip("'")
    assert {"ssl", "ssl_cert_file", "ssl_key_file", "password_encryption"} <= set(embedded)
    installed = _installed(compose)
    for name, service in _postgres_services(compose).items():
        settings = _pg_settings(service)
        for key, value in embedded.items():
            if key in ("ssl_cert_file", "ssl_key_file", "ssl_ca_file"):
                volume, path = _in_volume(service, settings[key])
                assert (volume, path) in installed and path == value, f"{name}: {key}"
            else:
                assert settings[key] == value, f"{name}: {key}"
        hba = _in_volume(service, settings["hba_file"])
        assert hba in installed, f"{name}: its pg_hba.conf is the one mdmbus-certs installs"
        volume_mounts = {source: ro for source, ro in _mounts(service).values()}
        assert volume_mounts.get("pg-tls") is True, f"{name}: pg-tls read-only"
        assert "mdmbus-state" not in volume_mounts, \
            f"{name}: the server needs its certificate, not every password and the CA's key"
        initdb = service["environment"]["POSTGRES_INITDB_ARGS"].split()
        assert {"--auth-local=scram-sha-256", "--auth-host=scram-sha-256"} <= set(initdb), name
        # Healthy once the real server listens on TCP (first-start's server does not).
        assert re.search(r"pg_isready -h 127\.0\.0\.1\b", " ".join(service["healthcheck"]["test"]))
        assert service["depends_on"][CERTS]["condition"] == "service_completed_successfully"


def test_pg_hba_enforces_tls_and_scram_as_the_embedded_server_does(compose, repo_root):
    from mdmbus.stack import postgres
    (hba,) = {copy["source"] for (volume, path), copy in _installed(compose).items()
              if volume == "pg-tls" and path == "pg_hba.conf"}
    source, read_only = _mounts(compose["services"][CERTS])[hba]
    assert read_only and source == "./ops/postgres/pg_hba.conf"
    rules = _hba_rules((repo_root / source).read_text())
    assert rules, "an empty pg_hba.conf lets nobody in"
    for rule in rules:
        assert rule[0] in ("local", "hostssl"), f"{rule}: TCP without TLS, or an include"
        assert rule[-1] in ("scram-sha-256", "cert", "reject"), \
            f"{rule}: a SCRAM password or a client certificate, nothing weaker"
        assert rule[-1] != "cert" or rule[0] == "hostssl", rule
    assert any(rule[0] == "hostssl" for rule in rules)
    embedded = _hba_rules(postgres.HBA)
    assert {(r[0], r[-1]) for r in rules} == {(r[0], r[-1]) for r in embedded}
    # The same roles log in by certificate only, there as here, and they come first.
    for method in ("cert", "reject"):
        assert {r[2] for r in rules if r[-1] == method} == \
            {r[2] for r in embedded if r[-1] == method}
    first_password = min(i for i, r in enumerate(rules) if r[0] == "hostssl" and r[-1] != "cert")
    assert all(r[-1] == "cert" for r in rules[:first_password] if r[0] == "hostssl")


# mdmbus-certs, and where every secret comes from -----------------------------------------------

def test_mdmbus_certs_runs_first_and_names_every_server(compose):
    from urllib.parse import urlparse
    from mdmbus.regions import REGIONS
    from mdmbus.settings import Settings
    services = compose["services"]
    certs = services[CERTS]
    assert certs["command"] == ["stack", "credentials"] and certs["restart"] == "no"
    assert not certs.get("depends_on")
    script = _certs_script(compose).splitlines()
    assert re.fullmatch(r'\s*mdmbus "\$@"\s*', script[0]), \
        "the script runs the command first (`mdmbus stack credentials`)"
    # ... as root, then hands the state to the user every other mdmbus container runs as.
    assert certs["user"] in ("root", "0", "0:0")
    state = _env(certs)["MDMBUS_STATE_DIR"]
    assert re.fullmatch(rf"\s*chown -R mdmbus: {re.escape(state)}\s*", script[1])
    mounts = {source: target for target, (source, ro) in _mounts(certs).items() if not ro}
    assert set(CERT_VOLUMES) <= set(mounts)
    # Every host name a client checks a certificate against is on the certificates.
    init = Settings.from_env(_env(services["mdmbus-init"]))
    hosts = {a.rpartition(":")[0] for a in
             (init.kafka_bootstrap + "," + init.kafka_admin_bootstrap).split(",")}
    hosts |= {init.pg_server(db)[0] for db in all_databases()}
    hosts |= {urlparse(init.gateway_url(r)).hostname for r in REGIONS}
    assert hosts - set(Settings.from_env(_env(certs)).tls_hostnames) == set()

    # Whatever uses what it writes starts after it has finished.
    def deps(name: str, seen: set[str]) -> set[str]:
        for dep in services[name].get("depends_on", {}):
            if dep not in seen:
                seen.add(dep)
                deps(dep, seen)
        return seen

    for name, service in services.items():
        if name == CERTS:
            continue
        if CERTS in service.get("depends_on", {}):
            assert service["depends_on"][CERTS]["condition"] == "service_completed_successfully"
        if {source for source, _ in _mounts(service).values()} & set(CERT_VOLUMES):
            assert CERTS in deps(name, set()), f"{name} may start before {CERTS} has run"


def test_postgres_keys_are_owned_as_the_postgres_image_demands(compose):
    """PostgreSQL refuses a key that is not its own with mode 0600 (or root's with 0640)."""
    installed = _installed(compose)
    for name, service in _postgres_services(compose).items():
        key = installed[_in_volume(service, _pg_settings(service)["ssl_key_file"])]
        assert (key["owner"], key["mode"]) in ((POSTGRES_UID, "0600"), ("0", "0640")), name
        assert key["source"].endswith("/pki/postgres.key")
        cert = installed[_in_volume(service, _pg_settings(service)["ssl_cert_file"])]
        assert cert["source"].endswith("/pki/postgres.crt") and cert["owner"] == POSTGRES_UID
    for (volume, path), copy in installed.items():
        if copy["source"].endswith((".key", ".pem")):
            assert int(copy["mode"], 8) & 0o077 == 0, f"{volume}/{path}: readable by others"


def test_every_password_comes_from_env_or_the_state_volume(compose):
    """No literal secret anywhere: .env's two, every other one in mdmbus-state (generated by
    mdmbus-certs), which each mdmbus container mounts where its settings look."""
    from mdmbus.settings import Settings
    secretish = re.compile(r"(?i)(password|secret|passwd|pwd)\s*[=:]\s*[^\s$;]")
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        for key, value in env.items():
            assert not secretish.search(_COMPOSE_TOKEN.sub("", str(value))), \
                f"{name}: {key} holds a secret"
            if key.startswith("MDMBUS_PASSWORD_"):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[?-][^}]*)?\}", str(value)), name
        for arg in service.get("command", []) if isinstance(service.get("command"), list) else []:
            assert not secretish.search(str(arg)), f"{name}: a secret on the command line"
    for name, service in _mdmbus_services(compose).items():
        settings = Settings.from_env(_env(service))
        state = str(settings.state_dir)
        assert _mounts(service)[state] == ("mdmbus-state", False), name
        assert settings.credentials_dir == Path(state) / "credentials", name
        assert str(settings.ca_path).startswith(state + "/"), name


def test_env_example_accounts_for_every_password(compose, repo_root):
    """Each identity's password is generated into the state volume (listed by name in
    .env.example); the PostgreSQL superuser's and Grafana's are .env's, empty in the example."""
    from mdmbus.settings import Settings
    from mdmbus.stack.credentials import identities
    text = (repo_root / ".env.example").read_text()
    example = dict(line.split("=", 1) for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith("#"))
    superuser = example["MDMBUS_PG_USER"]
    generated = {f"{kind}/{name}" for kind, name in identities(Settings(pg_user=superuser))
                 if (kind, name) != ("pg", superuser)}
    listed = {f"{kind}/{name}" for kind, name in
              re.findall(r"(?<![\w/])(kafka|pg)/([\w-]+)", "\n".join(
                  line for line in text.splitlines() if line.lstrip().startswith("#")))
              if name != "<name>"}
    assert listed == generated, ".env.example must list every generated password, and no other"
    for key in ("MDMBUS_PG_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert example[key] == "", f"{key}: no password in the example, compose demands your own"
    assert not [k for k in example if k.startswith("MDMBUS_PASSWORD_")], \
        "compose passes no MDMBUS_PASSWORD_* to the containers: the files are the passwords"
