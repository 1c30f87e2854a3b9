"""The broker's healthcheck: an ApiVersions round trip on its mutual-TLS listener with the
broker's own certificate (the client configuration of ops/kafka/healthcheck.properties), so TLS,
client authentication and the broker's request handling all work. Exit 0 when healthy.

Usage: healthcheck.py HOST:PORT CLIENT_PROPERTIES
"""

import socket
import ssl
import struct
import sys


def properties(path: str) -> dict[str, str]:
    out = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def main() -> int:
    host, _, port = sys.argv[1].rpartition(":")
    props = properties(sys.argv[2])
    if props.get("security.protocol") != "SSL":
        print("healthcheck: security.protocol must be SSL", file=sys.stderr)
        return 2
    context = ssl.create_default_context(cafile=props["ssl.truststore.location"])
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # as every mdmbus client (mdmbus/tls.py)
    # The key store is the key and its certificate chain in one PEM file.
    context.load_cert_chain(props["ssl.keystore.location"])
    client_id = b"healthcheck"
    # ApiVersions v0: api key 18, version 0, correlation id 7, client id.
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as conn:
            conn.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 10:
                chunk = conn.recv(10 - len(head))
                if not chunk:
                    print("healthcheck: the broker closed the connection", file=sys.stderr)
                    return 1
                head += chunk
    _, correlation, error = struct.unpack(">iih", head)
    if correlation != 7 or error != 0:
        print(f"healthcheck: ApiVersions answered error {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
