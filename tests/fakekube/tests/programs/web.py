"""A tiny web server run as a "container": binds the pod IP the fake kubelet hands it.

``GET /`` answers ``{"pod": ..., "version": ...}``; ``GET /healthz`` is 200 while ready and 503
otherwise; ``POST /ready`` and ``POST /unready`` flip readiness (so a test drives the probe);
``READY_AFTER`` delays readiness. SIGTERM exits 0 after logging, as a well-behaved server does.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

READY = threading.Event()


class Handler(BaseHTTPRequestHandler):
    def _send(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self._send(200 if READY.is_set() else 503, {"ready": READY.is_set()})
        elif self.path == "/livez":
            self._send(500 if os.environ.get("BROKEN_LIVENESS") else 200, {})
        else:
            self._send(200, {"pod": os.environ.get("HOSTNAME"), "version": os.environ.get("VERSION", "1")})

    def do_POST(self) -> None:
        if self.path == "/unready":
            READY.clear()
        elif self.path == "/ready":
            READY.set()
        self._send(200, {"ready": READY.is_set()})

    def log_message(self, format: str, *args: object) -> None:
        print(format % args, flush=True)


def main() -> None:
    host = os.environ.get("BIND") or os.environ["FAKEKUBE_POD_IP"]  # BIND: e.g. 0.0.0.0
    server = ThreadingHTTPServer((host, int(os.environ.get("PORT", "8080"))), Handler)

    def stop(*_: object) -> None:
        print("got SIGTERM, shutting down", flush=True)
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    delay = float(os.environ.get("READY_AFTER", "0"))
    if delay > 0:
        threading.Timer(delay, READY.set).start()
    else:
        READY.set()
    print(f"serving on {host}:{server.server_port}", flush=True)
    server.serve_forever()
    sys.exit(0)


if __name__ == "__main__":
    main()
