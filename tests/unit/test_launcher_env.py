"""The launcher gives each process its own environment: a /metrics port is one process's, so
the caller's MDMBUS_METRICS_PORT must not reach every process it starts (two workers would
both bind it and the second would die with EADDRINUSE)."""

from __future__ import annotations

from pathlib import Path

from mdmbus.cli.launcher import Launcher
from mdmbus.clock import Clock
from mdmbus.settings import Settings


def _launcher(tmp_path: Path) -> Launcher:
    return Launcher(tmp_path, Clock(1.0, 0.0),
                    {"MDMBUS_METRICS_PORT": "9464", "MDMBUS_BATCH_SIZE": "250"})


def test_the_callers_metrics_port_is_not_inherited(tmp_path):
    launcher = _launcher(tmp_path)
    first, second = launcher.environment(), launcher.environment()
    assert first["MDMBUS_METRICS_PORT"] == second["MDMBUS_METRICS_PORT"] == "0"
    assert Settings.from_env(first).metrics_port == 0
    # the rest of the caller's settings still reach the process
    assert first["MDMBUS_BATCH_SIZE"] == "250"


def test_a_port_given_for_a_process_is_its_own(tmp_path):
    launcher = _launcher(tmp_path)
    assert launcher.environment(metrics_port=19001)["MDMBUS_METRICS_PORT"] == "19001"
    assert launcher.environment(metrics_port=19002)["MDMBUS_METRICS_PORT"] == "19002"
    # an explicit per-process override still wins
    assert launcher.environment(extra={"MDMBUS_METRICS_PORT": "19003"})[
        "MDMBUS_METRICS_PORT"] == "19003"
