"""The pod network: a network namespace per pod, joined by one bridge, as a CNI plugin sets up.

Opt-in (``FakeCluster(pod_network=True)``; root and iproute2 needed). Nothing is added to the
host's own network namespace:

* the **cluster network** is a namespace of its own (``fakekube-<run>``) holding a bridge with
  each node's gateway address ``10.244.<node>.1`` and the ``kubernetes`` Service address
  ``10.96.0.1`` (where the API server also listens, port 443);
* each **pod** gets a namespace (``fakekube-<run>-<node>-<n>``) with ``lo``, and ``eth0`` (a veth
  whose peer is on the bridge) holding the pod IP ``10.244.<node>.<n>/16``, default route via its
  node's gateway. So the containers of one pod share ``localhost`` and nothing else, and pods
  reach each other and the API server by address, as on a real cluster;
* the test (in the host's namespace) reaches a pod through :meth:`PodNetwork.forward_to_pod`
  (as ``kubectl port-forward`` does), and pods reach a server of the test through
  :meth:`PodNetwork.expose_host_port` (listening on the gateway address).

The event loop never enters a namespace: sockets are made in one by a throwaway thread
(:mod:`.netns`) and then used from the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import subprocess
from collections.abc import Awaitable, Callable
from typing import Any

from . import netns

log = logging.getLogger("fakekube.network")

POD_PREFIX = "10.244"
SERVICE_HOST = "10.96.0.1"
SERVICE_PORT = 443
BRIDGE = "br0"

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Dial = Callable[[str, int], Awaitable[Streams]]


class NetworkError(RuntimeError):
    """An ``ip`` command failed: the pod cannot get its network."""


def _ip_sync(*args: str, batch: str | None = None) -> None:
    done = subprocess.run(
        ["ip", *args, *(["-batch", "-"] if batch is not None else [])],
        input=batch,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {done.stderr.strip()}")


async def _ip(*args: str, batch: str | None = None) -> None:
    process = await asyncio.create_subprocess_exec(
        "ip",
        *args,
        *(["-batch", "-"] if batch is not None else []),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(batch.encode() if batch else None), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise NetworkError(f"ip {' '.join(args)}: no answer in 30s") from None
    if process.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {err.decode(errors='replace').strip()}")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def splice(a: Streams, b: Streams) -> None:
    """Copy both ways until both sides are done (a TCP relay).

    Cancelling it (the relay is being shut down) closes both connections and returns: it runs
    as a stream server's connection task, which must not end cancelled (asyncio logs that).
    """
    try:
        await asyncio.gather(_pipe(a[0], b[1]), _pipe(b[0], a[1]))
    except asyncio.CancelledError:
        a[1].close()
        b[1].close()


def loopback_listener() -> socket.socket:
    """A listening socket on the host's 127.0.0.1, on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Relays:
    """TCP relays: each connection accepted on a socket is spliced to one that ``connect`` makes."""

    def __init__(self) -> None:
        self._servers: list[asyncio.AbstractServer] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def serve(self, sock: socket.socket, connect: Callable[[], Awaitable[Streams]]) -> int:
        """Relay from ``sock`` (listening); returns its port."""

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                other = await asyncio.wait_for(connect(), 10)
            except (OSError, TimeoutError, asyncio.CancelledError):
                writer.close()
                self._tasks.discard(task)
                return
            await splice((reader, writer), other)
            self._tasks.discard(task)

        self._servers.append(await asyncio.start_server(accepted, sock=sock))
        return int(sock.getsockname()[1])

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._servers.clear()


def gateway_of(node_index: int) -> str:
    """The gateway (bridge) address of node ``node_index`` (1-based): pods of that node use it."""
    return f"{POD_PREFIX}.{node_index}.1"


class PodNetwork:
    """The cluster network namespace, the pods' namespaces and the relays into them."""

    def __init__(self, nodes: int) -> None:
        self.name = f"fakekube-{secrets.token_hex(3)}"
        self.nodes = nodes
        self.pods: dict[str, str] = {}  # pod IP -> its namespace's name
        self._relays = Relays()
        self.created = False

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    # -- set-up and tear-down (blocking; called from the cluster's start and stop) ---------------
    def create(self) -> None:
        _ip_sync("netns", "add", self.name)
        self.created = True
        commands = [f"link add {BRIDGE} type bridge", "link set lo up", f"link set {BRIDGE} up"]
        commands += [f"addr add {gateway_of(i + 1)}/16 dev {BRIDGE}" for i in range(self.nodes)]
        commands.append(f"addr add {SERVICE_HOST}/32 dev {BRIDGE}")
        _ip_sync("-n", self.name, batch="\n".join(commands) + "\n")

    def delete(self) -> None:
        """Remove every namespace this network made (pods' first); safe to call twice."""
        for name in list(self.pods.values()):
            with contextlib.suppress(NetworkError, subprocess.TimeoutExpired):
                _ip_sync("netns", "del", name)
        self.pods.clear()
        if self.created:
            with contextlib.suppress(NetworkError, subprocess.TimeoutExpired):
                _ip_sync("netns", "del", self.name)
            self.created = False

    async def close(self) -> None:
        await self._relays.close()

    # -- pods ------------------------------------------------------------------------------------
    async def add_pod(self, ip: str, pid: int | None = None) -> str:
        """Give the pod a namespace with ``eth0`` = ``ip``; returns the namespace's path.

        ``pid``: the namespace is that process's (a pause container's), named rather than made.
        """
        node, host = ip.split(".")[2:4]
        name = f"{self.name}-{node}-{host}"
        veth = f"fk{node}x{host}"
        if pid is None:
            await _ip("netns", "add", name)
        else:
            await _ip("netns", "attach", name, str(pid))
        self.pods[ip] = name
        await _ip(
            "-n",
            self.name,
            batch=f"link add {veth} type veth peer name eth0 netns {name}\n"
            f"link set {veth} master {BRIDGE}\nlink set {veth} up\n",
        )
        await _ip(
            "-n",
            name,
            batch=f"link set lo up\naddr add {ip}/16 dev eth0\nlink set eth0 up\n"
            f"route add default via {POD_PREFIX}.{node}.1\n",
        )
        return f"/run/netns/{name}"

    async def remove_pod(self, ip: str) -> None:
        name = self.pods.pop(ip, None)
        if name is not None:
            try:
                await _ip("netns", "del", name)
            except NetworkError:
                log.warning("could not delete network namespace %s", name, exc_info=True)

    # -- traffic ---------------------------------------------------------------------------------
    async def dial(self, host: str, port: int) -> Streams:
        """A TCP connection to ``host:port`` made from the cluster network (where the kubelet is)."""
        sock = netns.socket_in(self.path)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    def listener(self, host: str, port: int) -> socket.socket:
        return netns.listener_in(self.path, host, port)

    async def forward_to_pod(self, ip: str, port: int) -> int:
        """Listen on the host's 127.0.0.1 (a free port, returned) and relay to ``ip:port``."""
        return await self._relays.serve(loopback_listener(), lambda: self.dial(ip, port))

    async def expose_host_port(self, port: int, node_index: int = 1) -> str:
        """Make the host's 127.0.0.1:``port`` reachable from pods; returns ``address:port``."""
        address = gateway_of(node_index)
        await self._relays.serve(
            self.listener(address, port), lambda: asyncio.open_connection("127.0.0.1", port)
        )
        return f"{address}:{port}"
