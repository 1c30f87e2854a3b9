"""The pipeline worker is built by a factory from the settings it is given: importing the
streams package builds nothing and starts nothing, and two workers with their own settings
coexist in one process (as tests build them)."""

from __future__ import annotations

import subprocess
import sys

from mdmbus.settings import Settings
from mdmbus.streams.app import build_app, build_worker, lifecycle_app_id
from mdmbus.streams.context import PipelineContext
from mdmbus.streams.runtime import RegionRuntime


def test_importing_the_streams_package_builds_and_starts_nothing():
    code = ("import sys, threading, mdmbus.streams.app, mdmbus.streams.runtime, "
            "mdmbus.streams.batch; import faust; "
            "assert not any(isinstance(v, faust.App) for m in list(sys.modules.values()) "
            "for v in vars(m).values() if m is not None and m.__name__.startswith('mdmbus')), "
            "'an app was built at import'; "
            "assert threading.active_count() == 1, threading.enumerate()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"MDMBUS_METRICS_PORT": "9", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr


def test_each_app_takes_the_settings_it_is_given():
    a = build_app(PipelineContext.create(
        Settings(kafka_external="10.0.0.1:9092", kafka_security="plaintext"), ("eu",)))
    b = build_app(PipelineContext.create(
        Settings(kafka_external="10.0.0.2:9092", kafka_security="plaintext"), ("na", "ap")))
    assert a.conf.id == lifecycle_app_id(("eu",)) == "mdmbus-eu-lifecycle"
    assert b.conf.id == "mdmbus-na-ap-lifecycle"
    assert [str(u) for u in a.conf.broker] == ["kafka://10.0.0.1:9092"]
    assert [str(u) for u in b.conf.broker] == ["kafka://10.0.0.2:9092"]
    assert [agent.name for agent in a.agents.values()] == ["lifecycle"]
    # No right to create topics is needed: no leader topic, no declared topics.
    assert a.conf.topic_disable_leader and not a.conf.topic_allow_declare


def test_the_app_logs_in_as_its_first_regions_pipeline(tmp_path):
    """Its consumer group (mdmbus-na-ap-lifecycle) is under pipeline-na's prefix."""
    from mdmbus.stack.pki import Pki
    Pki(tmp_path).ensure_ca()
    settings = Settings(passwords={"MDMBUS_PASSWORD_KAFKA_PIPELINE_NA": "secret-na"},
                        ca_file=str(tmp_path / "ca.crt"))
    app = build_app(PipelineContext.create(settings, ("na", "ap")))
    credentials = app.conf.broker_credentials
    assert credentials.username == "pipeline-na" and credentials.password == "secret-na"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.ssl_context.verify_mode.name == "CERT_REQUIRED"


def test_the_worker_runs_a_record_runtime_per_region():
    worker = build_worker(Settings(kafka_security="plaintext"), ("na", "eu", "ap"))
    runtimes = [s for s in worker.services if isinstance(s, RegionRuntime)]
    assert [r.region for r in runtimes] == ["na", "eu", "ap"]
    assert runtimes[1].topics == ["mdm.eu.upload", "mdm.eu.relay", "mdm.eu.device.commands",
                                  "mdm.eu.device.sessions", "mdm.eu.deletion.requests"]
    assert runtimes[1].group == "mdmbus-eu-pipeline"
