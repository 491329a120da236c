"""A fake Kubernetes cluster for tests: the real API over HTTP, controllers, and a process kubelet.

Start one with :class:`FakeCluster` (or the ``fake_cluster`` pytest fixture, or
``python -m fakekube``); point the official client or kubectl at its kubeconfig.
See docs/fakekube.md for what is faithful and what is simplified.
"""

from .cluster import FakeCluster
from .config import Image, Timing
from .resources import ResourceType

__all__ = ["FakeCluster", "Image", "ResourceType", "Timing"]
