"""Wiring: the gRPC server, the registry watch, the backend and the cross-cutting concerns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from nanofaas.v1 import registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nanofaas_scheduler.api_auth import BearerAuth, TokenFile, bearer_credentials
from nanofaas_scheduler.autoscaler import Autoscaler
from nanofaas_scheduler.callbacks import CallbackOutbox
from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.core.reports import ReportBoard
from nanofaas_scheduler.core.scheduler import Scheduler
from nanofaas_scheduler.dispatch.base import Dispatcher, Observers
from nanofaas_scheduler.dispatch.endpoint import EndpointDispatcher
from nanofaas_scheduler.dispatch.http_invoke import set_max_output_bytes
from nanofaas_scheduler.dispatch.out_of_band import OutOfBandCompletion
from nanofaas_scheduler.dispatch.outbound_policy import OutboundPolicy
from nanofaas_scheduler.dispatch.router import ModeRouter
from nanofaas_scheduler.grpc_service import SchedulerService, status_message
from nanofaas_scheduler.observability import tracing
from nanofaas_scheduler.observability.execution_log import log_execution_end
from nanofaas_scheduler.observability.metrics import (
    BackendMetrics,
    LaneGauges,
    MeteredDispatcher,
    ReplicaGauges,
    SchedulerMetrics,
)
from nanofaas_scheduler.policies.autoscale import Windows
from nanofaas_scheduler.registry_cache import FunctionCache
from nanofaas_scheduler.request_limits import RequestLimits

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

SERVICE_NAME = scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name
_SWEEP_INTERVAL_S = 30.0
# At shutdown, how long subscribed gateways get to take the callbacks still due.
_CALLBACK_GRACE_S = 2.0
# Payloads up to the gateway's body limit (10 MiB by default) plus framing.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
]
# The registry's Watch sends whole specs, up to its spec limit (NANOFAAS_MAX_SPEC_BYTES, at most
# 16 MiB): gRPC's 4 MiB default would end the watch on one large spec.
_REGISTRY_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES)]


def grpc_address(host: str, port: int) -> str:
    """host:port, with an IPv6 literal (a pod IP may be one) in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def build_backend(settings: Settings, metrics_registry: CollectorRegistry = REGISTRY) -> Dispatcher:
    if settings.backend == "local":
        from nanofaas_scheduler.dispatch.local import LocalBackend

        # The scheduler process has no children but function servers: orphans are safe to reap.
        return LocalBackend(callback_url=settings.callback_url, reap_orphans=True)
    if settings.backend == "kubernetes":
        from nanofaas_scheduler.dispatch.kubernetes.factory import kubernetes_backend

        return kubernetes_backend(settings, metrics_registry)
    raise ValueError(f"NANOFAAS_BACKEND: unknown backend {settings.backend!r}")  # config.py checks it


def _request_limits(settings: Settings) -> RequestLimits:
    return RequestLimits(
        max_payload_bytes=settings.max_payload_bytes,
        max_idempotency_key_bytes=settings.max_idempotency_key_bytes,
        max_metadata_entries=settings.max_metadata_entries,
        max_metadata_bytes=settings.max_metadata_bytes,
    )


class SchedulerServer:
    """The scheduler process: owns the event-loop-side objects and their lifecycle."""

    def __init__(
        self,
        settings: Settings,
        backend: Dispatcher | None = None,
        *,
        metrics_registry: CollectorRegistry = REGISTRY,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        self.settings = settings
        self._backend = backend
        self.metrics_registry = metrics_registry
        self._span_exporter = span_exporter
        self.port = 0
        self.metrics_port = 0
        self._server: grpc.aio.Server | None = None
        self._external: grpc.aio.Server | None = None
        self._metrics_http: Any = None
        self._channel: grpc.aio.Channel | None = None
        self._health = HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self._autoscaling: asyncio.Task[None] | None = None
        self._callbacks: CallbackOutbox | None = None
        self._provider: TracerProvider | None = None
        self.scheduler: Scheduler | None = None

    def _dispatcher(self, backend: Dispatcher, metrics: SchedulerMetrics, reports: ReportBoard) -> Dispatcher:
        """The backend wrapped in the cross-cutting concerns, innermost first.

        Out-of-band completion is innermost, so a reported outcome passes
        through metrics and tracing exactly like an in-band one.
        """
        observers = Observers(BackendMetrics(metrics))
        outbound = OutboundPolicy(self.settings.outbound_deny, self.settings.outbound_allow)
        endpoints = EndpointDispatcher(outbound)
        dispatcher: Dispatcher = OutOfBandCompletion(ModeRouter(backend, endpoints), reports)
        dispatcher = MeteredDispatcher(dispatcher, metrics)
        if self._span_exporter is not None or tracing.tracing_configured():
            self._provider = tracing.make_provider(self._span_exporter)
            dispatcher = tracing.TracingDispatcher(
                dispatcher, self._provider.get_tracer("nanofaas.scheduler")
            )
            observers.add(tracing.ColdStartMarker())
        dispatcher.attach(observers)
        return dispatcher

    async def start(self) -> None:
        settings = self.settings
        set_max_output_bytes(settings.max_output_bytes)
        metrics = SchedulerMetrics(self.metrics_registry)
        reports = ReportBoard()
        backend = self._backend or build_backend(settings, self.metrics_registry)
        try:
            await backend.check()
        except BaseException:
            await backend.close()
            raise
        dispatcher = self._dispatcher(backend, metrics, reports)
        scheduler = self.scheduler = Scheduler(
            dispatcher,
            reports=reports,
            idempotency_ttl_s=settings.idempotency_ttl_s,
            execution_ttl_s=settings.execution_ttl_s,
            max_executions=settings.max_executions,
            max_per_second=settings.max_per_second,
        )
        scheduler.otel_trace_ids = self._provider is not None
        scheduler.on_admit.append(metrics.admitted)
        scheduler.on_reject.append(metrics.refused)
        callbacks = self._callbacks = CallbackOutbox(
            status_message, max_pending=settings.max_pending_callbacks, registry=self.metrics_registry
        )
        scheduler.on_end.extend((metrics.ended, callbacks, log_execution_end))
        self.metrics_registry.register(
            LaneGauges(scheduler.lane_stats, lambda name: metrics.replicas.get(name, 0))
        )
        windows = Windows(
            settings.autoscale_stable_window_s,
            settings.autoscale_panic_window_s,
            settings.autoscale_panic_threshold,
        )
        autoscaler = Autoscaler(scheduler, dispatcher, windows, tick_s=settings.autoscale_tick_s)
        scheduler.on_admit.append(autoscaler.admitted)
        self.metrics_registry.register(ReplicaGauges(autoscaler.replicas))

        async def function_changed(name: str, spec: types_pb2.FunctionSpec | None) -> None:
            await scheduler.function_changed(name, spec)
            if spec is None:
                metrics.forget(name)
                autoscaler.forget(name)

        tokens = TokenFile(settings.api_tokens_file) if settings.api_tokens_file else None
        credentials = bearer_credentials(tokens) if tokens else None
        self._channel = grpc.aio.insecure_channel(
            settings.registry_address, options=_REGISTRY_CHANNEL_OPTIONS, interceptors=credentials
        )
        functions = FunctionCache(
            registry_pb2_grpc.RegistryStub(self._channel),
            function_changed,
        )
        tracer = self._provider.get_tracer("nanofaas.scheduler") if self._provider else None
        service = SchedulerService(
            scheduler,
            functions,
            tracer,
            callbacks=callbacks,
            operator_completions=tokens is not None,
            limits=_request_limits(settings),
        )
        # The pod-local listener is authenticated only when authentication is on; the
        # external one always is (with it off, it serves nothing but the open methods).
        server = self._grpc_server(service, BearerAuth(tokens, settings.open_methods) if tokens else None)
        self.port = server.add_insecure_port(f"{settings.host}:{settings.port}")
        if self.port == 0:
            raise SystemExit(f"cannot listen on {settings.host}:{settings.port}")
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await server.start()
        self._server = server
        external_address = ""
        if settings.external_host:
            external_address = grpc_address(settings.external_host, settings.external_port or self.port)
            external = self._grpc_server(service, BearerAuth(tokens, settings.open_methods))
            if external.add_insecure_port(external_address) == 0:
                raise SystemExit(f"cannot listen on {external_address}")
            await external.start()
            self._external = external
        if settings.metrics_port:
            self._metrics_http, _ = start_http_server(
                settings.metrics_port, addr=settings.metrics_host, registry=self.metrics_registry
            )
            self.metrics_port = self._metrics_http.server_port
        loop = asyncio.get_running_loop()
        self._autoscaling = loop.create_task(autoscaler.run())
        self._tasks = [
            loop.create_task(functions.run()),
            loop.create_task(self._sweep()),
            loop.create_task(self._serve_once_synced(functions)),
            self._autoscaling,
        ]
        log.info(
            "scheduler listening",
            extra={
                "address": f"{settings.host}:{self.port}",
                "externalAddress": external_address,
                "apiAuth": tokens is not None,
            },
        )

    async def _serve_once_synced(self, functions: FunctionCache) -> None:
        """Ready (health SERVING) only once the first registry snapshot is in.

        Before it, every invocation would wait for the sync or fall through to the registry;
        a load balancer or `make up` should not send traffic yet.
        """
        await functions.first_synced.wait()
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("scheduler ready")

    def _grpc_server(self, service: SchedulerService, auth: BearerAuth | None) -> grpc.aio.Server:
        """One listener's server: every listener serves the same services."""
        server = grpc.aio.server(options=_SERVER_OPTIONS, interceptors=[auth] if auth else None)
        scheduler_pb2_grpc.add_SchedulerServicer_to_server(service, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, "grpc.health.v1.Health", reflection.SERVICE_NAME], server
        )
        return server

    async def _sweep(self) -> None:
        assert self.scheduler is not None
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL_S)
            self.scheduler.evict_expired()

    async def stop(self) -> None:
        """Readiness goes false first, then in-flight work gets the grace period."""
        await self._health.enter_graceful_shutdown()
        if self._autoscaling is not None:  # no decision may start a replica while the backend closes
            self._autoscaling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._autoscaling
        if self.scheduler is not None:
            await self.scheduler.shutdown(self.settings.shutdown_grace_s)
        if self._callbacks is not None:
            await self._callbacks.close(_CALLBACK_GRACE_S)
        await asyncio.gather(*(server.stop(1.0) for server in (self._server, self._external) if server))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._channel is not None:
            await self._channel.close(None)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
        await asyncio.to_thread(tracing.shutdown, self._provider)
        log.info("scheduler stopped")
