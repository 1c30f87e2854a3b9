"""The faust-streaming processors: validate, route by region, store, dead-letter.

``streams.app`` holds the one faust app; each agent module subscribes one topic:
``ingest`` (upload, relay, commands), ``sessions``, ``lifecycle``, ``acks``. Run them with
``mdmbus process pipeline`` (a faust worker); scale out with more workers.
"""
