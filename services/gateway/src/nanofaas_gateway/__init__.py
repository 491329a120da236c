"""nanofaas REST gateway: the public REST API in front of the registry and scheduler."""

from nanofaas_gateway.app import create_app
from nanofaas_gateway.clients import GatewayClients
from nanofaas_gateway.config import Settings

__all__ = ["GatewayClients", "Settings", "create_app"]
