"""compose.yaml, checked as far as a machine without a container engine can check it."""

from __future__ import annotations

import json
import re
from pathlib import Path

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


def test_one_postgres_server_per_region_and_one_for_cm(compose):
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
