"""The embedded Apache Kafka broker: jars from Maven Central, KRaft combined mode, loopback,
TLS on every listener (conf/server.properties.in): SCRAM for applications, certificates for the
broker itself and the provisioning admin, ACLs for everything.

Jars are fetched once by Maven (mdmbus/stack/conf/pom.xml) into a per-user cache, so later starts need
no network. MDMBUS_KAFKA_HOME runs an existing installation instead; MDMBUS_KAFKA_BOOTSTRAP
names a broker that is already running, and then nothing is started here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from mdmbus.settings import Settings
from mdmbus.stack.errors import StackError
from mdmbus.stack.pki import write_private
from mdmbus.stack.processes import (ensure_port_free, port_open, read_pid, stop_pid,
                                    wait_until)

__all__ = ["KafkaPaths", "kafka_paths", "ensure_jars", "start", "stop", "running_pid", "describe",
           "keystore"]

#: The broker's configuration template, logging and the Maven pom (package data).
CONF = Path(str(files("mdmbus.stack") / "conf"))
MIN_JAVA = 17


@dataclass(frozen=True)
class KafkaPaths:
    root: Path
    data: Path
    config: Path
    logs: Path
    pidfile: Path

    @property
    def log(self) -> Path:
        return self.logs / "server.log"

    @property
    def stdout(self) -> Path:
        return self.logs / "stdout.log"


def kafka_paths(settings: Settings) -> KafkaPaths:
    root = settings.state_dir / "kafka"
    return KafkaPaths(root, root / "data", root / "server.properties", root / "logs",
                      root / "kafka.pid")


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise StackError(f"Java {MIN_JAVA}+ not found: install it (apt-get install "
                         f"openjdk-17-jre-headless) or set JAVA_HOME")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise StackError(f"Java {MIN_JAVA}+ is needed for Kafka, found {out.splitlines()[0]!r}: "
                         f"install openjdk-17-jre-headless or point JAVA_HOME at a newer JDK")
    return java


def _libs_dir(settings: Settings) -> Path:
    if settings.kafka_home is not None:
        libs = settings.kafka_home / "libs"
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise StackError(f"MDMBUS_KAFKA_HOME={settings.kafka_home} holds no libs/kafka_2.13-*.jar:"
                             f" point it at an unpacked Apache Kafka distribution, or unset it")
        return libs
    return settings.cache_dir / f"kafka-{settings.kafka_version}" / "libs"


def ensure_jars(settings: Settings, say=print) -> Path:
    """The directory of broker jars, fetched by Maven on first use."""
    libs = _libs_dir(settings)
    done = libs / ".complete"
    if settings.kafka_home is not None or done.exists():
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError("Maven (mvn) not found, and Kafka's jars are not cached yet: install it "
                         "(apt-get install maven) or set MDMBUS_KAFKA_HOME to a Kafka installation")
    say(f"fetching Apache Kafka {settings.kafka_version} from Maven Central into {libs} "
        f"(first start only)...")
    partial = libs.with_name(libs.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    log = libs.parent / "maven.log"
    with open(log, "w") as out:
        proc = subprocess.run(
            [mvn, "-B", "-f", str(CONF / "pom.xml"), "dependency:copy-dependencies",
             f"-Dkafka.version={settings.kafka_version}", "-DincludeScope=runtime",
             f"-DoutputDirectory={partial}"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    if proc.returncode != 0:
        raise StackError(f"could not fetch Kafka {settings.kafka_version} with Maven (see {log}): "
                         f"check the network or the proxy settings in ~/.m2/settings.xml, or set "
                         f"MDMBUS_KAFKA_HOME to a Kafka installation")
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
    done.write_text(settings.kafka_version + "\n")
    return libs


def running_pid(settings: Settings) -> int | None:
    return read_pid(kafka_paths(settings).pidfile)


def keystore(settings: Settings) -> Path:
    """The broker's key and certificate chain in one PEM file (mdmbus/stack/stack.py writes
    it with the stack's credentials)."""
    return settings.pki_dir / "broker.pem"


def _config_text(settings: Settings, paths: KafkaPaths) -> str:
    text = (CONF / "server.properties.in").read_text()
    for name, value in {"PORT": settings.kafka_port,
                        "CONTROLLER_PORT": settings.kafka_controller_port,
                        "BROKER_PORT": settings.kafka_mtls_port,
                        "KEYSTORE": keystore(settings),
                        "CA_FILE": settings.pki_dir / "ca.crt",
                        "DATA_DIR": paths.data}.items():
        text = text.replace(f"@{name}@", str(value))
    return text


def _render_config(settings: Settings, paths: KafkaPaths) -> None:
    if not keystore(settings).exists():
        raise StackError(f"the broker's key store {keystore(settings)} is missing: start the "
                         f"stack with `mdmbus stack up`, which creates it")
    # 0600 whatever the caller's umask (it names the key store and the listeners): a test or
    # tool that restarts the broker is not always inside `mdmbus stack`'s umask 077.
    write_private(paths.config, _config_text(settings, paths).encode())


def _jvm(settings: Settings, libs: Path, paths: KafkaPaths) -> list[str]:
    return [_java(), f"-Xms{settings.kafka_heap}", f"-Xmx{settings.kafka_heap}",
            "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={paths.logs}",
            f"-Dlog4j2.configurationFile={CONF / 'log4j2.properties'}",
            f"-Dmdmbus.log.max.bytes={settings.log_max_bytes}",
            f"-Dmdmbus.log.backups={settings.log_backups}",
            "-cp", f"{libs}/*"]


def _format_storage(settings: Settings, libs: Path, paths: KafkaPaths) -> None:
    if (paths.data / "meta.properties").exists():
        return
    paths.data.mkdir(parents=True, exist_ok=True)
    cluster_id = _cluster_id()
    proc = subprocess.run(
        _jvm(settings, libs, paths) + ["kafka.tools.StorageTool", "format", "-t", cluster_id,
                                       "-c", str(paths.config)],
        capture_output=True, text=True, umask=0o077,
    )
    if proc.returncode != 0:
        raise StackError(f"formatting Kafka storage in {paths.data} failed: "
                         f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, url-safe base64 without padding, not starting with
    "-" (kafka-storage would take it for an option; Kafka's own generator avoids it too)."""
    import base64
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start(settings: Settings, say=print) -> str:
    """Start the broker unless it already runs; returns a line saying what happened."""
    if settings.kafka_external:
        host, _, port = settings.kafka_external.split(",")[0].rpartition(":")
        if not port_open(int(port), host or "127.0.0.1"):
            raise StackError(f"MDMBUS_KAFKA_BOOTSTRAP={settings.kafka_external} does not answer: "
                             f"start that broker or unset the variable to use the embedded one")
        return f"kafka: using the external broker at {settings.kafka_external}"
    paths = kafka_paths(settings)
    pid = read_pid(paths.pidfile)
    if pid is not None:
        if not paths.config.exists() or \
                paths.config.read_text() != _config_text(settings, paths):
            raise StackError(f"the running broker (pid {pid}) was started with another "
                             f"configuration than this version's (an older mdmbus, or other "
                             f"ports): stop it with `mdmbus stack down`, then start again")
        wait_until(lambda: port_open(settings.kafka_port), settings.start_timeout_s,
                   "Kafka", log=paths.log)
        return f"kafka: already running (pid {pid}) on 127.0.0.1:{settings.kafka_port}"
    ensure_port_free(settings.kafka_port, "Kafka", "MDMBUS_KAFKA_PORT")
    ensure_port_free(settings.kafka_controller_port, "the Kafka controller",
                     "MDMBUS_KAFKA_CONTROLLER_PORT")
    ensure_port_free(settings.kafka_mtls_port, "the Kafka mutual-TLS listener",
                     "MDMBUS_KAFKA_BROKER_PORT")
    libs = ensure_jars(settings, say)
    paths.logs.mkdir(parents=True, exist_ok=True)
    _render_config(settings, paths)
    _format_storage(settings, libs, paths)
    # umask 077: segments, __cluster_metadata (the SCRAM hashes) and logs are the owner's
    # alone. stdout.log gets what the JVM prints before log4j runs (and a crash's dump).
    fd = os.open(paths.stdout, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(
            _jvm(settings, libs, paths) + ["kafka.Kafka", str(paths.config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=paths.root, umask=0o077,
        )
    write_private(paths.pidfile, f"{proc.pid}\n".encode())
    wait_until(lambda: port_open(settings.kafka_port), settings.start_timeout_s, "Kafka",
               alive=lambda: proc.poll() is None, log=paths.log)
    return f"kafka: started (pid {proc.pid}) on 127.0.0.1:{settings.kafka_port}, log {paths.log}"


def stop(settings: Settings) -> str:
    if settings.kafka_external:
        return "kafka: external broker, left running"
    paths = kafka_paths(settings)
    pid = read_pid(paths.pidfile)
    if pid is None:
        return "kafka: not running"
    stop_pid(pid)
    paths.pidfile.unlink(missing_ok=True)
    return f"kafka: stopped (pid {pid})"


def describe(settings: Settings) -> tuple[bool, str]:
    """Whether the broker answers, and a status line saying where it runs."""
    if settings.kafka_external:
        host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
        up = port_open(int(port), host)
        return up, f"kafka     external  {settings.kafka_bootstrap} ({'answering' if up else 'NOT answering'})"
    paths = kafka_paths(settings)
    pid = read_pid(paths.pidfile)
    if pid is None:
        return False, f"kafka     stopped   127.0.0.1:{settings.kafka_port}"
    up = port_open(settings.kafka_port)
    state = "running" if up else "starting"
    return up, (f"kafka     {state:<9} 127.0.0.1:{settings.kafka_port} (SASL_SSL) "
                f"127.0.0.1:{settings.kafka_mtls_port} (mTLS) pid {pid}  "
                f"data {paths.data}  log {paths.log}")
