"""Missing tools and failed downloads stop `stack up` with a message that says what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdmbus.settings import Settings
from mdmbus.stack import kafka
from mdmbus.stack.errors import StackError


def _bin_with(tmp_path: Path, **scripts: str) -> str:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, body in scripts.items():
        path = bindir / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(0o755)
    return str(bindir)


def test_missing_maven_with_an_empty_cache_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _bin_with(tmp_path))
    with pytest.raises(StackError, match=r"Maven \(mvn\) not found.*apt-get install maven"):
        kafka.ensure_jars(Settings(cache_dir=tmp_path / "cache"), say=lambda _: None)


def test_failed_download_names_the_log_and_leaves_no_half_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _bin_with(tmp_path, mvn="echo 'Could not resolve' ; exit 1"))
    settings = Settings(cache_dir=tmp_path / "cache")
    with pytest.raises(StackError, match=r"could not fetch Kafka 4\.3\.1 with Maven \(see .*maven\.log\)"):
        kafka.ensure_jars(settings, say=lambda _: None)
    libs = tmp_path / "cache" / "kafka-4.3.1" / "libs"
    assert not (libs / ".complete").exists()
    assert "Could not resolve" in (libs.parent / "maven.log").read_text()


def test_a_cached_download_needs_no_maven(tmp_path, monkeypatch):
    libs = tmp_path / "cache" / "kafka-4.3.1" / "libs"
    libs.mkdir(parents=True)
    (libs / ".complete").write_text("4.3.1\n")
    monkeypatch.setenv("PATH", _bin_with(tmp_path))
    assert kafka.ensure_jars(Settings(cache_dir=tmp_path / "cache")) == libs


def test_an_existing_kafka_installation_is_used_instead(tmp_path):
    home = tmp_path / "kafka_2.13-4.3.1"
    (home / "libs").mkdir(parents=True)
    (home / "libs" / "kafka_2.13-4.3.1.jar").write_bytes(b"")
    assert kafka.ensure_jars(Settings(kafka_home=home, cache_dir=tmp_path / "c")) == home / "libs"
    with pytest.raises(StackError, match="holds no libs/kafka_2.13"):
        kafka.ensure_jars(Settings(kafka_home=tmp_path, cache_dir=tmp_path / "c"))


def test_missing_java_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nojava"))
    with pytest.raises(StackError, match=r"Java 17\+ not found: install it"):
        kafka._java()


def test_too_old_java_is_refused(tmp_path, monkeypatch):
    (tmp_path / "jdk" / "bin").mkdir(parents=True)
    fake = tmp_path / "jdk" / "bin" / "java"
    fake.write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    with pytest.raises(StackError, match=r"Java 17\+ is needed for Kafka"):
        kafka._java()
