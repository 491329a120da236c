"""Run as a container in pod-network mode: ``GET /`` on port 8081 reports what the pod sees.

The JSON report has the mounted ServiceAccount files (never the token itself), a ConfigMap volume, whether
the root file system is writable, whether ``LOCAL_PORT`` on localhost and ``REMOTE`` (host:port)
answer, and the number of pods an in-cluster API client lists in its own namespace.
"""

# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
import os
import signal
import socket
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client, config

ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return False
    return True


def root_writable() -> bool:
    try:
        Path("/fakekube-write-test").touch()
    except OSError:
        return False
    Path("/fakekube-write-test").unlink()
    return True


def report() -> dict[str, Any]:
    namespace = (ACCOUNT / "namespace").read_text()
    config.load_incluster_config()
    pods = client.CoreV1Api().list_namespaced_pod(namespace).items
    return {
        "namespace": namespace,
        "tokenMounted": bool((ACCOUNT / "token").read_text()),
        "caMounted": (ACCOUNT / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE"),
        "service": f"{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}",
        "greeting": Path("/etc/settings/greeting").read_text(),
        "rootWritable": root_writable(),
        "tmpWritable": os.access("/tmp", os.W_OK),
        "local": reachable(f"127.0.0.1:{os.environ['LOCAL_PORT']}"),
        "remote": reachable(os.environ["REMOTE"]) if os.environ.get("REMOTE") else None,
        "pods": len(pods),
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        data = json.dumps(report()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(HTTPServer):
    def server_bind(self) -> None:  # no getfqdn(): there is no DNS in the pod
        self.socket.bind(self.server_address)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    Server(("0.0.0.0", 8081), Handler).serve_forever()


if __name__ == "__main__":
    main()
