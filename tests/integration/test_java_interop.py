"""The wire format works from Java: Apache Avro's own single-object encoder and decoder agree with
mdmbus, with no schema registry and no mdmbus code on the Java side.

The Java program is the worked example in ``examples/java`` (``ContractExample``: Avro's
``SchemaNormalization.parsingFingerprint64``, ``BinaryMessageEncoder``, ``BinaryMessageDecoder``),
built once per session with Maven. Records cross between the two sides as files: Avro's JSON
encoding into Java, single-object messages both ways, Avro's JSON encoding out of Java.

Needs java, a JDK (javac) and mvn (installed by ./run; the first build fetches Avro and the Maven
plugins from Maven Central), but neither Kafka nor PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest

from mdmbus.contract import default_registry, validate

try:
    from mdmbus.services.simulators.records import RecordFactory
except ImportError:  # before the services package moved under mdmbus
    from mdmbus.services.simulators.records import RecordFactory

pytestmark = pytest.mark.integration

REGISTRY = default_registry()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "java"
JAR = EXAMPLE / "target" / "mdmbus-contract-example.jar"
TENANT = "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
EVENT_TIME = 1_714_564_800_250
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: uuid and timestamp fields, null envelope ids (U12); optional uuids and timestamps, enums,
#: non-ASCII text (U9); every byte value (U4); unions of named records, arrays, a map (R1).
KINDS = ["U12", "U9", "U4", "R1"]

JavaRunner = Callable[..., subprocess.CompletedProcess]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: the Java interoperability tests need a JDK 17+ and "
                    f"Maven (./run installs them; or: apt-get install openjdk-17-jdk-headless maven)",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
def java() -> JavaRunner:
    """Builds examples/java once; returns a runner of its jar (arguments -> finished process)."""
    java_bin, mvn = tool("java"), tool("mvn")
    try:
        build = subprocess.run([mvn, "-q", "-B", "package"], cwd=EXAMPLE, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mvn package in {EXAMPLE} did not finish within {exc.timeout} s", pytrace=False)
    assert build.returncode == 0, (
        f"mvn -q -B package in {EXAMPLE} failed (exit {build.returncode}; a JDK is needed, not only "
        f"a JRE):\n{build.stdout}\n{build.stderr}")
    assert JAR.is_file(), f"the build made no {JAR}"

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [java_bin, "-jar", str(JAR), *args]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60)
        if check:
            assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stderr}"
        return done

    return run


# ---------------------------------------------------------------- records

def make_record(kind: str) -> dict[str, Any]:
    """A valid, deterministic record that stresses the encoding (non-ASCII text, every byte)."""
    factory = RecordFactory(20240501)
    fields: dict[str, Any] = {
        "U9": {"device_name": "Ünïcode phone ✓", "friendly_name": None,
               "primary_user_id": factory.uuid(), "certificate_expiry": 1_893_456_000_000,
               "last_connection_time": EVENT_TIME - 60_000},
        "U4": {"encrypted_content": bytes(range(256)) * 2 + b"\n\r\x00",
               "description": "naïve line one\nline two", "icon": None},
        "R1": {"inventory": {"software": [{"name": "Edge", "version": "120.0"},
                                          {"name": "Notes", "version": None}],
                             "hardware": {"TotalStorageMB": "32768", "Model": "Lumia 930",
                                          "OSVersion": "10.0.14393"}},
               "compliance": {"state": "NONCOMPLIANT",
                              "noncompliant_settings": ["MinimumPasswordLength", "Encryption"]},
               "app_installation": {"app_id": factory.uuid(), "installation_state": "FAILED"},
               "device_status": {"enrollment_state": "ENROLLED",
                                 "registration_state": "REGISTERED", "action": "NONE",
                                 "action_status": "NONE"},
               "sideloading_key_assignment": {"key_id": factory.uuid(), "status": "APPLIED"}},
    }.get(kind, {})
    record = factory.make(kind, TENANT, EVENT_TIME, **fields)
    validate(kind, record, REGISTRY)  # the test's own input keeps the contract
    return record


def _fullname(schema: dict[str, Any], namespace: str | None) -> str:
    name, namespace = schema["name"], schema.get("namespace", namespace)
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _branch(schema: Any, namespace: str | None) -> str:
    """The name of a union branch in Avro's JSON encoding (a logical type goes by its primitive)."""
    if isinstance(schema, str):
        return schema
    if schema["type"] in ("record", "enum", "fixed"):
        return _fullname(schema, namespace)
    return schema["type"]


def to_avro_json(schema: Any, value: Any, namespace: str | None = None) -> Any:
    """A record as mdmbus takes it -> Avro's JSON encoding (what Java's JsonDecoder reads).

    ``schema`` is a spec's ``expanded`` schema (named types inlined where used)."""
    if isinstance(schema, list):
        if value is None:
            return None
        [branch] = [b for b in schema if b != "null"]  # every union here is null or one type
        return {_branch(branch, namespace): to_avro_json(branch, value, namespace)}
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "record":
        inner = _fullname(schema, namespace).rpartition(".")[0] or None
        return {f["name"]: to_avro_json(f["type"], value[f["name"]], inner)
                for f in schema["fields"]}
    if kind == "array":
        return [to_avro_json(schema["items"], v, namespace) for v in value]
    if kind == "map":
        return {k: to_avro_json(schema["values"], v, namespace) for k, v in value.items()}
    if kind in ("bytes", "fixed"):
        return value.decode("latin-1")  # Avro JSON: one code point per byte
    return value  # strings (uuids as text), numbers (timestamps as epoch ms), booleans, symbols


def from_avro_json(schema: Any, value: Any) -> Any:
    """Avro's JSON encoding (what Java's JsonEncoder prints) -> a record as mdmbus takes it."""
    if isinstance(schema, list):
        if value is None:
            return None
        [branch] = [b for b in schema if b != "null"]
        [inner] = value.values()
        return from_avro_json(branch, inner)
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "record":
        assert set(value) == {f["name"] for f in schema["fields"]}, value
        return {f["name"]: from_avro_json(f["type"], value[f["name"]]) for f in schema["fields"]}
    if kind == "array":
        return [from_avro_json(schema["items"], v) for v in value]
    if kind == "map":
        return {k: from_avro_json(schema["values"], v) for k, v in value.items()}
    if kind in ("bytes", "fixed"):
        return value.encode("latin-1")
    return value


def plain(value: Any) -> Any:
    """A record as mdmbus's codec returns it -> as records are built here (uuid text, epoch ms)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return (value - _EPOCH) // timedelta(milliseconds=1)
    return value


# ---------------------------------------------------------------- tests

def test_java_fingerprint_of_every_schema_equals_mdmbus(java: JavaRunner) -> None:
    specs = {str(spec.path): (kind, spec) for kind, spec in REGISTRY.kinds.items()}
    out = java("fingerprint", *specs).stdout
    got = dict(reversed(line.split("  ", 1)) for line in out.splitlines())
    assert set(got) == set(specs)
    wrong = [f"{kind} ({Path(path).name}): Java {got[path]}, mdmbus {spec.fingerprint.hex()}"
             for path, (kind, spec) in sorted(specs.items())
             if got[path] != spec.fingerprint.hex()]
    assert not wrong, "fingerprints differ:\n" + "\n".join(wrong)


@pytest.mark.parametrize("kind", KINDS)
def test_java_encoded_record_decodes_in_mdmbus(java: JavaRunner, tmp_path: Path,
                                               kind: str) -> None:
    spec = REGISTRY.kinds[kind]
    record = make_record(kind)
    source, message = tmp_path / f"{kind}.json", tmp_path / f"{kind}.bin"
    source.write_text(json.dumps(to_avro_json(spec.expanded, record)), encoding="utf-8")
    java("encode", str(spec.path), str(source), str(message))

    data = message.read_bytes()
    assert data[:2] == b"\xc3\x01", f"marker {data[:2].hex()}"
    assert data[2:10] == spec.fingerprint, f"Java wrote fingerprint {data[2:10].hex()}"
    decoded_kind, decoded = REGISTRY.codec.decode(data)
    assert decoded_kind == kind
    assert plain(decoded) == record
    validate(kind, decoded, REGISTRY)
    # Byte for byte what mdmbus writes for the same record. (Avro leaves the order of a map's
    # entries to the writer, and Java's reader keeps a map in a HashMap: mdmbus re-encodes the
    # record as decoded, whose maps are in Java's order.)
    assert data == REGISTRY.codec.encode(kind, plain(decoded))


@pytest.mark.parametrize("kind", KINDS)
def test_mdmbus_encoded_record_decodes_in_java(java: JavaRunner, tmp_path: Path,
                                               kind: str) -> None:
    spec = REGISTRY.kinds[kind]
    record = make_record(kind)
    message = tmp_path / f"{kind}.bin"
    message.write_bytes(REGISTRY.codec.encode(kind, record))

    printed = java("decode", str(spec.path), str(message)).stdout
    assert record["envelope"]["record_id"] in printed
    assert from_avro_json(spec.expanded, json.loads(printed)) == record


def test_java_refuses_a_message_of_another_schema(java: JavaRunner, tmp_path: Path) -> None:
    message = tmp_path / "u12.bin"
    message.write_bytes(REGISTRY.codec.encode("U12", make_record("U12")))
    done = java("decode", str(REGISTRY.kinds["U9"].path), str(message), check=False)
    assert done.returncode != 0
    assert "MissingSchemaException" in done.stderr, done.stderr
