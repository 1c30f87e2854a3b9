# The mdmbus image: the `mdmbus` command with the pipeline processes, provisioning and the demo
# simulators. compose.yaml builds it once and runs it as mdmbus-certs, mdmbus-init, pipeline,
# cm-connector, sweeper, gateway and (profile demo) simulator, each with its own
# `mdmbus <subcommand>`. Debian's Python 3.11; the package and its dependencies are installed
# from the wheels `ops/compose/prepare` builds into .build/wheels, so the build needs no access
# to PyPI itself.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/mdmbus/bin:$PATH \
    MDMBUS_STATE_DIR=/tmp/mdmbus \
    MDMBUS_METRICS_ADDR=0.0.0.0

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# A plain (not editable) install: the contract, SQL and stack configuration are package data,
# so the image needs no source tree at run time.
COPY .build/wheels/ /tmp/wheels/
RUN python3 -m venv /opt/mdmbus \
    && /opt/mdmbus/bin/pip install -q --no-index --find-links /tmp/wheels mdmbus \
    && rm -rf /tmp/wheels \
    && python -c "from mdmbus.contract import default_registry; default_registry()" \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin mdmbus \
    && install -d -o mdmbus -m 0700 /var/lib/mdmbus

WORKDIR /
# /var/lib/mdmbus: compose's shared state (MDMBUS_STATE_DIR there), the image user's own, so that
# a fresh volume mounted on it starts out writable by the processes (compose's mdmbus-certs,
# which runs as root, also hands whatever it creates there to this user).
USER mdmbus
# /metrics of `mdmbus process ...` under compose (MDMBUS_METRICS_PORT=9100).
EXPOSE 9100
ENTRYPOINT ["mdmbus"]
CMD ["--help"]
# Marks the images this project builds: the compose test removes the ones a newer build
# replaced (dangling), and keeps the current ones as the next build's cache.
LABEL io.mdmbus.built="compose"
