"""The e2e suite's invocation tests, unchanged, on the kubernetes backend against the fake cluster.

Every test of these tests/e2e modules runs here with this directory's fixtures (conftest.py:
the platform with NANOFAAS_BACKEND=kubernetes). The few that assert local-backend behaviour
are deselected in conftest.py (LOCAL_ONLY, each with its reason).
"""

from __future__ import annotations

from typing import Any

from .suite import e2e_module

MODULES = (
    "test_invoke_modes",
    "test_semantics",
    "test_scheduling_policies",
    "test_error_codes",
    "test_callback_redelivery",
    "test_functions_api",
)


def _defined_in_suite(value: Any) -> bool:
    return callable(value) and str(getattr(value, "__module__", "")).startswith("nanofaas_e2e.")


# Tests and the module-level fixtures they use (e.g. endpoint_server), as if defined here.
globals().update(
    {
        name: value
        for module in map(e2e_module, MODULES)
        for name, value in vars(module).items()
        if not name.startswith("_") and _defined_in_suite(value)
    }
)
