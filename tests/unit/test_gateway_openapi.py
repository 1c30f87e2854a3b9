"""services/gateway/openapi.yaml says what the gateway does: the routes of app.ROUTES and no
others, each with its route name as operationId and the roles of access.ALLOWED as x-roles, the
refusals every route can give (401, 403, 421), and the limits of app.LIMITS. No servers."""

from __future__ import annotations

import inspect
import re
from importlib.resources import files

import pytest
import yaml

from mdmbus.contract.limits import MAX_RECORD_BYTES
from mdmbus.services.gateway import app
from mdmbus.services.gateway.access import ALLOWED, ROLES
from mdmbus.services.gateway.app import LIMITS, ROUTES, Gateway

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def spec() -> dict:
    return yaml.safe_load(files("mdmbus.services.gateway").joinpath("openapi.yaml")
                          .read_text(encoding="utf-8"))


def _operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): op for path, item in spec["paths"].items()
            for method, op in item.items() if method in METHODS}


def _calls_entry(route: str) -> bool:
    """Whether the route's handler looks the caller's tenant up (and so can answer 421)."""
    return "self.entry(" in inspect.getsource(getattr(Gateway, route))


def test_the_routes_are_the_documented_operations(spec):
    documented = set(_operations(spec))
    served = {(method, path) for method, path, _ in ROUTES}
    assert served - documented == set(), "routes openapi.yaml does not document"
    assert documented - served == set(), "operations openapi.yaml documents and no route serves"
    assert len(served) == len(ROUTES), "a (method, path) served twice"


def test_every_route_is_named_and_a_handler_of_the_gateway():
    names = [name for _, _, name in ROUTES]
    assert len(set(names)) == len(names)
    assert set(names) == set(ALLOWED), "a route without roles, or roles of no route"
    for name in names:
        assert inspect.iscoroutinefunction(getattr(Gateway, name)), name


@pytest.mark.parametrize("method,path,route", ROUTES, ids=[r[2] for r in ROUTES])
def test_each_operation_names_its_route_and_its_roles(spec, method, path, route):
    op = _operations(spec)[(method, path)]
    assert op["operationId"] == route
    assert isinstance(op["x-roles"], list) and len(set(op["x-roles"])) == len(op["x-roles"])
    assert set(op["x-roles"]) == set(ALLOWED[route])
    assert set(op["x-roles"]) <= set(ROLES)


@pytest.mark.parametrize("method,path,route", ROUTES, ids=[r[2] for r in ROUTES])
def test_each_operation_documents_its_refusals(spec, method, path, route):
    responses = {str(code) for code in _operations(spec)[(method, path)]["responses"]}
    assert {"401", "403"} <= responses, route
    if _calls_entry(route):
        assert "421" in responses, f"{route} sends other regions' tenants away (421)"
    source = inspect.getsource(getattr(Gateway, route))
    if "self.entry(caller)" in source:  # a deleted tenant's data is gone: 410
        assert "410" in responses, route
    if "self.body(" in source:  # reads a body: too large (413), too slow (408)
        assert {"408", "413"} <= responses, route


def test_every_route_looks_its_tenant_up():
    """Every route serves only the caller's tenant of this region (a 421 otherwise)."""
    assert [name for _, _, name in ROUTES if not _calls_entry(name)] == []


def test_the_refusal_responses_resolve(spec):
    shared = spec["components"]["responses"]
    for (method, path), op in _operations(spec).items():
        for code, response in op["responses"].items():
            ref = response.get("$ref")
            if ref is not None:
                assert ref.startswith("#/components/responses/"), (method, path, code)
                assert ref.rsplit("/", 1)[1] in shared, (method, path, code, ref)
            else:
                assert response.get("description"), (method, path, code)


def test_the_path_parameters_are_declared(spec):
    for (method, path), op in _operations(spec).items():
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)


def test_the_documented_limits_are_the_enforced_ones(spec):
    ops = _operations(spec)
    relay = {p["name"]: p["schema"] for p in ops[("GET", "/v1/relay")]["parameters"]}
    assert relay["limit"]["maximum"] == LIMITS.download
    assert relay["wait"]["maximum"] == LIMITS.wait_seconds
    ack = ops[("POST", "/v1/relay/ack")]["requestBody"]["content"]["application/json"]["schema"]
    assert ack["properties"]["record_ids"]["maxItems"] == LIMITS.records
    upload = ops[("POST", "/v1/records")]["requestBody"]["content"]
    assert set(upload) == {app.NDJSON, app.AVRO_BATCH}
    text = " ".join(spec["info"]["description"].split())
    assert f"{LIMITS.request_bytes // (1024 * 1024)} MiB" in text
    assert f"{LIMITS.body_seconds:g} s" in text
    assert f"{LIMITS.records} records" in text
    assert f"{MAX_RECORD_BYTES} bytes" in text
    assert f"{LIMITS.download} relay records" in text
    assert f"{LIMITS.wait_seconds:g} s" in text
