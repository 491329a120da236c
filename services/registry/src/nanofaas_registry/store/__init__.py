"""Storage of function specs behind the FunctionStore interface."""

from nanofaas_registry.store.base import FunctionStore
from nanofaas_registry.store.memory import InMemoryFunctionStore

__all__ = ["FunctionStore", "InMemoryFunctionStore"]
