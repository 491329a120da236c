"""The fake cluster: API server, controllers and kubelets on one event loop in a background thread.

Tests use the synchronous methods here (from their own thread) to start and stop the cluster,
write kubeconfigs, map images to local commands, inject faults and read the audit record; the
code under test talks to :attr:`FakeCluster.url` over real HTTP like it would to kube-apiserver.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import contextlib
import importlib
import logging
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .audit import Audit
from .config import Image, Timing
from .controllers.deployments import DeploymentController, ReplicaSetController
from .controllers.endpointslices import EndpointSliceController
from .controllers.gc import GarbageCollector
from .controllers.jobs import JobController
from .controllers.namespaces import NamespaceController
from .controllers.nodes import lose_node
from .controllers.scheduler import Scheduler
from .crds import CrdController
from .faults import FaultInjector, FaultRule
from .kubelet.engine import Engine
from .kubelet.kubelet import Kubelet
from .kubelet.logs import ClusterLogs
from .kubelet.network import SERVICE_HOST, SERVICE_PORT, PodNetwork, gateway_of
from .networks import NetworkClaim
from .resources import NAMESPACE_KEY, NODE_KEY, ResourceRegistry, ResourceType
from .server import ApiServer
from .store import Store
from .tls import Certificates, make_certificates

log = logging.getLogger("fakekube")
yaml: Any = importlib.import_module("yaml")
T = TypeVar("T")

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class FakeCluster:
    """A running fake cluster. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(
        self,
        *,
        nodes: int = 1,
        history_size: int = 5000,
        bookmark_interval: float = 5.0,
        host: str = "127.0.0.1",
        port: int = 0,
        work_dir: str | Path | None = None,
        timing: Timing | None = None,
        run_kubelet: bool = True,
        tls: bool = True,
        pod_network: bool = False,
    ) -> None:
        self.registry = ResourceRegistry()
        self.audit = Audit()
        self.faults = FaultInjector()
        self.timing = timing or Timing()
        self.node_names = [f"fakekube-node-{i + 1}" for i in range(nodes)]
        self.images: dict[str, Image] = {}
        self.unpullable: set[str] = set()
        self._history_size = history_size
        self._bookmark_interval = bookmark_interval
        self._host, self._port = host, port
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="fakekube-"))
        self._run_kubelet = run_kubelet
        self._tls = tls
        self.certificates: Certificates | None = None
        self._tokens: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._components: list[Any] = []
        self.kubelets: dict[str, Kubelet] = {}
        self.store: Store | None = None
        self.server: ApiServer | None = None
        self.port = 0
        # Pod IPs come from a loopback /16 no other cluster on this machine holds (networks.py);
        # with ``pod_network`` (root only) each pod has a network namespace of its own instead
        # (kubelet/network.py), in a cluster network apart from the host's.
        self._claim = NetworkClaim()
        self.pod_network = self._claim.prefix
        self.network: PodNetwork | None = PodNetwork(nodes) if pod_network else None
        # Images run by docker as themselves (add_engine_image), in pod-network mode only.
        self.engine: Engine | None = Engine(self.network.name) if self.network is not None else None
        self.kubeconfig = self.work_dir / "kubeconfig"

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> FakeCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://{self._host}:{self.port}"

    def start(self) -> FakeCluster:
        if self._thread is not None:
            return self
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fakekube", daemon=True)
        self._thread.start()
        ready.result(timeout=30)
        atexit.register(self.stop)
        self.write_kubeconfig(self.kubeconfig)
        return self

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_async())
        except BaseException as error:
            ready.set_exception(error)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start_async(self) -> None:
        store = Store(self.registry, history_size=self._history_size)
        self.store = store
        store.on_crd = CrdController(store).on_change
        controllers: list[Any] = [
            NamespaceController(store),
            GarbageCollector(store),
            Scheduler(store),
            JobController(store, self.timing),
            DeploymentController(store, self.timing),
            ReplicaSetController(store),
            EndpointSliceController(store),
        ]
        for namespace in DEFAULT_NAMESPACES:
            store.create(self.registry.by_key(NAMESPACE_KEY), None, {"metadata": {"name": namespace}})
        self.server = ApiServer(
            store,
            self.audit,
            self.faults,
            tokens=self._tokens,
            logs=ClusterLogs(self),
            bookmark_interval=self._bookmark_interval,
        )
        if self._tls:
            extra = (SERVICE_HOST,) if self.network is not None else ()
            self.certificates = make_certificates(self.work_dir / "pki", self._host, extra)
        context = self.certificates.server_context() if self.certificates else None
        self.port = await self.server.start(self._host, self._port, context)
        if self.network is not None:
            self.network.create()
            await self.server.serve_socket(self.network.listener(SERVICE_HOST, SERVICE_PORT), context)
        for index, node in enumerate(self.node_names):
            node_ip = f"{self.pod_network}.{index + 1}.1" if self.network is None else gateway_of(index + 1)
            kubelet = Kubelet(store, node, self, node_ip)
            self.kubelets[node] = kubelet
            kubelet.register_node()
        for controller in controllers:
            controller.start()
        self._components = controllers
        if self._run_kubelet:
            for kubelet in self.kubelets.values():
                kubelet.start()

    def stop(self) -> None:
        """Stop everything: every container process is killed (its whole process group)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._thread = None
        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            asyncio.run_coroutine_threadsafe(self._stop_async(), loop).result(timeout=30)
        # A last resort if the loop was wedged: no process group outlives the cluster.
        for kubelet in self.kubelets.values():
            kubelet.kill_all_now()
        if self.engine is not None and self.engine.used:
            self.engine.remove_all_blocking()
        if self.network is not None:
            self.network.delete()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._claim.release()
        atexit.unregister(self.stop)
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    async def _stop_async(self) -> None:
        for kubelet in self.kubelets.values():
            await kubelet.stop()
        for component in self._components:
            await component.stop()
        if self.engine is not None and self.engine.used:
            await self.engine.remove_all()
        if self.network is not None:
            await self.network.close()
        if self.server is not None:
            await self.server.stop()

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the cluster's loop thread (the store is only touched there)."""

        async def run() -> T:
            return fn()

        return self.run(run(), timeout)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the cluster is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    # -- clients ---------------------------------------------------------------------------------
    def token_for(self, user: str) -> str:
        for token, name in self._tokens.items():
            if name == user:
                return token
        token = secrets.token_urlsafe(24)
        self._tokens[token] = user
        return token

    def write_kubeconfig(self, path: str | Path, *, user: str = "test", namespace: str = "default") -> Path:
        """A kubeconfig for ``kubernetes.config.load_kube_config`` and kubectl; requests audit as ``user``."""
        target = Path(path)
        cluster: dict[str, str] = {"server": self.url}
        if self.certificates is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.certificates.ca_pem).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": "fakekube", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": self.token_for(user)}}],
            "contexts": [
                {"name": "fakekube", "context": {"cluster": "fakekube", "user": user, "namespace": namespace}}
            ],
            "current-context": "fakekube",
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        target.chmod(0o600)
        return target

    # -- pod network (``pod_network=True``) -------------------------------------------------------
    def _network(self) -> PodNetwork:
        if self.network is None:
            raise RuntimeError("the cluster runs without a pod network (FakeCluster(pod_network=True))")
        return self.network

    def port_forward(self, namespace: str, name: str, port: int) -> int:
        """A local port on 127.0.0.1 relaying to the pod's ``port``, as ``kubectl port-forward``."""
        pod = self.get("pods", namespace, name)
        ip = ((pod or {}).get("status") or {}).get("podIP")
        if not ip:
            raise LookupError(f"pod {namespace}/{name} has no IP")
        network = self._network()
        return self.run(network.forward_to_pod(str(ip), port))

    def expose_host_port(self, port: int) -> str:
        """``address:port`` where pods reach this machine's 127.0.0.1:``port`` (a test's server)."""
        network = self._network()
        return self.run(network.expose_host_port(port))

    # -- images ----------------------------------------------------------------------------------
    def add_image(
        self,
        image: str,
        entrypoint: Sequence[str] = (),
        cmd: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        working_dir: str | None = None,
    ) -> None:
        """Let ``image`` be "pulled": its containers run ``entrypoint + cmd`` as local processes."""
        self.images[image] = Image(tuple(entrypoint), tuple(cmd), tuple((env or {}).items()), working_dir)
        self.unpullable.discard(image)

    def add_engine_image(self, image: str) -> None:
        """Let ``image`` run as itself in the container engine (docker; it must be present
        locally, nothing is pulled). Pod-network mode only: see kubelet/engine.py."""
        if self.engine is None:
            raise RuntimeError("engine images need the pod network (FakeCluster(pod_network=True))")
        self.images[image] = Image(engine=True)
        self.unpullable.discard(image)

    def block_image(self, image: str) -> None:
        """Make pulls of ``image`` fail (ErrImagePull, then ImagePullBackOff), even if it was added."""
        self.unpullable.add(image)

    # -- faults ----------------------------------------------------------------------------------
    def fail(
        self,
        verb: str | None,
        resource: str | None,
        *,
        status: int = 500,
        times: int | None = 1,
        group: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        message: str = "fakekube injected fault",
    ) -> FaultRule:
        """The next ``times`` matching requests answer ``status`` (a Status with reason InternalError...)."""
        reasons = {
            500: "InternalError",
            503: "ServiceUnavailable",
            504: "Timeout",
            409: "Conflict",
            403: "Forbidden",
            404: "NotFound",
            429: "TooManyRequests",
        }
        return self.faults.add(
            FaultRule(
                "error",
                verb,
                resource,
                group,
                namespace,
                name,
                times,
                status,
                reasons.get(status, "InternalError"),
                message,
            )
        )

    def throttle(
        self,
        verb: str | None,
        resource: str | None,
        *,
        times: int | None = 1,
        retry_after: int = 1,
        group: str | None = None,
    ) -> FaultRule:
        """429 TooManyRequests with ``Retry-After``, as API priority and fairness answers."""
        return self.faults.add(
            FaultRule(
                "error",
                verb,
                resource,
                group,
                times=times,
                status=429,
                reason="TooManyRequests",
                message="Too many requests, please try again later.",
                retry_after=retry_after,
            )
        )

    def hang(
        self,
        verb: str | None,
        resource: str | None,
        *,
        times: int | None = 1,
        seconds: float = 30.0,
        group: str | None = None,
    ) -> FaultRule:
        """Hold matching requests for ``seconds`` (or until :meth:`release_hangs`), then serve them."""
        return self.faults.add(FaultRule("hang", verb, resource, group, times=times, seconds=seconds))

    def release_hangs(self) -> None:
        server = self.server
        if server is not None:
            self.call(server.release_hangs)

    def clear_faults(self) -> None:
        self.faults.clear()

    def drop_watches(self, *, reset: bool = False) -> int:
        """End every open watch stream (``reset``: abort the connection instead of closing cleanly)."""
        store = self.store
        assert store is not None
        return self.call(lambda: store.drop_watches(reset=reset))

    def compact(self) -> int:
        """Compact the history: watches and continue tokens from before now answer 410 Gone."""
        store = self.store
        assert store is not None

        def run() -> int:
            store.compact()
            return store.resource_version

        return self.call(run)

    def kill_pod(
        self, namespace: str, name: str, container: str | None = None, sig: signal.Signals = signal.SIGKILL
    ) -> None:
        """Signal a pod's container processes as if they crashed (restartPolicy then applies)."""
        self.run(self._kubelet_of(namespace, name).signal_container(namespace, name, container, sig))

    def oom_kill(self, namespace: str, name: str, container: str | None = None) -> None:
        """Kill a container as the kernel's OOM killer would: exit 137, reason OOMKilled."""
        self.run(
            self._kubelet_of(namespace, name).signal_container(
                namespace, name, container, signal.SIGKILL, oom=True
            )
        )

    def lose_node(self, node: str, *, delete_pods: bool = True) -> None:
        """The node vanishes: its processes die unreported, it goes NotReady, its pods fail (NodeLost)."""
        self.run(lose_node(self, node, delete_pods=delete_pods))

    def _kubelet_of(self, namespace: str, name: str) -> Kubelet:
        store = self.store
        assert store is not None
        pod = self.call(lambda: store.get(self.registry.by_key(("", "pods")), namespace, name))
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self.kubelets:
            raise LookupError(f"pod {namespace}/{name} is not running on a node")
        return self.kubelets[node]

    # -- inspection ------------------------------------------------------------------------------
    def register_resource(self, resource: ResourceType) -> None:
        """Serve another resource type (a custom resource without a CRD object, say)."""
        self.call(lambda: self.registry.add(resource))

    def resource(self, plural: str, group: str = "") -> ResourceType:
        return self.registry.by_key((group, plural))

    def get(self, plural: str, namespace: str | None, name: str, group: str = "") -> dict[str, Any] | None:
        store = self.store
        assert store is not None
        resource = self.resource(plural, group)
        return self.call(
            lambda: store.get(resource, namespace, name) if store.peek(resource, namespace, name) else None
        )

    def objects(self, plural: str, namespace: str | None = None, group: str = "") -> list[dict[str, Any]]:
        store = self.store
        assert store is not None
        resource = self.resource(plural, group)
        return self.call(lambda: store.select(resource, namespace))

    def wait_for(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        predicate: Callable[[dict[str, Any] | None], bool],
        *,
        group: str = "",
        timeout: float = 30.0,
    ) -> dict[str, Any] | None:
        """Block until the object satisfies ``predicate`` (it gets None when absent); woken by writes."""
        store = self.store
        assert store is not None
        resource = self.resource(plural, group)
        done = threading.Event()
        result: list[dict[str, Any] | None] = []

        def check() -> None:
            if done.is_set():
                return
            found = store.peek(resource, namespace, name)
            current = None if found is None else store.get(resource, namespace, name)
            if predicate(current):
                result.append(current)
                done.set()

        def on_event(event: Any) -> None:
            if event.resource.key == resource.key:
                check()

        def subscribe() -> None:
            store.subscribe(on_event)
            check()

        self.call(subscribe)
        try:
            if not done.wait(timeout):
                raise TimeoutError(
                    f"{plural} {namespace}/{name} did not reach the expected state in {timeout}s"
                )
        finally:
            self.call(lambda: store.unsubscribe(on_event))
        return result[0]

    def wait_until(
        self, predicate: Callable[[], bool], *, timeout: float = 30.0, message: str = "the condition"
    ) -> None:
        """Block until ``predicate()`` (run on the caller's thread) holds, re-checking after each write."""
        store = self.store
        assert store is not None
        changed = threading.Event()

        def on_event(_: Any) -> None:
            changed.set()

        self.call(lambda: store.subscribe(on_event))
        deadline = time.monotonic() + timeout
        try:
            while True:
                changed.clear()
                if predicate():
                    return
                left = deadline - time.monotonic()
                if left <= 0 or not changed.wait(left):
                    if predicate():
                        return
                    raise TimeoutError(f"{message} did not hold within {timeout}s")
        finally:
            self.call(lambda: store.unsubscribe(on_event))

    def processes(self) -> list[int]:
        """Pids of the container processes alive now, on every node."""
        return [pid for kubelet in self.kubelets.values() for pid in kubelet.live_pids()]

    def node_of(self, namespace: str, name: str) -> str | None:
        pod = self.get("pods", namespace, name)
        return None if pod is None else (pod.get("spec") or {}).get("nodeName")

    def nodes(self) -> list[dict[str, Any]]:
        store = self.store
        assert store is not None
        return self.call(lambda: store.select(self.registry.by_key(NODE_KEY), None))
