"""The benchmarks' last line: how much CPU time the host's hypervisor took during the run
(bench/support.py), read from /proc/stat's cpu line. Oracles: tick counts written by hand."""

from __future__ import annotations

from bench.support import cpu_times, steal_line

#: /proc/stat as Linux writes it: user nice system idle iowait irq softirq steal guest guest_nice
BEFORE = "cpu  1000 0 200 8000 0 0 0 800 0 0\ncpu0 500 0 100 4000 0 0 0 400 0 0\nintr 1\n"
AFTER = "cpu  1500 0 300 8100 0 0 0 1100 50 0\ncpu0 700 0 150 4050 0 0 0 550 0 0\nintr 2\n"


def test_the_cpu_line_gives_steal_and_the_sum_of_the_first_eight_fields():
    assert cpu_times(BEFORE) == (800, 10_000)
    assert cpu_times(AFTER) == (1100, 11_000)  # guest (50) is inside user already


def test_the_share_is_steal_over_all_ticks_between_the_two_reads():
    line = steal_line(cpu_times(BEFORE), cpu_times(AFTER))
    assert line.startswith("host steal during the run: 30.0% of the machine's CPU time")
    assert "disturbed" in line


def test_a_quiet_host_is_not_called_disturbed():
    after = "cpu  1900 0 300 8700 0 0 0 840 0 0\n"  # 40 of 1,740 ticks: 2.3 %
    line = steal_line(cpu_times(BEFORE), cpu_times(after))
    assert "2.3%" in line and "disturbed" not in line


def test_no_cpu_line_or_no_time_passed_is_unknown_not_a_number():
    assert cpu_times("intr 1\n") is None
    assert cpu_times("cpu  1 2 3\n") is None  # a kernel older than steal accounting
    assert "unknown" in steal_line(None, cpu_times(AFTER))
    assert "unknown" in steal_line(cpu_times(BEFORE), cpu_times(BEFORE))


def test_this_machine_has_a_cpu_line():
    now = cpu_times()
    assert now is not None and 0 <= now[0] <= now[1]


def test_the_machine_busy_excludes_idle_iowait_and_steal():
    """'rest of the machine' is the machine's busy time less the processes metered: time the
    hypervisor took must not show up there as if a process here had used it."""
    from bench.support import _TICK, _machine_busy
    stat = "cpu  1000 10 200 8000 30 4 6 800 0 0\n"
    busy, total = _machine_busy(stat)
    assert round(busy * _TICK) == 1000 + 10 + 200 + 4 + 6
    assert round(total * _TICK) == 10_050
