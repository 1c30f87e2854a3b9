"""Draining a production with the peer (bench/peer/quix_upload.py, a Quix Streams application
doing the pipeline's job as a user would write it): N processes in one consumer group, writing
as the region's pipeline role (Kafka: the provisioning admin, see _environment), measured as the mdmbus drains are (bench.throughput.drain): the rate
from the store, the CPU of every process from the first commit to the last."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from mdmbus.categories import category_of
from mdmbus.contract import default_registry
from mdmbus.identities import ADMIN, role_of
from mdmbus.services.stores.pools import Stores
from mdmbus.settings import Settings
from mdmbus.topics import TopicKind, topic_name
from bench.peer.venv import peer_python
from bench.support import (CpuMeter, Progress, Tenants, commit_group, committed, kafka_options,
                           kafka_pid, percentile, postgres_pid, say)
from bench.throughput.drain import WORKERS, DrainResult, stored_times
from bench.throughput.produce import Produced

__all__ = ["peer_drain", "PEER_LABEL"]

PEER_LABEL = "Quix Streams peer"
APP = Path(__file__).resolve().parents[1] / "peer" / "quix_upload.py"


def _schemas(settings: Settings) -> Path:
    """The writer schemas of the upload kinds by fingerprint, as the peer reads them."""
    registry = default_registry()
    out = {}
    for kind, spec in registry.kinds.items():
        if spec.topic is TopicKind.UPLOAD:
            out[registry.codec.fingerprint(kind).hex()] = {
                "kind": kind, "category": str(category_of(kind)), "schema": spec.expanded}
    path = settings.state_dir / "bench-logs" / "peer-schemas.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return path


def _conninfo(settings: Settings, region: str) -> str:
    """libpq connection string of the region store as its pipeline role (certificate or
    password, over TLS verifying the server, as mdmbus.connections connects)."""
    from mdmbus.connections import _CERTIFICATE_ROLES
    from mdmbus.regions import region_database
    from mdmbus.identities import certificate_name
    database = region_database(region)
    role = role_of("pipeline", region)
    host, port = settings.pg_server(database)
    parts = [f"host={host}", f"port={port}", f"dbname={database}", f"user={role}",
             "application_name=bench-peer"]
    if settings.pg_tls:
        parts += ["sslmode=verify-full", f"sslrootcert={settings.ca_path}"]
    if role in _CERTIFICATE_ROLES:
        name = certificate_name(role)
        parts += [f"sslcert={settings.pki_dir / f'{name}.crt'}",
                  f"sslkey={settings.pki_dir / f'{name}.key'}"]
    else:
        parts.append(f"password={settings.password('pg', role)}")
    return " ".join(parts)


def _environment(settings: Settings, region: str, group: str) -> dict[str, str]:
    # Quix Streams reads every topic's configuration when it starts (DescribeConfigs), which
    # no mdmbus principal may do on this stack (docs/identities.md): the peer logs in to Kafka
    # as the provisioning admin, and to PostgreSQL as the region's pipeline role.
    principal = ADMIN
    return dict(os.environ, PEER_BOOTSTRAP=settings.kafka_bootstrap_of(region),
                PEER_SASL_USER=principal, PEER_SASL_PASSWORD=settings.password("kafka", principal),
                PEER_CA=str(settings.ca_path), PEER_TOPIC=topic_name(TopicKind.UPLOAD, region),
                PEER_GROUP=group, PEER_PG=_conninfo(settings, region),
                PEER_SCHEMAS=str(_schemas(settings)), PYTHONUNBUFFERED="1")


async def peer_drain(settings: Settings, stores: Stores, tenants: Tenants, region: str,
                     produced: Produced, processes: int, stall_s: float = 120.0) -> DrainResult:
    """Starts ``processes`` peer processes on the produced records and waits until their
    group has committed all of them (the peer commits after its sink has flushed)."""
    python = peer_python(say)
    group = f"mdmbus-{region}-bench-peer"
    await commit_group(settings, group, produced.start)
    env = _environment(settings, region, group)
    log_dir = settings.state_dir / "bench-logs" / f"peer-{processes}p-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    label = f"{PEER_LABEL}, {processes} process{'es' if processes > 1 else ''}"
    tps = sorted(produced.end, key=lambda tp: tp.partition)
    total = sum(produced.end[tp] - produced.start[tp] for tp in tps)
    say(f"{label} on {total:,} records (logs in {log_dir})")
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    procs: list[subprocess.Popen] = []
    logs = []
    began = time.monotonic()
    startup = float("nan")
    cpu: list[tuple[str, float, float]] = []
    metered_from = 0
    try:
        for i in range(processes):
            log = open(log_dir / f"peer-{i + 1}.log", "wb")  # noqa: SIM115 -- closed below
            logs.append(log)
            procs.append(subprocess.Popen([str(python), str(APP)], env=env, stdout=log,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True))
        postmaster = await postgres_pid(stores.directory_pool)
        broker = kafka_pid(settings)
        progress = meter = None
        last_done, last_change = -1, time.monotonic()
        while True:
            await asyncio.sleep(0.5)
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a peer process exited with {dead[0].returncode}; see "
                                   f"{log_dir}")
            offsets = await committed(admin, group, tps)
            done = sum(max(0, offsets[tp] - produced.start[tp]) for tp in tps)
            if done != last_done:
                last_done, last_change = done, time.monotonic()
            if done and progress is None:
                startup = time.monotonic() - began
                say(f"  first commit after {startup:.1f} s (start-up)")
                progress = Progress(label, total, done=done)
                groups = {WORKERS: [p.pid for p in procs]}
                if broker:
                    groups["kafka broker"] = [broker]
                meter = CpuMeter(groups, postmaster=postmaster)
                metered_from = done
            if progress:
                progress.update(done)
            if done >= total:
                break
            if time.monotonic() - last_change > stall_s:
                raise RuntimeError(f"no progress for {stall_s:.0f} s at {done:,}/{total:,}; "
                                   f"see {log_dir}")
        if meter is not None:
            cpu = meter.stop()
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in logs:
            log.close()
        await admin.close()
    times = sorted(await stored_times(stores, tenants))
    result = DrainResult(label, processes, total, len(times), times[0] if times else 0.0,
                         times[-1] if times else 0.0, percentile(times, 10),
                         percentile(times, 90), startup, cpu, total - metered_from, False,
                         str(log_dir), sealed=False, peer=True)
    say(f"  {result.stored:,} stored in {result.last - result.first:.1f} s: "
        f"{result.rate:,.0f} records/s")
    return result
