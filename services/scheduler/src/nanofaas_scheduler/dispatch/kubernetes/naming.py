"""Names, labels and annotations of the Kubernetes objects the backend owns.

Function names (registry: `^[a-zA-Z][a-zA-Z0-9._-]{0,62}$`) are not all valid
object names (DNS-1123 / DNS-1035 labels: lower case, digits and '-', at most
63 characters) nor label values. Wherever the mapping loses information (case,
'.', '_', a trailing '-', length), a short hash of the exact name is appended,
so two functions never share an object name and a name is the same on every
start. The exact name always travels in the annotation `nanofaas.io/function-name`.
"""

from __future__ import annotations

import hashlib
import re

MANAGED_BY = "app.kubernetes.io/managed-by"
APP_NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
FUNCTION_LABEL = "nanofaas.io/function"
EXECUTION_LABEL = "nanofaas.io/execution-id"
ATTEMPT_LABEL = "nanofaas.io/attempt"
FUNCTION_ANNOTATION = "nanofaas.io/function-name"
TRACE_ANNOTATION = "nanofaas.io/trace-id"
IDEMPOTENCY_ANNOTATION = "nanofaas.io/idempotency-key"
REVISION_ANNOTATION = "nanofaas.io/spec-revision"

MANAGER = "nanofaas"
COMPONENT_JOB = "job"
COMPONENT_WARM = "warm"

_MAX = 63
_HASH_CHARS = 8
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _digest(exact: str) -> str:
    return hashlib.sha256(exact.encode()).hexdigest()[:_HASH_CHARS]


def dns_name(exact: str, max_length: int = _MAX) -> str:
    """A DNS-1035 label for `exact` (valid for Services, Deployments and Jobs alike), stable.

    Kept as is when already valid and short enough; otherwise lower-cased, every
    other character turned into '-', cut, and suffixed with `-<hash of exact>`.
    """
    if len(exact) <= max_length and _DNS_LABEL.fullmatch(exact):
        return exact
    mapped = re.sub(r"[^a-z0-9]+", "-", exact.lower()).strip("-")
    if not mapped or not mapped[0].isalpha():
        mapped = "f-" + mapped
    head = mapped[: max_length - _HASH_CHARS - 1].rstrip("-")
    return f"{head}-{_digest(exact)}"


def label_value(exact: str) -> str:
    """`exact` as a label value: itself when valid, else a mapped name with its hash suffix."""
    if len(exact) <= _MAX and _LABEL_VALUE.fullmatch(exact):
        return exact
    mapped = re.sub(r"[^A-Za-z0-9_.-]+", "-", exact)
    head = mapped[: _MAX - _HASH_CHARS - 1].strip("-_.")
    return f"{head}-{_digest(exact)}" if head else _digest(exact)


def function_object_name(function: str) -> str:
    """The Deployment and Service of a WARM function: `fn-<function>`."""
    return dns_name("fn-" + function)


def job_name(function: str, execution_id: str, attempt: int) -> str:
    """One Job per attempt: `<function, at most 30>-<execution id, 16>-<attempt>`.

    Short enough that the Job controller's pod names (job name + 6) stay valid.
    """
    suffix = f"-{execution_id[:16].lower()}-{attempt}"
    return dns_name(function, 30) + suffix


def common_labels(function: str, component: str) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        APP_NAME: label_value(function),
        COMPONENT: component,
        FUNCTION_LABEL: label_value(function),
    }


def selector(function: str | None, component: str | None) -> str:
    """A label selector of our objects, of one function and/or component."""
    parts = [f"{MANAGED_BY}={MANAGER}"]
    if component is not None:
        parts.append(f"{COMPONENT}={component}")
    if function is not None:
        parts.append(f"{FUNCTION_LABEL}={label_value(function)}")
    return ",".join(parts)
