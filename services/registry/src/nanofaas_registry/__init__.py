"""nanofaas registry: the source of truth for function definitions, served over gRPC."""

__all__ = ["SERVICE_NAME"]

# The fully qualified gRPC service name, used for health checks and reflection.
SERVICE_NAME = "nanofaas.v1.Registry"
