"""Wiring: the gRPC server, the registry watch and the dispatcher of the chosen backend."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from nanofaas.v1 import registry_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc
from nanofaas_scheduler.callbacks import CallbackSender
from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.core.scheduler import Scheduler
from nanofaas_scheduler.dispatch.base import Dispatcher
from nanofaas_scheduler.dispatch.endpoint import EndpointDispatcher
from nanofaas_scheduler.dispatch.router import ModeRouter
from nanofaas_scheduler.grpc_service import SchedulerService
from nanofaas_scheduler.registry_cache import FunctionCache

log = logging.getLogger(__name__)

SERVICE_NAME = scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name
_SWEEP_INTERVAL_S = 30.0
# Payloads up to the gateway's body limit (10 MiB by default) plus framing.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
]


def build_backend(name: str) -> Dispatcher:
    if name == "local":
        from nanofaas_scheduler.dispatch.local import LocalBackend

        return LocalBackend()
    raise SystemExit(f"NANOFAAS_BACKEND: unknown backend {name!r} (known: local)")


class SchedulerServer:
    """The scheduler process: owns the event-loop-side objects and their lifecycle."""

    def __init__(self, settings: Settings, backend: Dispatcher | None = None) -> None:
        self.settings = settings
        self._backend = backend
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self._health = HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self._callbacks = CallbackSender()
        self.scheduler: Scheduler | None = None

    async def start(self) -> None:
        settings = self.settings
        backend = self._backend or build_backend(settings.backend)
        self.scheduler = Scheduler(
            ModeRouter(backend, EndpointDispatcher()),
            idempotency_ttl_s=settings.idempotency_ttl_s,
            execution_ttl_s=settings.execution_ttl_s,
            max_executions=settings.max_executions,
            max_per_second=settings.max_per_second,
        )
        self.scheduler.on_end.append(self._callbacks)
        self._channel = grpc.aio.insecure_channel(settings.registry_address)
        functions = FunctionCache(
            registry_pb2_grpc.RegistryStub(self._channel), self.scheduler.function_changed
        )
        server = grpc.aio.server(options=_SERVER_OPTIONS)
        scheduler_pb2_grpc.add_SchedulerServicer_to_server(
            SchedulerService(self.scheduler, functions), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, "grpc.health.v1.Health", reflection.SERVICE_NAME], server
        )
        self.port = server.add_insecure_port(f"{settings.host}:{settings.port}")
        if self.port == 0:
            raise SystemExit(f"cannot listen on {settings.host}:{settings.port}")
        await server.start()
        self._server = server
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(functions.run()), loop.create_task(self._sweep())]
        for service in ("", SERVICE_NAME):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        log.info("scheduler listening", extra={"address": f"{settings.host}:{self.port}"})

    async def _sweep(self) -> None:
        assert self.scheduler is not None
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL_S)
            self.scheduler.evict_expired()

    async def stop(self) -> None:
        """Readiness goes false first, then in-flight work gets the grace period."""
        await self._health.enter_graceful_shutdown()
        if self.scheduler is not None:
            await self.scheduler.shutdown(self.settings.shutdown_grace_s)
        await self._callbacks.close()
        if self._server is not None:
            await self._server.stop(1.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._channel is not None:
            await self._channel.close(None)
        log.info("scheduler stopped")
