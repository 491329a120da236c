"""Dispatchers: where an attempt runs. Backends live beside the interface."""

from nanofaas_scheduler.dispatch.base import Attempt, BackendObserver, Dispatcher

__all__ = ["Attempt", "BackendObserver", "Dispatcher"]
