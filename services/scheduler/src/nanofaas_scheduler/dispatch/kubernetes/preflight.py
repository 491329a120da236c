"""The operator's pod template, judged by the cluster before the scheduler serves.

`template.check_template` checks the file's shape; what it may hold is the cluster's
PodSpec, which only the cluster knows exactly (its version, its admission). So at start
the backend builds a sample Job from the template, exactly as an attempt would, and
creates it with `dryRun=All` and `fieldValidation=Strict`: the API server validates and
admits it without storing anything. A refusal (400 unknown field / wrong type, 422
invalid value) stops the scheduler with the server's message, which names the field.
A cluster that cannot answer (unreachable, 5xx, forbidden) does not: the template is
checked again by every real create, and an API outage must not stop other backends.
"""

from __future__ import annotations

import logging

from nanofaas.v1 import types_pb2
from nanofaas_scheduler.core.execution import Request
from nanofaas_scheduler.dispatch.base import Attempt
from nanofaas_scheduler.dispatch.kubernetes.api import JOBS, ApiError, KubeApi
from nanofaas_scheduler.dispatch.kubernetes.objects import RUNTIME_IMAGE, PodOptions, build_job
from nanofaas_scheduler.dispatch.kubernetes.template import TemplateError

log = logging.getLogger(__name__)

SAMPLE_FUNCTION = "nanofaas-template-check"
_REFUSED = frozenset({400, 422})


def sample_attempt() -> Attempt:
    """An attempt of an HTTP function using every pod-level feature a spec can ask for."""
    spec = types_pb2.FunctionSpec(
        name=SAMPLE_FUNCTION,
        image=f"{RUNTIME_IMAGE}:latest",
        timeout_ms=1000,
        concurrency=1,
        runtime_mode=types_pb2.RUNTIME_MODE_HTTP,
        execution_mode=types_pb2.EXECUTION_MODE_JOB,
        resources=types_pb2.Resources(cpu="100m", memory="64Mi"),
    )
    return Attempt(
        execution_id="0" * 32,
        function_name=SAMPLE_FUNCTION,
        spec=spec,
        request=Request(b"", "application/json", {}),
        number=1,
        deadline_epoch=0.0,
        timeout=1.0,
        timeout_ms=1000,
        trace_id="0" * 32,
    )


async def check_template_on_cluster(api: KubeApi, options: PodOptions) -> None:
    """Raise TemplateError when the cluster refuses a Job built from the template."""
    job = build_job(sample_attempt(), options)
    try:
        await api.create(JOBS, options.namespace, job, dry_run=True)
    except ApiError as exc:
        if exc.status in _REFUSED:
            raise TemplateError(
                "the cluster refuses a Job built from it (a dry-run create; field paths are the Job's: "
                f"spec.template is the pod template): {exc}"
            ) from exc
        log.warning(
            "could not check the pod template against the cluster (dry-run create)",
            extra={"error": str(exc)},
        )
