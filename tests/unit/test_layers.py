"""The gateway's modules are HTTP only: every query they need lives in services/stores/, where
the row-level security and the rules' SQL are read and tested together."""

from __future__ import annotations

import re
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "services" / "gateway"
SQL = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|COPY\s+\w+)\b")


def test_no_gateway_module_holds_sql():
    found = [f"{path.name}:{n}: {line.strip()}" for path in sorted(GATEWAY.glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if SQL.search(line)]
    assert not found, "SQL in the HTTP layer (move it to services/stores/):\n" + "\n".join(found)


def test_the_check_sees_sql():
    assert SQL.search('await conn.fetch("SELECT 1")')
    assert SQL.search('"UPDATE erasure_receipts SET completed_at = $2"')
    assert not SQL.search("the caller selects a tenant")
