"""`nanofaas-watchdog --mode stdio|file [--] COMMAND [ARGS...]` (also `python -m nanofaas_runtime.watchdog`).

Serves the function HTTP protocol and runs COMMAND once per invocation. The mode
comes from `--mode`, else from NANOFAAS_RUNTIME_MODE. Settings (environment):
PORT (8080) and HOST (0.0.0.0), or an inherited listening socket in
NANOFAAS_LISTEN_FD; NANOFAAS_WATCHDOG_CONCURRENCY (64); INVOCATION_TIMEOUT_MS
(30000, for requests without X-Deadline-Ms); NANOFAAS_SINGLE_USE=1 (one
invocation, then exit); NANOFAAS_WATCHDOG_GRACE_MS (5000, for running
invocations after SIGTERM); FUNCTION_NAME (when a request has no
X-Function-Name); LOG_LEVEL.

Exit codes: 0 after SIGTERM/SIGINT or a single-use invocation; 2 bad usage or settings.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from nanofaas_runtime import asgi, lifeline, logs
from nanofaas_runtime.watchdog.app import MODES, SERVICE, Settings, WatchdogApp

EXIT_USAGE = 2
USAGE = "usage: nanofaas-watchdog --mode stdio|file [--] COMMAND [ARGS...]"
# How much longer than the grace uvicorn waits before it cancels requests itself (a backstop).
_SERVER_GRACE_MARGIN_S = 5.0

log = logging.getLogger("nanofaas_runtime.watchdog")


class UsageError(Exception):
    """The command line cannot be used (exit 2 with a one-line message)."""


def parse_args(args: Sequence[str]) -> tuple[str, tuple[str, ...]] | None:
    """(mode, command) from the command line and NANOFAAS_RUNTIME_MODE; None when help was asked for.

    Options end at `--` or at the first argument that is not one: everything after
    that is COMMAND and its own arguments, passed on untouched.
    """
    mode = ""
    rest = list(args)
    while rest and rest[0].startswith("-"):
        arg = rest.pop(0)
        if arg == "--":
            break
        if arg in ("-h", "--help"):
            return None
        if arg == "--mode":
            if not rest:
                raise UsageError("--mode needs a value")
            mode = rest.pop(0)
        elif arg.startswith("--mode="):
            mode = arg.partition("=")[2]
        else:
            raise UsageError(f"unknown option {arg!r}")
    mode = (mode or os.environ.get("NANOFAAS_RUNTIME_MODE", "")).strip().lower()
    if not mode:
        raise UsageError("no mode: give --mode or set NANOFAAS_RUNTIME_MODE")
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r} (expected stdio or file)")
    if not rest:
        raise UsageError("no COMMAND given")
    return mode, tuple(rest)


def settings_from_env(mode: str, command: tuple[str, ...]) -> Settings:
    """The settings the environment gives; asgi.InvalidSetting for an unusable value."""
    return Settings(
        mode=mode,
        command=command,
        concurrency=asgi.env_int("NANOFAAS_WATCHDOG_CONCURRENCY", 64, 1),
        default_timeout=asgi.env_int("INVOCATION_TIMEOUT_MS", 30_000, 1) / 1000.0,
        single_use=os.environ.get("NANOFAAS_SINGLE_USE", "").strip() == "1",
        grace=asgi.env_int("NANOFAAS_WATCHDOG_GRACE_MS", 5_000, 0) / 1000.0,
    )


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"nanofaas-watchdog: {message}\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        parsed = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        _fail(f"{exc} ({USAGE})")
    if parsed is None:
        sys.stdout.write(USAGE + "\n")
        return
    mode, command = parsed
    try:
        settings = settings_from_env(mode, command)
        listen = asgi.listen_from_env()
    except asgi.InvalidSetting as exc:
        _fail(str(exc))
    log_level = logs.configure(SERVICE)
    lifeline.install()
    app = WatchdogApp(settings, os.environ)
    log.info(
        "watchdog serving %s",
        command[0],
        extra={"mode": mode, "listen": listen.describe(), "concurrency": settings.concurrency},
    )
    backstop = settings.grace + _SERVER_GRACE_MARGIN_S
    asgi.serve(app, listen, log_level, lifecycle=app, graceful_timeout=backstop)
