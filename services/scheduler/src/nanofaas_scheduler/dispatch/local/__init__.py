"""The local backend: function processes on this machine."""

from nanofaas_scheduler.dispatch.local.backend import LocalBackend

__all__ = ["LocalBackend"]
