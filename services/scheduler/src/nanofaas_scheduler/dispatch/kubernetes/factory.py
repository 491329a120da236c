"""Build the Kubernetes backend from the scheduler's settings (the one place that loads the client)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry

from nanofaas_scheduler.config import Settings
from nanofaas_scheduler.dispatch.kubernetes.api import KubeApi, load_client
from nanofaas_scheduler.dispatch.kubernetes.backend import KubeOptions, KubernetesBackend
from nanofaas_scheduler.dispatch.kubernetes.metrics import KubeMetrics
from nanofaas_scheduler.dispatch.kubernetes.objects import PodOptions
from nanofaas_scheduler.dispatch.kubernetes.template import load_template


def options_from(settings: Settings, namespace: str) -> KubeOptions:
    pod = PodOptions(
        namespace=namespace,
        callback_url=settings.callback_url,
        image_pull_policy=settings.k8s_image_pull_policy,
        job_ttl_s=settings.k8s_job_ttl_s,
        template=load_template(settings.k8s_pod_template),
    )
    return KubeOptions(
        pod=pod,
        unschedulable_after_s=settings.k8s_unschedulable_timeout_s,
        start_after_s=settings.k8s_start_timeout_s,
        adopt_grace_s=settings.k8s_adopt_grace_s,
        template_path=settings.k8s_pod_template,
    )


def kubernetes_backend(settings: Settings, registry: CollectorRegistry = REGISTRY) -> KubernetesBackend:
    client, namespace = load_client(settings.k8s_namespace)
    metrics = KubeMetrics(registry)
    api = KubeApi(client, workers=settings.k8s_api_workers, listeners=[metrics])
    return KubernetesBackend(api, options_from(settings, namespace), metrics)
