"""Benchmarks of mdmbus against the stack named by the environment (see BENCHMARKS.md).

Each one is a command, ``python -m bench.<name> [--help]``, that prints the machine, the code
version and its command line, then its tables: ``bench.throughput`` (a package: produce,
baselines, drain, profile, report), ``bench.latency``, ``bench.deletion_lag``,
``bench.purge_scaling``, ``bench.memory``, ``bench.gateway_relay``, ``bench.codec_bench``.
None of them starts Kafka or PostgreSQL: they use the stack that ``mdmbus stack up`` started
(or the servers the ``MDMBUS_*`` settings name), and start the mdmbus processes they need
through the one launcher (mdmbus.cli.launcher.Launcher, via ``bench.support.launcher``).
Run one at a time: they share the stack and would disturb each other's figures.
"""
