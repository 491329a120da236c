"""`python -m nanofaas_runtime [--mode http|stdio|file|job|fork-server]`.

The mode may also come from env NANOFAAS_RUNTIME_MODE; default http.

Each mode imports only what it needs: the HTTP server never loads the watchdog
or aiohttp, and the one-shot modes never load uvicorn.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

MODES = ("http", "stdio", "file", "job", "fork-server")
EXIT_USAGE = 2
USAGE = (
    "usage: nanofaas-runtime [--mode http|stdio|file|job|fork-server]"
    "  (default: $NANOFAAS_RUNTIME_MODE or http)\n"
)


class UsageError(Exception):
    pass


def parse_mode(argv: Sequence[str]) -> str:
    """The mode from `--mode X` / `--mode=X`, else NANOFAAS_RUNTIME_MODE, else http."""
    mode = os.environ.get("NANOFAAS_RUNTIME_MODE", "").strip() or "http"
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--mode":
            if not args:
                raise UsageError("--mode needs a value")
            mode = args.pop(0)
        elif arg.startswith("--mode="):
            mode = arg.partition("=")[2]
        else:
            raise UsageError(f"unexpected argument {arg!r}")
    mode = mode.strip().lower()
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r} (expected one of {', '.join(MODES)})")
    return mode


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help") for arg in args):
        sys.stdout.write(USAGE)
        return
    try:
        mode = parse_mode(args)
    except UsageError as exc:
        sys.stderr.write(f"nanofaas-runtime: {exc}\n{USAGE}")
        raise SystemExit(EXIT_USAGE) from None
    if mode == "http":
        from nanofaas_runtime import capture, lifeline, logs
        from nanofaas_runtime.handler import load_handler_or_exit
        from nanofaas_runtime.server import serve

        log_level = logs.configure()
        handler = load_handler_or_exit()
        lifeline.install()
        capture.install()
        serve(handler, log_level)
        return
    if mode == "fork-server":
        from nanofaas_runtime import fork_server

        raise SystemExit(fork_server.run())
    if mode == "job":
        from nanofaas_runtime import job

        raise SystemExit(job.run())
    from nanofaas_runtime.oneshot import run

    raise SystemExit(run(mode))


if __name__ == "__main__":
    main()
