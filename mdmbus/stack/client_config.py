"""`mdmbus stack client-config`: what a Kafka client outside mdmbus (kcat, a Java producer, a
librdkafka program) needs to connect to the embedded broker as one of mdmbus's principals.

Two ways in, one principal and its ACLs either way (mdmbus/identities.py):

- ``scram`` (default): SCRAM-SHA-512 over TLS on the client listener, with the principal's
  password; for librdkafka 2.1 or later and the Java client. Debian 12's kcat (librdkafka
  2.0.2) is refused by Kafka 4 with "invalid credentials" although the password is right.
- ``certificate``: a client certificate issued by the stack's CA for the principal, on the
  mutual-TLS listener; works with every librdkafka (Debian's kcat included).

The file holds a secret (a password or a key's location): it is written with mode 0600.
"""

from __future__ import annotations

from pathlib import Path

from mdmbus.errors import UsageError
from mdmbus.identities import kafka_principals
from mdmbus.settings import Settings
from mdmbus.stack.pki import Pki, write_private

__all__ = ["client_config", "AUTHS", "FORMATS", "write_client_config"]

AUTHS = ("scram", "certificate")
FORMATS = ("librdkafka", "java")


def client_config(settings: Settings, principal: str, auth: str = "scram",
                  fmt: str = "librdkafka") -> str:
    """The properties text for ``principal`` (a certificate is issued when ``auth`` is
    "certificate" and none exists yet)."""
    names = [p.name for p in kafka_principals()]
    if principal not in names:
        raise UsageError(f"--principal {principal!r} is not one of mdmbus's Kafka principals: "
                         f"{', '.join(names)}")
    if auth not in AUTHS or fmt not in FORMATS:
        raise UsageError(f"--auth is one of {', '.join(AUTHS)}; --format one of "
                         f"{', '.join(FORMATS)}")
    ca = settings.ca_path
    lines = [f"# mdmbus: Kafka principal {principal} ({auth})"]
    if auth == "scram":
        password = settings.password("kafka", principal)
        lines.append(f"bootstrap.servers={settings.kafka_bootstrap}")
        if fmt == "librdkafka":
            lines += ["security.protocol=SASL_SSL", "sasl.mechanisms=SCRAM-SHA-512",
                      f"sasl.username={principal}", f"sasl.password={password}",
                      f"ssl.ca.location={ca}"]
        else:
            escaped = password.replace("\\", "\\\\").replace('"', '\\"')
            lines += ["security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512",
                      "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule"
                      f' required username="{principal}" password="{escaped}";',
                      "ssl.truststore.type=PEM", f"ssl.truststore.location={ca}"]
    else:
        if settings.kafka_external or settings.kafka_region_bootstraps:
            raise UsageError("--auth certificate is for the embedded broker (its mutual-TLS "
                             "listener); a cluster of your own has its own client certificates")
        cert, key = Pki(settings.pki_dir).ensure(f"client-{principal}", server=False,
                                                 common_name=principal)
        lines.append(f"bootstrap.servers=127.0.0.1:{settings.kafka_mtls_port}")
        if fmt == "librdkafka":
            lines += ["security.protocol=SSL", f"ssl.ca.location={ca}",
                      f"ssl.certificate.location={cert}", f"ssl.key.location={key}"]
        else:
            keystore = Path(str(cert).removesuffix(".crt") + ".pem")
            write_private(keystore, key.read_bytes() + cert.read_bytes())
            lines += ["security.protocol=SSL", "ssl.keystore.type=PEM",
                      f"ssl.keystore.location={keystore}", "ssl.truststore.type=PEM",
                      f"ssl.truststore.location={ca}"]
    return "\n".join(lines) + "\n"


def write_client_config(settings: Settings, principal: str, auth: str, fmt: str,
                        output: str | None) -> str | None:
    """Writes the properties to ``output`` (mode 0600) and returns None, or returns them."""
    text = client_config(settings, principal, auth, fmt)
    if output is None:
        return text
    write_private(Path(output), text.encode())
    return None
