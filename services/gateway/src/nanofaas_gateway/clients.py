"""gRPC channels and stubs to the registry and the scheduler."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nanofaas.v1 import registry_pb2_grpc, scheduler_pb2_grpc
from nanofaas_gateway.api_auth import TokenFile, bearer_credentials
from nanofaas_gateway.config import Settings
from nanofaas_gateway.scheduler_stream import SchedulerStream
from nanofaas_gateway.tracing import client_interceptors

# Invocation payloads may be as large as the body limit and outputs larger still;
# gRPC's default 4 MiB receive limit would reject them.
_MIN_MESSAGE_BYTES = 64 * 1024 * 1024
_MESSAGE_MARGIN_BYTES = 1024 * 1024


def max_message_bytes(max_body_bytes: int) -> int:
    return max(_MIN_MESSAGE_BYTES, max_body_bytes + _MESSAGE_MARGIN_BYTES)


def _channel_options(max_body_bytes: int) -> list[tuple[str, int]]:
    limit = max_message_bytes(max_body_bytes)
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
    ]


# The initial metadata of a registry mutation: the epoch its revision belongs to (registry.proto).
REGISTRY_EPOCH_METADATA = "nanofaas-registry-epoch"


class GatewayClients:
    """The gateway's two gRPC connections plus the registry revision it has acknowledged.

    The revision makes invocations read-your-writes: the scheduler resolves a
    function at a registry revision no older than a change this gateway answered.
    """

    def __init__(
        self,
        registry_channel: grpc.aio.Channel,
        scheduler_channel: grpc.aio.Channel,
        max_message_bytes: int = 0,
    ) -> None:
        self._registry_channel = registry_channel
        self._scheduler_channel = scheduler_channel
        self.registry = registry_pb2_grpc.RegistryStub(registry_channel)
        self.scheduler = scheduler_pb2_grpc.SchedulerStub(scheduler_channel)
        # Invoke and enqueue: the hot path, multiplexed over one stream.
        self.invocations = SchedulerStream(self.scheduler, max_message_bytes)
        self._registry_health = health_pb2_grpc.HealthStub(registry_channel)
        self._scheduler_health = health_pb2_grpc.HealthStub(scheduler_channel)
        self._min_registry_revision = 0
        self._min_registry_epoch = 0

    @classmethod
    def connect(cls, settings: Settings) -> GatewayClients:
        """Open lazy channels (no I/O until the first call); call inside the serving event loop.

        With tracing on, registry calls get client spans. Scheduler calls do not: Invoke
        and Enqueue carry the gateway span's traceparent in the request itself.
        """
        options = _channel_options(settings.max_body_bytes)
        # With API authentication on, every call carries the platform's own token.
        credentials = (
            bearer_credentials(TokenFile(settings.api_tokens_file)) if settings.api_tokens_file else []
        )
        return cls(
            grpc.aio.insecure_channel(
                settings.registry_address,
                options=options,
                interceptors=[*credentials, *client_interceptors()] or None,
            ),
            grpc.aio.insecure_channel(
                settings.scheduler_address, options=options, interceptors=credentials or None
            ),
            max_message_bytes(settings.max_body_bytes),
        )

    @property
    def min_registry_revision(self) -> int:
        return self._min_registry_revision

    @property
    def min_registry_epoch(self) -> int:
        return self._min_registry_epoch

    def observe_revision(self, revision: int, epoch: int = 0) -> None:
        """Remember a revision returned by a registry mutation (monotonic within the registry's epoch).

        A later epoch means the registry restarted and may count from 0 again: its revision
        replaces the mark, so invocations never wait for a revision it has not reached yet.
        An answer from an earlier epoch (it crossed the restart) changes nothing.
        """
        if epoch > self._min_registry_epoch:
            self._min_registry_epoch, self._min_registry_revision = epoch, revision
        elif epoch == self._min_registry_epoch:
            self._min_registry_revision = max(self._min_registry_revision, revision)

    async def observe_mutation(self, call: grpc.aio.Call, revision: int) -> None:
        """observe_revision with the epoch the registry sent as the call's initial metadata."""
        epoch = 0
        for key, value in await call.initial_metadata() or ():
            if key == REGISTRY_EPOCH_METADATA and isinstance(value, str) and value.isdigit():
                epoch = int(value)
        self.observe_revision(revision, epoch)

    async def unready_services(self, timeout_s: float) -> list[str]:
        """Names of the backend services whose gRPC health check is not SERVING."""
        registry_ok, scheduler_ok = await asyncio.gather(
            _is_serving(self._registry_health, timeout_s),
            _is_serving(self._scheduler_health, timeout_s),
        )
        return [name for name, ok in (("registry", registry_ok), ("scheduler", scheduler_ok)) if not ok]

    async def close(self) -> None:
        await self.invocations.close()
        await asyncio.gather(self._registry_channel.close(None), self._scheduler_channel.close(None))


async def _is_serving(stub: health_pb2_grpc.HealthStub, timeout_s: float) -> bool:
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
    except grpc.aio.AioRpcError:
        return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
