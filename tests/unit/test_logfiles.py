"""The processes' log files (mdmbus/logfiles.py, through the launcher): private (0600) whatever
the umask, rolled over at the cap with a fixed number kept, and nothing a process printed is
lost or reordered below the cap."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from mdmbus.logfiles import LogPump


def test_a_chatty_process_log_rolls_over_at_its_cap_and_stays_private(tmp_path):
    cap, backups, lines = 64 * 1024, 3, 20_000
    previous = os.umask(0o022)  # a permissive umask: the files are 0600 anyway
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", f"for i in range({lines}): print(f'line {{i:06d}} ' + 'x' * 40)"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        pump = LogPump(child.stdout, tmp_path / "p.log", cap, backups)
        assert child.wait(60) == 0
        pump.join(60)
    finally:
        os.umask(previous)
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["p.log", "p.log.1", "p.log.2", "p.log.3"]
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert f.stat().st_size <= cap, (f, f.stat().st_size)
    # The newest lines, in order, with nothing missing between the kept files.
    kept = [line for f in reversed(files) for line in f.read_text().splitlines()]
    numbers = [int(line.split()[1]) for line in kept]
    assert numbers == list(range(numbers[0], lines)), "lines lost or reordered"
    assert numbers[0] > 0, "nothing was rolled away"
