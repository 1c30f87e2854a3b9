"""Cryptographic erasure reaches PostgreSQL's files and backups (docs/design.md section 9).

A real base backup (pg_basebackup) of the test cluster is taken while canaries are stored, the
WAL is kept from before it (pg_receivewal), then a tenant is deleted, a relay record is
downloaded and acknowledged, and the tenant's dead letter goes with it. After the next KEK
rotation (the sweeper's, on the shared clock), the backup is restored into scratch clusters
started and stopped here:

(a) as of the backup, the canaries' rows are there, and no KEK the system still holds opens
    their data keys; no file of the live data directory, its WAL, the backup, the kept WAL or
    the restored clusters holds a canary in clear;
(b) restored with the kept WAL to its end, the records still live open with the current
    keyring: the backup is still a backup.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from mdmbus.connections import pg_connect
from mdmbus.crypto.keyring import FileKeyring, KeyUnavailable, WrapError
from mdmbus.crypto.envelope import letter_aad, record_aad
from mdmbus.regions import region_database
from mdmbus.services.stores.sealing import open_record
from mdmbus.stack import postgres
from mdmbus.topics import TopicKind, topic_name
from tests.conftest import wait_for
from tests.integration.harness import Workload, launcher
from tests.ports import free_port

pytestmark = pytest.mark.integration

REGION = "eu"
#: 24 h of the shared clock (the default rotation period) in 20 real seconds.
SPEED = 86400 / 20


class Cluster:
    """Runs PostgreSQL's client and server programs as the cluster's user (as root: postgres),
    with the superuser's password in a 0600 file of that user's."""

    def __init__(self, settings, scratch: Path) -> None:
        self.settings = settings
        self.paths = postgres.pg_paths(settings)
        self.scratch = scratch
        self.bin = postgres.bin_dir()
        self.root = os.geteuid() == 0
        scratch.mkdir(mode=0o700)
        self.passfile = scratch / "pgpass"
        password = settings.pg_password or settings.password("pg", settings.pg_user)
        self.passfile.write_text(f"*:*:*:*:{password}\n")
        os.chmod(self.passfile, 0o600)
        self._own(scratch, self.passfile)

    def _own(self, *paths: Path) -> None:
        if self.root:
            for p in paths:
                shutil.chown(p, postgres.RUN_AS, postgres.RUN_AS)

    def argv(self, program: str, *args: str) -> list[str]:
        cmd = ["env", f"PGPASSFILE={self.passfile}", str(self.bin / program), *args]
        return (["runuser", "-u", postgres.RUN_AS, "--"] + cmd) if self.root else cmd

    def run(self, program: str, *args: str) -> str:
        proc = subprocess.run(self.argv(program, *args), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=300)
        assert proc.returncode == 0, f"{program} failed: {proc.stderr or proc.stdout}"
        return proc.stdout

    def conn_args(self) -> list[str]:
        return ["-h", str(self.paths.root), "-p", str(self.settings.pg_port),
                "-U", self.settings.pg_user]

    def mkdir(self, name: str) -> Path:
        path = self.scratch / name
        path.mkdir(mode=0o700)
        self._own(path)
        return path

    def restore(self, backup: Path, name: str, wal: Path | None) -> tuple[Path, int]:
        """A copy of ``backup`` started as a scratch cluster on a free port: as of the backup
        (``wal`` None), or replaying the kept WAL to its end. Returns (data dir, port)."""
        data = self.scratch / name
        subprocess.run(["cp", "-a", str(backup), str(data)], check=True)
        self._own(data)
        settings = ["recovery_target_action = 'promote'"]
        if wal is None:
            settings.append("recovery_target = 'immediate'")
            settings.append("restore_command = 'false'")
        else:
            settings.append(f"restore_command = 'cp {wal}/%f %p'")
        with open(data / "postgresql.auto.conf", "a") as conf:
            conf.write("\n".join(settings) + "\n")
        (data / "recovery.signal").touch()
        self._own(data / "recovery.signal")
        port = free_port()
        proc = subprocess.run(self.argv("pg_ctl", "-D", str(data), "-w", "-t", "120",
                                        "-l", str(self.scratch / f"{name}.log"),
                                        "-o", f"-p {port} -c archive_mode=off", "start"),
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        log = (self.scratch / f"{name}.log")
        assert proc.returncode == 0, f"the restored cluster did not start: {proc.stderr}\n" \
            f"{log.read_text() if log.exists() else ''}"
        return data, port

    def stop(self, data: Path) -> None:
        subprocess.run(self.argv("pg_ctl", "-D", str(data), "-w", "-m", "fast", "stop"),
                       capture_output=True, stdin=subprocess.DEVNULL)


def _files(*roots: Path):
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath, name)
                if path.is_file() and not path.is_symlink():
                    yield path


def _found(needles: dict[str, bytes], *roots: Path) -> dict[str, list[str]]:
    """Which needles occur in which files under ``roots`` (every byte of every file)."""
    hits: dict[str, list[str]] = {name: [] for name in needles}
    for path in _files(*roots):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for name, needle in needles.items():
            if needle in data:
                hits[name].append(str(path))
    return hits


async def _row(settings, port: int, sql: str, *args):
    conn = await pg_connect(dataclasses.replace(settings, pg_port=port), region_database(REGION))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def _promoted(settings, port: int) -> None:
    """Until the restored cluster has replayed all it will and left recovery: pg_ctl -w
    returns once it accepts (read-only) connections, which a hot standby does from its first
    consistent point, before the rest of the WAL is replayed."""
    async def done() -> bool:
        return not (await _row(settings, port, "SELECT pg_is_in_recovery() AS r"))[0]["r"]
    await wait_for(done, 120, f"the cluster restored on port {port} promoted")


async def test_deleted_rows_are_unreadable_in_every_copy_after_a_kek_rotation(stack, tmp_path):
    token = uuid.uuid4().hex
    canary = {"tenant_record": f"CANARY-TENANT-{token}".encode(),
              "relay_record": f"CANARY-RELAY-{token}".encode(),
              "dead_letter": f"CANARY-LETTER-{token}".encode()}
    live_value = f"LIVE-{token}".encode()
    scratch_root = postgres.pg_paths(stack).root / f"erasure-{token[:8]}"
    cluster = Cluster(stack, scratch_root)
    procs = launcher(stack, tmp_path / "logs", SPEED,
                     MDMBUS_KEK_ROTATION_MIN_INTERVAL="0", MDMBUS_DEAD_LETTER_DAYS="3650")
    receiver = None
    started: list[Path] = []
    try:
        for name in ("pipeline", "gateway", "sweeper"):
            procs.start(name, REGION)
        keys_seen: set[bytes] = set()  # every KEK the test sees, for the logs' check below
        # The WAL, kept from before the backup until after the rotation.
        wal = cluster.mkdir("wal")
        receiver = subprocess.Popen(cluster.argv("pg_receivewal", "-D", str(wal), "--no-loop",
                                                 *cluster.conn_args()),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        await wait_for(lambda: any(wal.iterdir()), 30, "pg_receivewal streaming")

        # tenant ids of its own: a tenant deleted by an earlier run stays deleted (rule 7)
        async with Workload(stack, procs.clock, seed=uuid.uuid4().int) as work:
            # the processes start slowly on a loaded machine: onboarding waits for them
            doomed = await work.onboarded(REGION, timeout_s=180)
            kept = await work.onboarded(REGION)
            upload = await work.produce("U4", doomed, encrypted_content=canary["tenant_record"])
            relay = await work.produce("R4", kept, package=canary["relay_record"])
            live = await work.produce("U4", kept, encrypted_content=live_value)
            letter_meta = await work.send_raw(topic_name(TopicKind.UPLOAD, REGION),
                                              b"\x00garbage " + canary["dead_letter"],
                                              key=doomed.encode())
            ids = {"tenant_record": upload["envelope"]["record_id"],
                   "relay_record": relay["envelope"]["record_id"],
                   "live": live["envelope"]["record_id"]}
            await wait_for(lambda: _all_stored(work, list(ids.values())), 60, "the records stored")
            letter = await wait_for(lambda: work.dead_letter(REGION, letter_meta), 60,
                                    "the dead letter")
            assert canary["dead_letter"] in letter["body"], "the dead letter keeps its body"
            assert letter["error"], "its error text opens"
            pool = work.region_pool(REGION)
            raw = await pool.fetch("SELECT record_id, body, kek_id FROM records"
                                   " WHERE record_id = ANY($1::uuid[])",
                                   [uuid.UUID(i) for i in ids.values()])
            for r in raw:  # sealed in the store: no canary in the column itself
                assert r["kek_id"] and not any(c in r["body"] for c in canary.values())
            sealed_under = {r["kek_id"] for r in raw}

            # The base backup, while every canary is stored.
            backup = cluster.mkdir("backup")
            cluster.run("pg_basebackup", "-D", str(backup), "-X", "stream", "-c", "fast",
                        *cluster.conn_args())

            # Deletion: the tenant (its record and its dead letter), the relay record after
            # its download.
            receipt = await work.client(doomed, "admin").delete()
            assert receipt["status"] == "completed"
            downloader = work.client(kept, "connector")
            got = [r for r in await downloader.download(limit=100)
                   if r["record_id"] == ids["relay_record"]]
            assert got, "the relay record is downloadable"
            ack = await downloader.ack([ids["relay_record"]])
            assert ack["deleted"] == [ids["relay_record"]]
            assert not await work.stored(REGION, [ids["tenant_record"], ids["relay_record"]])
            assert await work.dead_letter(REGION, letter_meta) is None

            # The next rotation: the KEKs that wrapped the canaries are destroyed.
            keyring = FileKeyring(stack.keyring_path, REGION)
            keys_seen.update(p.read_bytes() for p in keyring.dir.glob("*.kek"))
            await wait_for(lambda: sealed_under <= set(keyring.status().destroyed), 120,
                           f"the KEKs {sorted(sealed_under)} destroyed by a rotation")
            # No rotation from here on: the keyring stays as the kept WAL ends.
            procs.stop(f"sweeper-{REGION}")
            now_held = (keyring.status().current, *keyring.status().retired)
            assert await pool.fetchval("SELECT kek_id FROM records WHERE record_id = $1",
                                       uuid.UUID(ids["live"])) in now_held
            # Every WAL record up to now in complete segments of the kept WAL.
            switched = await pool.fetchval("SELECT pg_walfile_name(pg_switch_wal())")
            await wait_for(lambda: (wal / switched).exists(), 60, f"WAL segment {switched} kept")
        os.killpg(receiver.pid, signal.SIGINT)  # pg_receivewal and runuser, as root
        receiver.wait(30)

        # (a) As of the backup: the rows are there, sealed, and nothing the system holds
        # opens them.
        at_backup, port = cluster.restore(backup, "at-backup", None)
        started.append(at_backup)
        await _promoted(stack, port)
        rows = await _row(stack, port, "SELECT tenant_id, record_id, body, wrapped_key, kek_id"
                          " FROM records WHERE record_id = ANY($1::uuid[])",
                          [uuid.UUID(ids["tenant_record"]), uuid.UUID(ids["relay_record"])])
        letters = await _row(stack, port, "SELECT * FROM dead_letters WHERE source_topic = $1"
                             " AND source_partition = $2 AND source_offset = $3",
                             letter_meta.topic, letter_meta.partition, letter_meta.offset)
        assert len(rows) == 2 and len(letters) == 1, "the backup holds the canaries' rows"
        held = FileKeyring(stack.keyring_path, REGION)
        status = held.status()
        every_kek = [held.kek(k) for k in (status.current, status.next, *status.retired)]
        sealed = [(record_aad(r["tenant_id"], r["record_id"]), r) for r in rows]
        sealed += [(letter_aad(r["source_topic"], r["source_partition"], r["source_offset"],
                               r["tenant_id"], r["record_id"]), r) for r in letters]
        for aad, r in sealed:
            assert r["kek_id"] in status.destroyed
            with pytest.raises(KeyUnavailable):
                held.kek(r["kek_id"])
            for kek in every_kek:
                with pytest.raises(WrapError):
                    kek.unwrap(r["wrapped_key"], aad)
        cluster.stop(at_backup)
        started.remove(at_backup)

        # (b) The backup with the kept WAL, to its end: the live records open with the current
        # keyring, the deleted ones are gone.
        restored, port = cluster.restore(backup, "restored", wal)
        started.append(restored)
        await _promoted(stack, port)
        rows = await _row(stack, port, "SELECT tenant_id, record_id, body, wrapped_key, kek_id,"
                          " kind FROM records WHERE record_id = ANY($1::uuid[])",
                          [uuid.UUID(i) for i in ids.values()])
        by_id = {str(r["record_id"]): r for r in rows}
        assert ids["tenant_record"] not in by_id
        assert by_id[ids["relay_record"]]["body"] is None
        live_row = by_id[ids["live"]]
        assert live_row["kek_id"] not in sealed_under
        opened = open_record(live_row, held.kek)
        assert opened == work.contract.codec.encode("U4", live)
        cluster.stop(restored)
        started.remove(restored)

        # Nowhere in clear: the live cluster's files and WAL, the backup, the kept WAL, the
        # restored clusters. The backup does hold the canaries' rows (their tenant's id).
        await _checkpoint(stack)
        hits = _found(canary, postgres.pg_paths(stack).data, scratch_root)
        assert hits == {name: [] for name in canary}, f"canaries in clear: {hits}"
        assert _found({"row": uuid.UUID(doomed).bytes}, backup)["row"], \
            "the search finds bytes the backup holds"
        # No KEK in any process's log, in any spelling.
        import base64
        keys_seen.update(p.read_bytes() for p in keyring.dir.glob("*.kek"))
        spellings = {f"{i}-{form}": enc for i, key in enumerate(keys_seen)
                     for form, enc in (("raw", key), ("hex", key.hex().encode()),
                                       ("b64", base64.b64encode(key)))}
        leaked = {k: v for k, v in _found(spellings, procs.log_dir).items() if v}
        assert keys_seen and not leaked, f"KEKs in the logs: {leaked}"
    finally:
        for data in started:
            cluster.stop(data)
        if receiver is not None and receiver.poll() is None:
            receiver.kill()
            receiver.wait(10)
        procs.stop()
        shutil.rmtree(scratch_root, ignore_errors=True)


async def _all_stored(work: Workload, ids: list[str]) -> bool:
    return len(await work.stored(REGION, ids)) == len(ids)


async def _checkpoint(settings) -> None:
    conn = await pg_connect(settings, region_database(REGION))
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def test_the_upgrade_seals_rows_stored_in_clear_and_resumes_where_it_stopped(stack):
    """Rows an mdmbus that did not seal stored (no KEK id) are sealed in place by `mdmbus
    crypto upgrade`; stopped after its first batch, it goes on from there when run again."""
    from mdmbus.cli.crypto import seal_clear_rows
    from mdmbus.services.stores.sealing import open_letter, open_letter_error
    tenant = uuid.uuid4()
    bodies = {uuid.uuid4(): f"CLEAR-{i}-{uuid.uuid4().hex}".encode() for i in range(5)}
    topic, offset = f"test.upgrade.{uuid.uuid4().hex[:8]}", 7
    conn = await pg_connect(stack, region_database(REGION))
    try:
        await conn.executemany(
            "INSERT INTO records (record_id, tenant_id, kind, category, event_time, stored_at,"
            " body) VALUES ($1, $2, 'U4', 'upload', now(), now(), $3)",
            [(rid, tenant, body) for rid, body in bodies.items()])
        await conn.execute(
            "INSERT INTO dead_letters (source_topic, source_partition, source_offset, reason,"
            " error, tenant_id, body, stored_at, deadline) VALUES ($1, 0, $2, 'undecodable',"
            " 'quoting CLEAR-ERROR', $3, 'CLEAR-LETTER'::bytea, now(), now() + interval '1 day')",
            topic, offset, tenant)

        class Stop(Exception):
            pass

        def stop_after_first(done: int, total: int) -> None:
            raise Stop(done)
        clear = "SELECT count(*) FROM records WHERE has_body AND kek_id IS NULL"
        before = await conn.fetchval(clear)
        with pytest.raises(Stop):
            await seal_clear_rows(conn, REGION, "records", 2, stop_after_first)
        # stopped after its first batch: that batch is sealed, the rest still in clear
        assert await conn.fetchval(clear) == before - 2
        mine = "SELECT tenant_id, record_id, body, wrapped_key, kek_id FROM records" \
               " WHERE tenant_id = $1"

        seen: list[tuple[int, int]] = []
        assert await seal_clear_rows(conn, REGION, "records", 2,
                                     lambda d, t: seen.append((d, t))) >= len(bodies) - 2
        assert seen and seen[-1][0] == seen[-1][1], "progress ends at its total"
        await seal_clear_rows(conn, REGION, "dead_letters", 2)
        assert await seal_clear_rows(conn, REGION, "records", 2) == 0, "nothing left to do"

        keyring = FileKeyring(stack.keyring_path, REGION)
        for r in await conn.fetch(mine, tenant):
            assert r["kek_id"] is not None and r["body"] != bodies[r["record_id"]]
            assert open_record(r, keyring.kek) == bodies[r["record_id"]]
        letter = await conn.fetchrow("SELECT * FROM dead_letters WHERE source_topic = $1", topic)
        assert letter["kek_id"] is not None and b"CLEAR-LETTER" not in letter["body"]
        assert open_letter(letter, keyring.kek) == b"CLEAR-LETTER"
        assert letter["error"] == "" and b"CLEAR-ERROR" not in letter["error_sealed"]
        assert open_letter_error(letter, keyring.kek) == "quoting CLEAR-ERROR"
    finally:
        await conn.execute("DELETE FROM records WHERE tenant_id = $1", tenant)
        await conn.execute("DELETE FROM dead_letters WHERE source_topic = $1", topic)
        await conn.close()
