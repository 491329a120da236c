"""What images exist and which of our packages each one installs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Directory of each of our installable packages, by distribution name.
PACKAGE_DIRS: dict[str, Path] = {
    "nanofaas-proto": ROOT / "proto" / "python",
    "nanofaas-runtime": ROOT / "runtimes" / "python",
    "nanofaas-registry": ROOT / "services" / "registry",
    "nanofaas-scheduler": ROOT / "services" / "scheduler",
    "nanofaas-gateway": ROOT / "services" / "gateway",
}

# The official base a user with Docker Hub gets (the Dockerfiles' ARG BASE_IMAGE default).
DEFAULT_BASE_IMAGE = "python:3.11-slim-bookworm"


@dataclass(frozen=True)
class ImageSpec:
    """One image: its repository name, its Dockerfile and the packages it installs."""

    repository: str
    dockerfile: Path
    packages: tuple[str, ...]

    @property
    def short_name(self) -> str:
        """`nanofaas/gateway` -> `gateway`."""
        return self.repository.split("/", 1)[1]

    def ref(self, tag: str) -> str:
        return f"{self.repository}:{tag}"


IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec(
        "nanofaas/gateway",
        ROOT / "services" / "gateway" / "Dockerfile",
        ("nanofaas-proto", "nanofaas-gateway"),
    ),
    ImageSpec(
        "nanofaas/scheduler",
        ROOT / "services" / "scheduler" / "Dockerfile",
        ("nanofaas-proto", "nanofaas-scheduler"),
    ),
    ImageSpec(
        "nanofaas/registry",
        ROOT / "services" / "registry" / "Dockerfile",
        ("nanofaas-proto", "nanofaas-registry"),
    ),
    ImageSpec(
        "nanofaas/python-runtime",
        ROOT / "runtimes" / "python" / "Dockerfile",
        ("nanofaas-runtime",),
    ),
)
