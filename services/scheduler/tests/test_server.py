"""The scheduler's gRPC server: health and reflection are served, readiness drops on stop."""

from __future__ import annotations

import socket

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.dispatch.stub import StubDispatcher
from nanofaas_scheduler.server import SchedulerServer


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_health_reflection_and_graceful_stop() -> None:
    settings = Settings(
        port=0, metrics_port=0, registry_address=f"127.0.0.1:{unused_port()}", shutdown_grace_s=1
    )
    server = SchedulerServer(settings, StubDispatcher(), metrics_registry=CollectorRegistry())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "nanofaas.v1.Scheduler"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for answer in reflection.ServerReflectionInfo(iter([request])):
                names = {service.name for service in answer.list_services_response.service}
                break
            assert {"nanofaas.v1.Scheduler", "grpc.health.v1.Health"} <= names
    finally:
        await server.stop()
