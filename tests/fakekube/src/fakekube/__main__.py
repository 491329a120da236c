"""``python -m fakekube --port N --kubeconfig PATH``: run a fake cluster until interrupted.

Images are mapped to local commands with ``--image NAME=ARGV`` (ARGV split like a shell would,
but never run through one), e.g. ``--image 'busybox=' --image 'app:1=python3 -m http.server'``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import threading

from .cluster import FakeCluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fakekube", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    parser.add_argument("--user", default="admin", help="the user the kubeconfig's token audits as")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="NAME=ARGV",
        help="an image and the local entrypoint it runs (empty: run the container's command)",
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cluster = FakeCluster(host=args.host, port=args.port, nodes=args.nodes)
    for spec in args.image:
        name, _, command = spec.partition("=")
        cluster.add_image(name, shlex.split(command))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with cluster:
        cluster.write_kubeconfig(args.kubeconfig, user=args.user)
        print(f"fakekube serving {cluster.url}, kubeconfig {args.kubeconfig}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
