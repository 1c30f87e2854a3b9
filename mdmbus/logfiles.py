"""Log files that stay private and bounded: a file only its owner reads (0600), rolled over at
a size cap with a fixed number of older files kept (``MDMBUS_LOG_MAX_BYTES``,
``MDMBUS_LOG_BACKUPS``). The launcher pipes each process's output through :class:`LogPump`,
so nothing a process prints (its logs, a traceback, faust's own handlers) escapes the cap."""

from __future__ import annotations

import logging
import logging.handlers
import os
import threading
from pathlib import Path
from typing import IO

__all__ = ["PrivateRotatingFileHandler", "LogPump"]


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler whose files are created 0600, whatever the process's umask."""

    def _open(self):  # noqa: ANN202 - the base class's signature
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.chmod(self.baseFilename, 0o600)  # a file made by an older mdmbus, 0644
        return os.fdopen(fd, self.mode, encoding=self.encoding, errors=self.errors)


class LogPump:
    """Copies a child's output, line by line, into ``path`` rolled over at ``max_bytes``
    (``backups`` older files: path.1 the newest), on a thread of its own until the output
    ends."""

    def __init__(self, stream: IO[bytes], path: Path, max_bytes: int, backups: int) -> None:
        self._stream = stream
        self._handler = PrivateRotatingFileHandler(path, maxBytes=max_bytes,
                                                   backupCount=backups, encoding="utf-8",
                                                   errors="replace")
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._thread = threading.Thread(target=self._run, name=f"log {path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for line in iter(self._stream.readline, b""):
                text = line.decode("utf-8", errors="replace").rstrip("\n")
                self._handler.emit(logging.makeLogRecord({"msg": text, "args": None}))
        finally:
            self._stream.close()
            self._handler.close()

    def join(self, timeout_s: float = 10.0) -> None:
        """Waits until everything the child wrote is in the file (its output closed)."""
        self._thread.join(timeout_s)
