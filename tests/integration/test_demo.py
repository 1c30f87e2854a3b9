"""The README's main command: the demo runs the whole pipeline and every rule shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mdmbus.regions import REGIONS
from mdmbus.services.rules.audit import RULES

pytestmark = pytest.mark.integration


def test_demo_runs_every_rule_and_keeps_nothing_past_its_deadline(stack):
    """Every deletion rule fires, nothing outlives its deadline, no processed copy stays
    readable in Kafka past its bound, the CM side uploads through the gateways."""
    # Below the kernel's ephemeral range (32768-60999): a client connection never holds it.
    base = 28601
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdmbus", "demo", "--duration", "40",
         "--metrics-base-port", str(base)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    metrics_seen = None
    lines = []
    signed_in = None
    for line in proc.stdout:
        lines.append(line)
        if signed_in is None and "/oidc/login?ticket=" in line:
            signed_in = _open_login_link(stack, line.strip())
        if metrics_seen is None and line.startswith("  stored rows by region"):
            # While it runs, each process serves its metrics where the demo said.
            with urllib.request.urlopen(f"http://127.0.0.1:{base}/metrics", timeout=5) as r:
                metrics_seen = r.read().decode()
    assert proc.wait(120) == 0, "".join(lines[-40:])
    out = "".join(lines)
    assert "mdmbus_records_stored_total" in metrics_seen
    # The pipeline (the first process) times what sealing its bodies cost it: some CPU for
    # the records it stored, less than a millisecond a record on any machine this runs on.
    families = {f.name: f for f in text_string_to_metric_families(metrics_seen)}
    stored = sum(s.value for s in families["mdmbus_records_stored"].samples
                 if s.name.endswith("_total"))
    sealing = sum(s.value for s in families["mdmbus_seal_cpu_seconds"].samples
                  if s.name.endswith("_total"))
    assert stored > 0 and 0 < sealing < 1e-3 * stored, (stored, sealing)
    final = out[out.rindex("--- "):]
    deletions = dict(re.findall(r"(\w+) (\d+)", final.split("deletions by rule     :")[1].splitlines()[0]))
    for rule in RULES:
        assert int(deletions[rule]) > 0, f"the demo never showed {rule}:\n{final}"
    past = [int(n) for n in re.findall(r"rows past deadline    : (\d+)", out)]
    assert past and all(n == 0 for n in past), "rows outlived their deadline"
    readable = [int(n) for n in re.findall(r"readable copies past their bound: (\d+)", out)]
    assert len(readable) == len(past) and all(n == 0 for n in readable), \
        "processed copies stayed readable in Kafka past their bound"
    past_kek = [int(n) for n in re.findall(r"rows under a retired KEK past its bound: (\d+)", out)]
    assert len(past_kek) == len(past) and all(n == 0 for n in past_kek), \
        "live rows stayed wrapped under a retired KEK past the re-wrap allowance"
    rotations = [dict(re.findall(r"(\w\w) (\d+) \(KEK", line))
                 for line in re.findall(r"KEK rotations         :(.*)", out)]
    assert rotations and all(int(rotations[-1][r]) > int(rotations[0][r]) for r in REGIONS), \
        f"a KEK rotation every 10 s real, yet none in 40 s: {rotations[0]} -> {rotations[-1]}"
    uploaded = [int(n) for n in re.findall(r"(\d+) uploaded through the gateways", out)]
    assert uploaded and uploaded[-1] > 100, "the CM side did not upload through the gateways"
    letters = final.split("dead letters by reason:")[1].splitlines()[0]
    for reason in ("private_key_material", "wrong_region"):
        assert reason in letters, f"the demo never showed a {reason} dead letter:\n{final}"
    assert "demo: stopped" in out
    assert re.search(r"demo: privacy center at https://127\.0\.0\.1:\d+/privacy/", out)
    assert signed_in == (200, 400), "the printed login link opens the page, once"


def _open_login_link(stack, link: str) -> tuple[int, int]:
    """(status of the link opened, of the link opened again)."""
    import ssl
    import urllib.error
    tls = ssl.create_default_context(cafile=str(stack.ca_path))
    statuses = []
    for _ in range(2):
        try:
            with urllib.request.urlopen(link, context=tls, timeout=10) as r:
                statuses.append(r.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    return statuses[0], statuses[1]
