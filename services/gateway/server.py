"""``mdmbus process gateway --region R``: one HTTPS server per region (TLS with the configured
certificate; the embedded stack's CA issues it), stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Sequence

from aiohttp import web
from aiokafka import AIOKafkaProducer

from mdmbus.clock import Clock
from mdmbus.connections import producer_options
from mdmbus.contract import default_registry
from mdmbus.errors import ConfigError
from mdmbus.identities import principal_of
from mdmbus.metrics import Metrics
from mdmbus.services.gateway.app import ROUTES, Gateway, Limits, build_app
from mdmbus.services.gateway.guards import ConnectionGuard, SourceLimits
from mdmbus.services.gateway.listener import Listener
from mdmbus.services.gateway.tokens import REFUSALS, TokenVerifier
from mdmbus.services.stores.pools import Stores
from mdmbus.services.stores.retry import until_written
from mdmbus import tls
from mdmbus.settings import Settings

__all__ = ["run", "server_ssl_context"]

log = logging.getLogger("mdmbus.gateway")


def server_ssl_context(settings: Settings) -> ssl.SSLContext:
    """The configured certificate, or the one the embedded stack's CA issued."""
    cert = settings.gateway_cert or str(settings.pki_dir / "gateway.crt")
    key = settings.gateway_key or str(settings.pki_dir / "gateway.key")
    return tls.server_ssl_context(cert, key)


async def run(settings: Settings, regions: Sequence[str], stop: asyncio.Event,
              metrics: Metrics) -> None:
    stores = await until_written(
        lambda: Stores(settings, f"mdmbus-gateway-{'-'.join(regions)}", "gateway").start(regions),
        lambda exc: metrics.store_batches.labels("all", "error").inc())
    verifier = TokenVerifier(settings.jwks_source, settings.token_issuer,
                             settings.token_audience, settings.token_algorithms,
                             max_lifetime_s=settings.token_max_lifetime_s)
    for reason in REFUSALS:  # every refusal reason reads 0 until it happens
        metrics.gateway_tokens_refused.labels(reason)
    for region in regions:  # every series reads 0 until it happens
        for reason in ("over_cap", "source_cap", "source_rate", "slow_headers", "idle_closed"):
            metrics.gateway_connections_cut.labels(region, reason)
        for _, _, route in ROUTES:
            metrics.gateway_store_busy.labels(region, route)
        metrics.gateway_kafka_unavailable.labels(region)
    producers = {r: AIOKafkaProducer(**producer_options(settings, principal_of("gateway", r), r,
                                                        linger_ms=2))
                 for r in regions}
    for producer in producers.values():
        await producer.start()
    runners = []
    servers: list[Listener] = []
    guards: list[ConnectionGuard] = []
    try:
        tls = server_ssl_context(settings)
        contract, clock = default_registry(), Clock.from_settings(settings)
        for region in regions:
            gateway = Gateway(settings, region, stores.region(region), stores.directory_of(region),
                              producers[region], verifier, metrics, contract, clock,
                              Limits(body_seconds=settings.gateway_body_timeout_s,
                                     produce_seconds=settings.gateway_produce_timeout_s))
            runner = web.AppRunner(build_app(gateway), access_log=None, shutdown_timeout=5,
                                   keepalive_timeout=settings.gateway_keepalive_s)
            await runner.setup()
            assert runner.server is not None
            def on_cut(reason: str, region: str = region) -> None:
                metrics.gateway_connections_cut.labels(region, reason).inc()
            # TLS is the guard's to start: a connection it refuses costs no handshake.
            guard = ConnectionGuard(
                runner.server, settings.gateway_max_connections,
                settings.gateway_header_timeout_s, on_cut,
                tls=tls, per_source=SourceLimits(settings.gateway_source_max_connections,
                                                 settings.gateway_source_rate,
                                                 settings.gateway_source_burst,
                                                 settings.gateway_source_v6_prefix))
            runners.append(runner)
            guards.append(guard)
            try:
                servers.append(await Listener.open(guard, settings.gateway_addr,
                                                   settings.gateway_ports[region]))
            except OSError as exc:
                raise ConfigError(
                    f"the gateway of {region} cannot listen on {settings.gateway_addr}:"
                    f"{settings.gateway_ports[region]} ({exc.strerror}); another process holds "
                    f"it, or set MDMBUS_GATEWAY_PORT_{region.upper()}") from None
            log.info("gateway of %s on https://%s:%d", region, settings.gateway_addr,
                     settings.gateway_ports[region])
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        for guard in guards:
            guard.close()
        for runner in runners:
            await runner.cleanup()
        for producer in producers.values():
            await producer.stop()
        await stores.close()
