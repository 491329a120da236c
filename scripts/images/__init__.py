"""Builds the nanofaas container images (`make images`, `python -m scripts.images`).

The images install wheels made on the host, because nothing inside a container build can
reach a package index on an air-gapped machine; where the official Python base image cannot
be pulled, a Debian base is bootstrapped locally with mmdebstrap (see docs/containers.md).
"""
