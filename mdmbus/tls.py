"""Every TLS context mdmbus builds, client or server: TLS 1.2 at least, the CA's certificates
only, host names checked by clients.

Client contexts are cached (a process opens many connections with the same files) by the files'
identity and modification time, not their path alone: a CA or certificate made again at the same
path is read again by a running process, never served from the cache.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache
from pathlib import Path

__all__ = ["client_ssl_context", "server_ssl_context"]

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def _stamp(path: str | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


@lru_cache(maxsize=32)
def _client(ca_file: str, cert: str | None, key: str | None,
            _stamps: tuple) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = MINIMUM_VERSION
    if cert:
        context.load_cert_chain(cert, key)
    return context


def client_ssl_context(ca_file: str | Path, cert: str | Path | None = None,
                       key: str | Path | None = None) -> ssl.SSLContext:
    """A client context that trusts ``ca_file`` only, checks host names, and presents ``cert``
    (with ``key``) when given."""
    files = (str(ca_file), None if cert is None else str(cert), None if key is None else str(key))
    return _client(*files, tuple(_stamp(f) for f in files))


def server_ssl_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server context presenting ``cert``; built once per server start."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MINIMUM_VERSION
    context.load_cert_chain(str(cert), str(key))
    return context
