"""Benchmarks of mdmbus against the stack named by the environment (see BENCHMARKS.md).

Each module is one command that prints a table: ``python -m bench.throughput``, ``bench.latency``,
``bench.deletion_lag``, ``bench.purge_scaling``, ``bench.memory``. None of them starts Kafka or
PostgreSQL: they use the stack that ``mdmbus stack up`` started (or the servers the ``MDMBUS_*``
settings name), and start the pipeline processes they need themselves (``bench.support``).
Run one at a time: they share the stack and would disturb each other's figures.
"""
