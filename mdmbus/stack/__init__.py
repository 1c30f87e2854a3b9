"""The embedded stack: a real Kafka broker and a real PostgreSQL cluster on 127.0.0.1.

Started and stopped by ``mdmbus stack up | down | status``; no container engine needed.
"""

from mdmbus.stack.errors import StackError
from mdmbus.stack.stack import credentials, down, issuer, provision_servers, status, up

__all__ = ["StackError", "up", "down", "status", "provision_servers", "credentials", "issuer"]
