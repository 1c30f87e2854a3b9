"""The pipeline: each region's record topics consumed in batches (``runtime.py``) through one
batch template (``batch.py``: classify, route, write, dead letters) and its processors
(``records.py``: uploads, relay records, commands; ``sessions.py``: device sessions;
``deletion_requests.py``: a region's deletion requests), committed by ``commit.py`` and
truncated by ``transit.py``; the global lifecycle topic read by faust's one agent
(``app.py``, ``lifecycle.py``). Run with ``mdmbus process pipeline``; scale out with more
workers of a region.
"""
