"""The fixtures every integration module shares: its running processes and a workload.

A module says what it needs with module constants, read here:
- ``PROCESSES``: the (process, region) pairs to start, e.g. ``[("pipeline", "all")]``;
- ``SPEED``: the shared clock's speed (default 1.0);
- ``CONNECTOR``: the name of a CM connector each test starts itself: stopped after each test,
  with the tenants' token files, so the next test's connector serves only its own tenants.
A module that needs more (extra settings, a readiness probe) defines its own ``system``.
"""

from __future__ import annotations

import uuid

import pytest

from tests.integration.harness import Workload, launcher


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory, request):
    module = request.module
    procs = launcher(stack, tmp_path_factory.mktemp(module.__name__.rpartition(".")[2]),
                     speed=getattr(module, "SPEED", 1.0))
    try:
        for name, region in module.PROCESSES:
            procs.start(name, region)
        yield procs
    finally:
        procs.stop()


@pytest.fixture
async def work(stack, system, request):
    tokens = system.log_dir / "tokens"
    connector = getattr(request.module, "CONNECTOR", None)
    async with Workload(stack, system.clock, seed=uuid.uuid4().int, tokens_dir=tokens) as w:
        try:
            yield w
        finally:
            if connector is not None:
                system.stop(connector)
                for path in tokens.glob("*.json"):
                    path.unlink()
    system.assert_alive()
