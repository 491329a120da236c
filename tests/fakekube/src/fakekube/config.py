"""What a test configures: images (as local commands) and the shortened timings of components."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Image:
    """What an image would run: its ENTRYPOINT and CMD (as local argv), env and working directory.

    Kubernetes semantics apply: a container's ``command`` replaces the entrypoint (and drops the
    CMD), its ``args`` replace the CMD.
    """

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None
    # Run by the container engine as the image itself (pod-network mode; kubelet/engine.py).
    engine: bool = False


@dataclass
class Timing:
    """Delays the real components use, shortened so tests stay fast (seconds)."""

    # Kubelet container restart back-off: base doubling per restart, capped (real: 10 s .. 300 s).
    restart_backoff: float = 0.5
    restart_backoff_max: float = 5.0
    # Job pod re-creation back-off after a failure (real: 10 s doubling, capped at 6 min).
    job_backoff: float = 0.2
    job_backoff_max: float = 2.0
    # Image pull: the delay before ErrImagePull turns into ImagePullBackOff.
    image_pull_backoff: float = 0.5
    # How often a Deployment's progress deadline and minReadySeconds are re-checked.
    deployment_resync: float = 1.0
