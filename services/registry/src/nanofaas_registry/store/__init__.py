"""Storage of function specs behind the FunctionStore interface, chosen by NANOFAAS_REGISTRY_STORE."""

from __future__ import annotations

from nanofaas_registry.config import RegistrySettings
from nanofaas_registry.store.base import FunctionStore, StoreError
from nanofaas_registry.store.memory import InMemoryFunctionStore
from nanofaas_registry.store.sqlite import SqliteFunctionStore


async def open_store(settings: RegistrySettings) -> FunctionStore:
    """The store settings.store names, opened; raises StoreError when it cannot be used."""
    if settings.store == "sqlite":
        return await SqliteFunctionStore.open(settings.data_dir)
    if settings.store == "kubernetes":
        # Imported only here: the client is big, and only this store needs it.
        from nanofaas_registry.store.kubernetes import KubernetesFunctionStore, api_client

        return await KubernetesFunctionStore.open(
            api_client(in_cluster=settings.in_cluster), settings.namespace
        )
    return InMemoryFunctionStore()


__all__ = ["FunctionStore", "InMemoryFunctionStore", "SqliteFunctionStore", "StoreError", "open_store"]
