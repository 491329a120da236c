"""Dispatchers: where an execution runs. Backends live beside the interface."""

from nanofaas_scheduler.dispatch.base import Dispatcher, Invocation

__all__ = ["Dispatcher", "Invocation"]
