"""`make up`: the whole platform on the local backend, in the foreground.

Starts registry, scheduler and gateway as child processes with one log stream
(each line prefixed with its service), deploys the example function and prints
how to invoke it. Ctrl-C, SIGTERM or SIGHUP (the terminal closed) stops
everything, function processes included: each service stops its own children
before it exits. When one service dies, the launcher says which and how (exit
code or signal) and stops the others. Should the launcher itself be killed
outright, the services get SIGTERM from the kernel (the parent-death signal)
and stop the same way.

Functions are kept in the registry's sqlite store under the data directory
(NANOFAAS_DATA_DIR, default $XDG_DATA_HOME/nanofaas or ~/.local/share/nanofaas),
so what was registered is there again after the next `make up`
(NANOFAAS_REGISTRY_STORE=memory forgets everything on exit instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("registry", "scheduler", "gateway")
COLORS = {"registry": "35", "scheduler": "36", "gateway": "33"}
# What stops the platform: Ctrl-C, `kill`, and the terminal going away.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def stop_with_parent() -> Callable[[], None] | None:
    """A pre-exec step: the service gets SIGTERM when the launcher dies, however it dies.

    The parent-death signal follows the thread that forked the child; every service is
    spawned from the event loop's (main) thread, which lives as long as the launcher.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    launcher = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != launcher:  # the launcher died before the signal was armed
            os._exit(1)

    return arm


def describe_exit(code: int) -> str:
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def first_dead(names: tuple[str, ...], children: list[asyncio.subprocess.Process]) -> str | None:
    """`<service> <how it ended>` for the first service that is no longer running, else None."""
    for name, child in zip(names, children, strict=False):
        if child.returncode is not None:
            return f"{name} {describe_exit(child.returncode)}"
    return None


def service_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        NANOFAAS_GATEWAY_PORT=str(args.port),
        NANOFAAS_CALLBACK_URL=f"http://127.0.0.1:{args.port}",
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("NANOFAAS_REGISTRY_STORE", "sqlite")
    if args.otlp_endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = args.otlp_endpoint
    return env


async def pipe(name: str, stream: asyncio.StreamReader) -> None:
    color = sys.stdout.isatty()
    prefix = f"\x1b[{COLORS[name]}m{name:>9} |\x1b[0m " if color else f"{name:>9} | "
    writable = True
    while line := await stream.readline():
        if not writable:
            continue  # keep draining, or the service blocks on a full pipe while stopping
        try:
            sys.stdout.write(prefix + line.decode(errors="replace"))
            sys.stdout.flush()
        except OSError:  # the terminal is gone (EIO after SIGHUP) or the reader left (EPIPE)
            writable = False


async def wait_ready(base: str, children: list[asyncio.subprocess.Process], timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            if (dead := first_dead(SERVICES, children)) is not None:
                raise SystemExit(f"{dead} during start-up (see its log above); stopping the others")
            try:
                async with session.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the platform did not become ready within 60 s")


def example_spec() -> dict[str, object]:
    """examples/hello/function.yaml's spec, plus where the local backend finds the handler."""
    return {
        "name": "hello",
        "image": "nanofaas/python-runtime:latest",
        "executionMode": "WARM",
        "env": {"PYTHONPATH": str(ROOT / "examples" / "hello")},
    }


async def deploy_example(base: str) -> None:
    """Registers the example, or updates it when a previous run left a different one behind.

    An unchanged example is left alone, so its revision (and its warm replicas) stay as they were.
    """
    spec = example_spec()
    url = f"{base}/v1/functions/hello"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            current = await response.json() if response.status == 200 else None
        if current is not None and all(current.get(key) == value for key, value in spec.items()):
            return
        if current is None:
            request = session.post(f"{base}/v1/functions", json=spec)
        else:
            request = session.put(url, json=spec)
        async with request as response:
            if response.status not in (200, 201):
                raise SystemExit(f"deploying the example failed: {response.status} {await response.text()}")


async def run(args: argparse.Namespace) -> int:
    env = service_env(args)
    children: list[asyncio.subprocess.Process] = []
    pipes: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    preexec = stop_with_parent()
    try:
        for name in SERVICES:
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"nanofaas_{name}",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=preexec,
            )
            children.append(child)
            assert child.stdout is not None
            pipes.append(loop.create_task(pipe(name, child.stdout)))
        base = f"http://127.0.0.1:{args.port}"
        ready = loop.create_task(wait_ready(base, children))
        stopped = loop.create_task(stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if stopped.done():
            ready.cancel()
            return 130
        ready.result()
        await deploy_example(base)
        print(
            "\nnanofaas is up on the local backend. Invoke the example function with:\n\n"
            f"  curl -s -X POST {base}/v1/functions/hello:invoke "
            '-H \'Content-Type: application/json\' -d \'{"input": {"name": "nanofaas"}}\'\n\n'
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        exits = [loop.create_task(child.wait()) for child in children]
        await asyncio.wait({stopped, *exits}, return_when=asyncio.FIRST_COMPLETED)
        if stopped.done():
            return 0
        notice = f"make up: {first_dead(SERVICES, children)}; stopping the others"
        with contextlib.suppress(OSError):  # the terminal may be gone
            print(notice, file=sys.stderr, flush=True)
        return 1
    finally:
        for child in reversed(children):
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                await asyncio.wait_for(child.wait(), 30)
            except TimeoutError:
                child.kill()
                await child.wait()
        await asyncio.gather(*pipes, return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("NANOFAAS_GATEWAY_PORT", "8080")))
    parser.add_argument(
        "--otlp-endpoint",
        default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        help="send traces to this OTLP endpoint",
    )
    try:
        return asyncio.run(run(parser.parse_args()))
    except SystemExit as exc:
        print(f"make up: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
