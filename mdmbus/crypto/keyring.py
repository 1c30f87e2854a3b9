"""A region's key-encryption keys (KEKs), outside PostgreSQL.

The interface (:class:`Keyring`) is what a key-management service could implement later
(Vault's transit engine, a cloud KMS: docs/design.md section 9): wrap a data key under the
current KEK, unwrap one under the KEK it names, re-wrap one under the current KEK, rotate (the
prepared next KEK becomes current, a new next one is prepared) and destroy a retired KEK. A
KEK never leaves the keyring through this interface, only wrapped data keys do.

:class:`FileKeyring` is the embedded stack's: one directory per region (0700) under the state
directory, a manifest (``keyring.json``, which ids are current, next, retired, destroyed; no key)
and one 0600 file of 32 random bytes per KEK. Only the rotation job changes it (under an
exclusive file lock); every other process holding it re-reads the manifest when it changes
(checked at most every :data:`REFRESH_S`), so a new KEK is picked up without a restart. The next
KEK exists before it becomes current, so a process that has not re-read the manifest yet can
still unwrap what was wrapped under it.

Wrapping is AES-256-GCM (``cryptography``) with a random 96-bit nonce, the associated data of
the row it belongs to and the KEK's id, so a wrapped key cannot be moved to another row or
presented under another KEK's id.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mdmbus.errors import MdmbusError
from mdmbus.regions import REGIONS

__all__ = ["Keyring", "FileKeyring", "KeyringStatus", "Kek", "KeyUnavailable", "WrapError",
           "keyrings", "read_status", "REFRESH_S", "KEK_BYTES", "NONCE_BYTES"]

#: How often (real seconds) a process re-reads a keyring's manifest at most.
REFRESH_S = 0.2
KEK_BYTES = 32
NONCE_BYTES = 12
_MANIFEST = "keyring.json"
_LOCK = "keyring.lock"
#: Destroyed ids kept in the manifest (ids only): what the gauge still checks rows against.
_DESTROYED_KEPT = 50


class KeyUnavailable(MdmbusError):
    """The KEK a data key was wrapped under is not held (destroyed, or another region's)."""


class WrapError(MdmbusError):
    """A wrapped data key does not open under its KEK with its row's associated data."""


class Kek:
    """One KEK: its id and an AES-GCM instance on it. The key's bytes are not kept here and
    never shown (repr, str, errors name the id only)."""

    __slots__ = ("id", "_aead", "_aad_tail")

    def __init__(self, kek_id: str, key: bytes) -> None:
        if len(key) != KEK_BYTES:
            raise WrapError(f"KEK {kek_id} is {len(key)} bytes, not {KEK_BYTES}")
        self.id = kek_id
        #: What follows a row's associated data in a wrap's (made once: a wrap a record).
        self._aad_tail = b"\x00" + kek_id.encode("ascii")
        self._aead = AESGCM(key)

    def wrap(self, dek: bytes, aad: bytes, nonce: bytes) -> bytes:
        """``nonce`` (12 random bytes) + AES-GCM(dek), bound to ``aad`` and this KEK's id."""
        return nonce + self._aead.encrypt(nonce, dek, aad + self._aad_tail)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                      aad + self._aad_tail)
        except (InvalidTag, ValueError):
            raise WrapError(f"a data key does not unwrap under KEK {self.id} with its row's "
                            f"associated data (moved, altered or truncated)") from None

    def __repr__(self) -> str:
        return f"Kek({self.id!r})"


@dataclass(frozen=True)
class KeyringStatus:
    """What a keyring holds, by id (never a key). Times are real Unix seconds."""

    region: str
    current: str
    #: When the current KEK became current.
    current_since: float
    next: str
    #: Retired KEKs still held (their data keys being re-wrapped): id -> when retired.
    retired: dict[str, float] = field(default_factory=dict)
    #: Destroyed KEKs, the most recent: id -> when destroyed.
    destroyed: dict[str, float] = field(default_factory=dict)
    rotations: int = 0


class Keyring(Protocol):
    """A region's KEKs, as a process that seals, opens or re-wraps data keys sees them."""

    region: str

    def current(self) -> Kek:
        """The KEK new data keys are wrapped under (refreshed when the keyring changed)."""
        ...

    def kek(self, kek_id: str) -> Kek:
        """The KEK ``kek_id`` (current, next or retired); :class:`KeyUnavailable` otherwise."""
        ...

    def status(self) -> KeyringStatus: ...

    def rotate(self) -> KeyringStatus:
        """The next KEK becomes current, the current one is retired, a new next one is made."""
        ...

    def destroy(self, kek_id: str) -> None:
        """Destroys a retired KEK: nothing wrapped under it can be unwrapped any more."""
        ...


def _new_id(region: str) -> str:
    return f"{region}-{secrets.token_hex(8)}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Writes a 0600 file under a temporary name, fsyncs it, renames it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class FileKeyring:
    """The file keyring of one region (module docstring). Thread-unsafe by design: one per
    process and region, used from its event loop."""

    def __init__(self, root: Path, region: str, create: bool = True) -> None:
        self.region = region
        self.dir = Path(root) / region
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        # Set by the first _load() below, which raises if it cannot: never None once built.
        self._status: KeyringStatus
        self._keks: dict[str, Kek] = {}
        if create:
            self._ensure()
        self._load()

    # ---------------------------------------------------------------- files

    def _ensure(self) -> None:
        """Creates the directory and a first current and next KEK where there are none."""
        for d in (self.dir.parent, self.dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(d, 0o700)
        if (self.dir / _MANIFEST).exists():
            return
        with self._locked():
            if (self.dir / _MANIFEST).exists():
                return
            now = time.time()
            current, nxt = _new_id(self.region), _new_id(self.region)
            self._write_key(current)
            self._write_key(nxt)
            self._write_manifest(KeyringStatus(self.region, current, now, nxt))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _key_path(self, kek_id: str) -> Path:
        if not kek_id.startswith(f"{self.region}-") or not kek_id[len(self.region) + 1:].isalnum():
            raise KeyUnavailable(f"{kek_id!r} is not a KEK id of region {self.region}")
        return self.dir / f"{kek_id}.kek"

    def _write_key(self, kek_id: str) -> None:
        _write_atomic(self._key_path(kek_id), secrets.token_bytes(KEK_BYTES))

    def _write_manifest(self, s: KeyringStatus) -> None:
        doc = {"region": s.region, "current": s.current, "current_since": s.current_since,
               "next": s.next, "retired": s.retired, "destroyed": s.destroyed,
               "rotations": s.rotations}
        _write_atomic(self.dir / _MANIFEST, json.dumps(doc, indent=1).encode())

    def _read_manifest(self) -> KeyringStatus:
        path = self.dir / _MANIFEST
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return KeyringStatus(doc["region"], doc["current"], float(doc["current_since"]),
                                 doc["next"], {k: float(v) for k, v in doc["retired"].items()},
                                 {k: float(v) for k, v in doc["destroyed"].items()},
                                 int(doc.get("rotations", 0)))
        except FileNotFoundError:
            raise KeyUnavailable(f"no keyring for region {self.region} in {self.dir} (a process "
                                 f"that seals or opens bodies creates it)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyUnavailable(f"the keyring manifest {path} is malformed "
                                 f"({exc.__class__.__name__})") from None

    def _load(self) -> None:
        """Re-reads the manifest and the keys it names when the manifest changed."""
        st = os.stat(self.dir / _MANIFEST)
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        self._checked = time.monotonic()
        if stamp == self._stamp:
            return
        status = self._read_manifest()
        keks: dict[str, Kek] = {}
        for kek_id in (status.current, status.next, *status.retired):
            held = self._keks.get(kek_id)
            if held is None:
                try:
                    held = Kek(kek_id, self._key_path(kek_id).read_bytes())
                except FileNotFoundError:
                    raise KeyUnavailable(f"KEK {kek_id} of region {self.region} is named by the "
                                         f"manifest but its file is missing") from None
            keks[kek_id] = held
        # Destroyed KEKs are dropped from memory with the manifest that says so.
        self._keks, self._status, self._stamp = keks, status, stamp

    def refresh(self, force: bool = False) -> None:
        if force or time.monotonic() - self._checked >= REFRESH_S:
            self._load()

    # ---------------------------------------------------------------- the interface

    def current(self) -> Kek:
        self.refresh()
        return self._keks[self._status.current]

    def kek(self, kek_id: str) -> Kek:
        self.refresh()  # a destroyed KEK leaves this process within REFRESH_S
        held = self._keks.get(kek_id)
        if held is None:
            self.refresh(force=True)  # a KEK made since the last look
            held = self._keks.get(kek_id)
            if held is None:
                raise KeyUnavailable(f"KEK {kek_id} is not held by region {self.region}'s "
                                     f"keyring (destroyed, or never this region's)")
        return held

    def status(self) -> KeyringStatus:
        self.refresh(force=True)
        return self._status

    def rotate(self) -> KeyringStatus:
        with self._locked():
            self.refresh(force=True)
            s, now = self._status, time.time()
            nxt = _new_id(self.region)
            self._write_key(nxt)
            new = KeyringStatus(self.region, s.next, now, nxt, {**s.retired, s.current: now},
                                s.destroyed, s.rotations + 1)
            self._write_manifest(new)
            self.refresh(force=True)
            return self._status

    def destroy(self, kek_id: str) -> None:
        with self._locked():
            self.refresh(force=True)
            s = self._status
            if kek_id not in s.retired:
                raise KeyUnavailable(f"KEK {kek_id} is not a retired KEK of {self.region}; only "
                                     f"retired ones are destroyed")
            destroyed = dict(sorted({**s.destroyed, kek_id: time.time()}.items(),
                                    key=lambda kv: kv[1])[-_DESTROYED_KEPT:])
            retired = {k: v for k, v in s.retired.items() if k != kek_id}
            # The manifest first: no process picks the KEK up again once it is gone from it.
            self._write_manifest(KeyringStatus(s.region, s.current, s.current_since, s.next,
                                               retired, destroyed, s.rotations))
            path = self._key_path(kek_id)
            try:
                fd = os.open(path, os.O_WRONLY)
            except FileNotFoundError:
                pass
            else:
                try:  # overwritten in place, then unlinked (docs/design.md section 9: limits)
                    os.write(fd, secrets.token_bytes(KEK_BYTES))
                    os.fsync(fd)
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.write(fd, b"\x00" * KEK_BYTES)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                path.unlink()
                _fsync_dir(self.dir)
            self.refresh(force=True)


def read_status(root: Path, region: str) -> KeyringStatus | None:
    """A region's keyring as its manifest says (ids and times, no key is read): for processes
    that report on rotation without holding a KEK (the demo's summary). None: no keyring yet."""
    ring = FileKeyring.__new__(FileKeyring)
    ring.region, ring.dir = region, Path(root) / region
    try:
        return ring._read_manifest()
    except KeyUnavailable:
        return None


class _Keyrings:
    """The keyrings of this process, one per region, made when first asked for: only
    processes that seal, open or re-wrap bodies ever load a KEK. Their directory is the
    process's settings' (``configure``; else MDMBUS_KEYRING_DIR / the state directory's)."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._rings: dict[tuple[Path, str], FileKeyring] = {}

    def configure(self, root: Path) -> None:
        self._root = Path(root)

    @property
    def root(self) -> Path:
        if self._root is None:
            from mdmbus.settings import Settings
            self._root = Settings.from_env().keyring_path
        return self._root

    def get(self, region: str) -> FileKeyring:
        key = (self.root, region)
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = FileKeyring(self.root, region)
        return ring

    def kek(self, kek_id: str) -> Kek:
        """The KEK ``kek_id`` names, from its region's keyring (the region is the id's
        prefix); :class:`KeyUnavailable` when no keyring holds it."""
        region = kek_id.partition("-")[0]
        if region not in REGIONS:
            raise KeyUnavailable(f"{kek_id!r} is not a KEK id of any region")
        return self.get(region).kek(kek_id)


#: This process's keyrings.
keyrings = _Keyrings()
