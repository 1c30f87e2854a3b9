"""The peer of the throughput benchmark: the same job as mdmbus's pipeline, written as a user
of Quix Streams would write it (bench/peer/quix_upload.py), run in a virtual environment of
its own (.venv-peer, made by bench.peer.venv from bench/peer/requirements.txt) because
Quix Streams pins confluent-kafka below the version mdmbus pins."""
