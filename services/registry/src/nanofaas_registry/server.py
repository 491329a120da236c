"""Builds, starts and stops the registry's grpc.aio server with health, reflection and metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # stubs lack aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from nanofaas.v1 import registry_pb2, registry_pb2_grpc
from nanofaas_registry import SERVICE_NAME, tracing, validation
from nanofaas_registry.api_auth import BearerAuth, TokenFile
from nanofaas_registry.config import RegistrySettings
from nanofaas_registry.metrics import RegistryMetrics
from nanofaas_registry.registry import FunctionRegistry
from nanofaas_registry.service import RegistryServicer
from nanofaas_registry.store import FunctionStore, open_store
from nanofaas_registry.watch import WatchHub

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger(__name__)

_SERVER_OPTIONS: list[tuple[str, int]] = [
    # Fail loudly when the port is taken instead of silently sharing it with another process.
    ("grpc.so_reuseport", 0),
    # Watch streams are long-lived; pings detect dead peers behind NATs and proxies.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # Above the largest spec (NANOFAAS_MAX_SPEC_BYTES, at most 16 MiB) and what the gateway may
    # send (64 MiB): an oversized spec reaches validation and gets its permanent 413/400,
    # instead of gRPC's RESOURCE_EXHAUSTED, which callers read as "retry later".
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def grpc_address(host: str, port: int) -> str:
    """host:port, with an IPv6 literal in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class RegistryServer:
    """One registry: gRPC server, health, reflection and optional metrics endpoint.

    RPCs are traced with `tracer_provider`, else with the provider tracing.setup_tracing()
    installed; with neither, no interceptor is added at all.
    """

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        store: FunctionStore | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._settings = settings
        validation.configure_sizes(
            validation.SizeLimits(
                max_spec_bytes=settings.max_spec_bytes, max_env_bytes=settings.max_env_bytes
            )
        )
        self._tracer_provider = tracer_provider
        # None until start() opens the store the settings name (unless one was handed in).
        self._store: FunctionStore | None = store
        self.metrics = RegistryMetrics()
        self._server: grpc.aio.Server | None = None
        self._external: grpc.aio.Server | None = None
        self._health = health_aio.HealthServicer()
        self._registry: FunctionRegistry | None = None
        self._metrics_server: WSGIServer | None = None
        self._port = 0
        self._stopped = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound gRPC port (the real one when settings asked for port 0)."""
        return self._port

    @property
    def address(self) -> str:
        return grpc_address(self._settings.host, self._port)

    @property
    def metrics_port(self) -> int | None:
        """The bound metrics port, or None when the endpoint is disabled."""
        if self._metrics_server is None:
            return None
        return int(self._metrics_server.server_port)

    @property
    def registry(self) -> FunctionRegistry:
        if self._registry is None:
            raise RuntimeError("server not started")
        return self._registry

    async def start(self) -> None:
        """Opens the store, binds and serves; health turns SERVING only once everything is up."""
        if self._store is None:
            self._store = await open_store(self._settings)
        self._registry = await FunctionRegistry.open(
            self._store,
            hub=WatchHub(self._settings.watch_queue_capacity),
            metrics=self.metrics,
        )
        # Changes others make to the store (kubectl on Function objects) become registry changes.
        self._follower = asyncio.create_task(self._registry.follow_store(), name="registry-store-follower")
        settings = self._settings
        tokens = TokenFile(settings.api_tokens_file) if settings.api_tokens_file else None
        servicer = RegistryServicer(self._registry, self.metrics)
        # The pod-local listener is authenticated only when authentication is on; the
        # external one always is (with it off, it serves nothing but the open methods).
        server = self._grpc_server(servicer, BearerAuth(tokens, settings.open_methods) if tokens else None)
        self._server = server
        self._port = server.add_insecure_port(grpc_address(settings.host, settings.port))
        await server.start()
        if settings.external_host:
            address = grpc_address(settings.external_host, settings.external_port or self._port)
            external = self._grpc_server(servicer, BearerAuth(tokens, settings.open_methods))
            if external.add_insecure_port(address) == 0:
                raise OSError(f"cannot listen on {address}")
            await external.start()
            self._external = external
        if self._settings.metrics_port:
            self._metrics_server, _ = await asyncio.to_thread(
                start_http_server,
                self._settings.metrics_port,
                addr=self._settings.metrics_host,
                registry=self.metrics.collector_registry,
            )
        for service in ("", SERVICE_NAME):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        logger.info(
            "registry listening",
            extra={"host": self._settings.host, "port": self._port, "metricsPort": self.metrics_port},
        )

    def _grpc_server(self, servicer: RegistryServicer, auth: BearerAuth | None) -> grpc.aio.Server:
        """One listener's server: every listener serves the same services."""
        interceptors = [*tracing.server_interceptors(self._tracer_provider), *([auth] if auth else [])]
        server = grpc.aio.server(interceptors=interceptors or None, options=_SERVER_OPTIONS)
        registry_pb2_grpc.add_RegistryServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (
                registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        return server

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first, then ends watches, drains in-flight RPCs for `grace` seconds, closes."""
        if self._stopped.is_set():
            return
        grace = self._settings.shutdown_grace_s if grace is None else grace
        await self._health.enter_graceful_shutdown()
        if self._registry is not None:
            self._registry.close()
        await asyncio.gather(*(server.stop(grace) for server in (self._server, self._external) if server))
        if self._metrics_server is not None:
            metrics_server = self._metrics_server
            await asyncio.to_thread(metrics_server.shutdown)
            metrics_server.server_close()
        if self._follower is not None:
            self._follower.cancel()
            await asyncio.gather(self._follower, return_exceptions=True)
        if self._store is not None:
            await self._store.close()
        self._stopped.set()
        logger.info("registry stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def start_server(
    settings: RegistrySettings,
    *,
    store: FunctionStore | None = None,
    tracer_provider: TracerProvider | None = None,
) -> RegistryServer:
    """A started RegistryServer; stop it with `await server.stop()`."""
    server = RegistryServer(settings, store=store, tracer_provider=tracer_provider)
    try:
        await server.start()
    except BaseException:
        await server.stop(0)
        raise
    return server
