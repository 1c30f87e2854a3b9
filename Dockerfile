# The mdmbus image: the `mdmbus` command with the pipeline processes, provisioning and the demo
# simulators. compose.yaml builds it once and runs it as mdmbus-init, pipeline, cm-connector,
# sweeper and (profile demo) simulator, each with its own `mdmbus <subcommand>`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MDMBUS_STATE_DIR=/tmp/mdmbus \
    MDMBUS_METRICS_ADDR=0.0.0.0

WORKDIR /opt/mdmbus

# The package reads its contract from schemas/avro/ beside the source (mdmbus.settings.REPO_ROOT),
# so the checkout is installed in place (editable) rather than copied into site-packages.
COPY pyproject.toml README.md ./
COPY mdmbus/ mdmbus/
COPY streams/ streams/
COPY services/ services/
COPY schemas/ schemas/
RUN pip install -e . \
    && python -c "from mdmbus.contract import default_registry; default_registry()" \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin mdmbus

USER mdmbus
# /metrics of `mdmbus process ...` under compose (MDMBUS_METRICS_PORT=9100).
EXPOSE 9100
ENTRYPOINT ["mdmbus"]
CMD ["--help"]
