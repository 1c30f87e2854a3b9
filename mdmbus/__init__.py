"""mdmbus: the Configuration Manager <-> Intune data pipeline and its privacy rules.

The ``mdmbus`` package is the shared core (settings, topics, codec, clock, regions) and the
command line; ``streams`` (processors) and ``services`` (stores, sweepers, connector,
simulators) build on it and nothing here imports from them.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
