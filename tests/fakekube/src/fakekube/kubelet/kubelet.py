"""The kubelet: runs the pods bound to its node as local processes and reports their status.

Per pod: an IP (a distinct loopback address), init containers in order, then every container
with its probes and restart policy, the pod phase and Ready/ContainersReady conditions, and on
deletion SIGTERM, the grace period, SIGKILL, then the final removal from the API (the kubelet's
grace-0 delete). A pod deleted at once (force) is killed at once. Images resolve through the
cluster's image map; an unknown or blocked image gives ErrImagePull, then ImagePullBackOff,
retried until the image appears. With the cluster's pod network, each pod first gets its
sandbox: a network namespace (network.py), its volumes and token on disk (volumes.py), a pause
container if it has engine images (engine.py); each container then starts in it (enter.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import meta as m
from ..conditions import set_condition
from ..config import Image
from ..errors import ApiError
from ..resources import NODE_KEY, POD_KEY
from ..schema import GIT_VERSION
from ..store import Event, Store
from .containers import Container, ProbeSet, choose_image
from .engine import EngineError
from .enter import sandboxed
from .env import HOST_ENV, EnvError, argv_for, environment
from .logs import LogFile
from .mounts import mount_failure, record_event
from .network import SERVICE_HOST, SERVICE_PORT, NetworkError
from .volumes import PodVolumes

if TYPE_CHECKING:
    from ..cluster import FakeCluster

log = logging.getLogger("fakekube.kubelet")


def _container_ports(pod: dict[str, Any]) -> list[int]:
    return [
        int(port["containerPort"])
        for container in (pod.get("spec") or {}).get("containers") or ()
        for port in container.get("ports") or ()
        if port.get("containerPort") and port.get("protocol", "TCP") == "TCP"
    ]


def _anyone_listening(ip: str, ports: list[int]) -> bool:
    """Whether a connection to ``ip`` on one of ``ports`` is accepted (loopback: refused at once)."""
    for port in ports:
        try:
            with socket.create_connection((ip, port), timeout=0.5):
                return True
        except OSError:
            continue
    return False


class PodWorker:
    """Drives one pod from Pending to a terminal phase or its deletion."""

    def __init__(self, kubelet: Kubelet, pod: dict[str, Any], ip: str) -> None:
        self.kubelet = kubelet
        self.store = kubelet.store
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.ip = ip
        spec = pod.get("spec") or {}
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.sandbox = kubelet.work_dir / "pods" / f"{self.namespace}_{self.name}_{self.uid[:8]}"
        self.sandbox.mkdir(parents=True, exist_ok=True)
        logs = self.sandbox / "logs"
        self.init_containers = [Container(c, logs, init=True) for c in spec.get("initContainers") or ()]
        self.containers = [Container(c, logs, init=False) for c in spec.get("containers") or ()]
        self.initialized = not self.init_containers
        self.init_failed = False
        self._stop_event = asyncio.Event()
        self.failed_reason: tuple[str, str] | None = None
        self.terminating = False
        self.done = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.started_at = m.timestamp()
        self._kills: set[asyncio.Task[None]] = set()
        self._publish_lock = asyncio.Lock()
        # Pod-network mode only: the pod's network namespace and its volumes on disk.
        self.netns: str | None = None
        self.volumes: PodVolumes | None = None
        self.pause = False  # a pause container holds the pod's network (engine images)

    # -- status ----------------------------------------------------------------------------------
    def _phase(self) -> str:
        if self.failed_reason is not None or self.init_failed:
            return "Failed"
        if not self.initialized:
            return "Pending"
        states = self.containers
        if all(c.terminated is not None for c in states) and not self._restarting():
            return (
                "Succeeded"
                if all(c.terminated and c.terminated["exitCode"] == 0 for c in states)
                else "Failed"
            )
        if any(c.running for c in states) or any(c.restart_count or c.last_state for c in states):
            return "Running"
        return "Pending"

    def _restarting(self) -> bool:
        if self.terminating:
            return False
        if self.restart_policy == "Always":
            return True
        return self.restart_policy == "OnFailure" and any(
            c.terminated and c.terminated["exitCode"] != 0 for c in self.containers
        )

    async def publish(self) -> None:
        """Write the pod's status from the containers' states (no-op when nothing changed)."""
        async with self._publish_lock:
            pods = self.store.registry.by_key(POD_KEY)
            pod = self.store.peek(pods, self.namespace, self.name)
            if pod is None or pod["metadata"]["uid"] != self.uid or not self.kubelet.alive:
                return
            status: dict[str, Any] = {
                k: v
                for k, v in (pod.get("status") or {}).items()
                if k in ("conditions", "nominatedNodeName", "qosClass")
            }
            status.update(
                {
                    "phase": self._phase(),
                    "hostIP": self.kubelet.node_ip,
                    "hostIPs": [{"ip": self.kubelet.node_ip}],
                    "podIP": self.ip,
                    "podIPs": [{"ip": self.ip}],
                    "startTime": self.started_at,
                }
            )
            ready = self.initialized and all(c.ready for c in self.containers) and not self.terminating
            if self.failed_reason is not None:
                status["reason"], status["message"] = self.failed_reason
                ready = False
            set_condition(status, "PodReadyToStartContainers", "True")
            set_condition(
                status,
                "Initialized",
                "True" if self.initialized else "False",
                None if self.initialized else "ContainersNotInitialized",
                None
                if self.initialized
                else "containers with incomplete status: "
                f"[{' '.join(c.name for c in self.init_containers if not c.terminated)}]",
            )
            not_ready = " ".join(c.name for c in self.containers if not c.ready)
            terminal = status["phase"] in ("Succeeded", "Failed")
            reason = None if ready else ("PodCompleted" if terminal else "ContainersNotReady")
            message = None if ready or terminal else f"containers with unready status: [{not_ready}]"
            for kind in ("ContainersReady", "Ready"):
                set_condition(status, kind, "True" if ready else "False", reason, message)
            if self.init_containers:
                status["initContainerStatuses"] = [c.status() for c in self.init_containers]
            status["containerStatuses"] = [c.status() for c in self.containers]
            try:
                self.store.write_status(pods, pod, status)
            except ApiError:
                log.exception("could not write the status of pod %s/%s", self.namespace, self.name)

    # -- lifecycle -------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self.publish()
            if self.kubelet.cluster.network is not None and not await self._make_sandbox():
                return
            deadline = (
                (self.store.peek(self.store.registry.by_key(POD_KEY), self.namespace, self.name) or {}).get(
                    "spec"
                )
                or {}
            ).get("activeDeadlineSeconds")
            if deadline is not None:
                asyncio.get_running_loop().call_later(float(deadline), self._deadline_passed)
            if not await self._mount_volumes():
                return
            for container in self.init_containers:
                while not self.terminating:
                    code = await self._run_once(container)
                    if code is None:
                        return  # the pod is going away
                    if code == 0:
                        break
                    if self.restart_policy == "Never":
                        # The pod fails without ever starting its containers.
                        self.init_failed = True
                        for waiting in self.containers:
                            waiting.wait("PodInitializing")
                        await self.publish()
                        return
                    await self._back_off(container)
                if self.terminating:
                    return
            self.initialized = True
            await self.publish()
            await asyncio.gather(*(self._supervise(c) for c in self.containers))
        finally:
            cluster = self.kubelet.cluster
            if cluster.engine is not None and self.pause:
                await cluster.engine.remove_pod(self.uid)
            if cluster.network is not None and self.netns is not None:
                await cluster.network.remove_pod(self.ip)
            self.done.set()

    @staticmethod
    def _all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
        spec = pod.get("spec") or {}
        return list(spec.get("initContainers") or ()) + list(spec.get("containers") or ())

    async def _make_sandbox(self) -> bool:
        """Pod-network mode: the pod's network namespace and volumes (False: the pod cannot start)."""
        cluster = self.kubelet.cluster
        assert cluster.network is not None
        pod = self.store.peek(self.store.registry.by_key(POD_KEY), self.namespace, self.name)
        if pod is None:
            return False
        engine_images = [
            str(c.get("image"))
            for c in self._all_containers(pod)
            if (found := cluster.images.get(str(c.get("image")))) is not None and found.engine
        ]
        try:
            pid = None
            if engine_images and cluster.engine is not None:
                self.pause = True
                pid = await cluster.engine.start_pause(self.uid, engine_images[0])
            self.netns = await cluster.network.add_pod(self.ip, pid)
        except (NetworkError, EngineError) as error:
            log.error("pod %s/%s: no sandbox: %s", self.namespace, self.name, error)
            for container in self.init_containers + self.containers:
                container.wait("ContainerCreating", f"failed to create pod sandbox: {error}")
            await self.publish()
            return False
        self.volumes = PodVolumes(self.sandbox / "sandbox")
        certificates = cluster.certificates
        self.volumes.write(
            self.store,
            pod,
            self.ip,
            token_for=cluster.token_for,
            ca_pem=certificates.ca_pem if certificates is not None else b"",
        )
        return True

    async def _mount_volumes(self) -> bool:
        """Wait until every volume can be mounted (retried, with a FailedMount event each time).

        False if the pod goes away first; meanwhile its containers stay ContainerCreating.
        """
        pods = self.store.registry.by_key(POD_KEY)
        while not self.terminating:
            pod = self.store.peek(pods, self.namespace, self.name)
            if pod is None:
                return False
            failure = mount_failure(self.store, pod)
            if failure is None:
                return True
            record_event(self.store, pod, "FailedMount", failure, self.kubelet.node)
            await self.publish()
            await self._sleep(self.kubelet.cluster.timing.restart_backoff)
        return False

    def _deadline_passed(self) -> None:
        if self.done.is_set() or self.terminating:
            return
        self.failed_reason = (
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline",
        )
        kill = asyncio.get_running_loop().create_task(self._kill_all(0))
        self._kills.add(kill)
        kill.add_done_callback(self._kills.discard)

    async def _supervise(self, container: Container) -> None:
        while not self.terminating and self.failed_reason is None:
            code = await self._run_once(container)
            if code is None or self.terminating or self.failed_reason is not None:
                break
            if self.restart_policy == "Never" or (self.restart_policy == "OnFailure" and code == 0):
                break
            await self._back_off(container)
        await self.publish()

    async def _back_off(self, container: Container) -> None:
        timing = self.kubelet.cluster.timing
        delay = min(timing.restart_backoff * 2**container.restart_count, timing.restart_backoff_max)
        container.last_state = container.state
        container.restart_count += 1
        container.wait(
            "CrashLoopBackOff",
            f"back-off {delay:g}s restarting failed container={container.name} "
            f"pod={self.name}_{self.namespace}({self.uid})",
        )
        await self.publish()
        await self._sleep(delay)

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the pod starts terminating; True if it did."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        return self._stop_event.is_set()

    async def _pull(self, container: Container) -> Image | None:
        """Resolve the image, backing off while it cannot be pulled; None if the pod goes away."""
        cluster = self.kubelet.cluster
        name = str(container.spec.get("image") or "")
        attempt = 0
        while not self.terminating:
            image = choose_image(cluster.images, cluster.unpullable, name)
            if image is not None:
                return image
            container.wait(
                "ErrImagePull",
                f'failed to pull and unpack image "docker.io/library/{name}": failed '
                f'to resolve reference "docker.io/library/{name}": pull access denied, repository does '
                "not exist or may require authorization",
            )
            await self.publish()
            if await self._sleep(cluster.timing.image_pull_backoff):
                return None
            container.wait("ImagePullBackOff", f'Back-off pulling image "{name}"')
            await self.publish()
            attempt += 1
            await self._sleep(min(cluster.timing.image_pull_backoff * 2**attempt, 5.0))
        return None

    async def _run_once(self, container: Container) -> int | None:
        image = await self._pull(container)
        if image is None:
            return None
        pods = self.store.registry.by_key(POD_KEY)
        while not self.terminating:
            pod = self.store.peek(pods, self.namespace, self.name)
            if pod is None:
                return None
            try:
                env = environment(
                    self.store, pod, container.spec, image, self.kubelet.extra_env(pod, self.ip)
                )
                break
            except EnvError as error:
                container.wait("CreateContainerConfigError", str(error))
                await self.publish()
                await self._sleep(self.kubelet.cluster.timing.restart_backoff)
        else:
            return None
        argv = argv_for(container.spec, image, env)
        cwd = self._working_dir(container, image)
        engine = self.kubelet.cluster.engine
        run_name = None
        if image.engine and engine is not None and self.volumes is not None and self.pause:
            # The container's own environment (not the host's) goes in by name (-e KEY).
            env = {k: v for k, v in env.items() if k not in HOST_ENV or os.environ.get(k) != v}
            argv = engine.run_argv(
                pod, container.spec, env, self.volumes.mounts(container.spec), len(container.runs)
            )
            run_name = engine.container_name(self.uid, container.name, len(container.runs))
            env = {**env, **{k: os.environ[k] for k in ("DOCKER_HOST", "HOME") if k in os.environ}}
        elif self.netns is not None and self.volumes is not None:
            argv = sandboxed(argv, container.spec, self.netns, self.volumes, self.sandbox)
        failure = await container.start(argv, env, cwd, str(container.spec.get("image")))
        if failure is not None:
            await self.publish()
            return 128
        if self._stop_event.is_set():  # killed while the process was being started
            container.signal_group(signal.SIGKILL)
        await self.publish()
        probes = ProbeSet()
        if not container.init:

            async def on_ready(ok: bool) -> None:
                if container.running and container.ready != ok:
                    container.ready = ok
                    await self.publish()

            async def on_dead(message: str) -> None:
                # The kill runs apart from the prober, which is cancelled once the container exits.
                log.info("pod %s/%s container %s: %s", self.namespace, self.name, container.name, message)
                kill = asyncio.get_running_loop().create_task(container.stop(self._grace()))
                self._kills.add(kill)
                kill.add_done_callback(self._kills.discard)

            network = self.kubelet.cluster.network
            probes.start(
                container,
                self.ip,
                env,
                on_ready=on_ready,
                on_dead=on_dead,
                dial=network.dial if network is not None else None,
            )
            if container.spec.get("readinessProbe") is None and container.spec.get("startupProbe") is None:
                container.ready = True
                await self.publish()
        code = await container.wait_exit()
        if run_name is not None and engine is not None:
            await engine.remove_container(run_name)
        await probes.stop()
        await self.publish()
        return code

    def _working_dir(self, container: Container, image: Image) -> Path:
        for candidate in (container.spec.get("workingDir"), image.working_dir):
            if candidate and Path(candidate).is_dir():
                return Path(candidate)
        return self.sandbox

    def _grace(self) -> float:
        pod = self.store.peek(self.store.registry.by_key(POD_KEY), self.namespace, self.name) or {}
        metadata = pod.get("metadata") or {}
        if metadata.get("deletionGracePeriodSeconds") is not None:
            return float(metadata["deletionGracePeriodSeconds"])
        return float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))

    async def _kill_all(self, grace: float) -> None:
        await asyncio.gather(*(c.stop(grace) for c in self.init_containers + self.containers))

    async def terminate(self) -> None:
        """Graceful deletion: stop containers within the grace period, then remove the pod."""
        if self.terminating:
            return
        self.terminating = True
        self._stop_event.set()
        await self._kill_all(self._grace())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), 10)
        await self.publish()
        pods = self.store.registry.by_key(POD_KEY)
        pod = self.store.peek(pods, self.namespace, self.name)
        if pod is not None and pod["metadata"]["uid"] == self.uid and self.kubelet.alive:
            with contextlib.suppress(ApiError):
                self.store.delete(pods, self.namespace, self.name, grace_seconds=0)

    def kill_now(self) -> None:
        """The pod is gone from the API (or the node died): SIGKILL everything, report nothing."""
        self.terminating = True
        self._stop_event.set()
        for container in self.init_containers + self.containers:
            container.signal_group(signal.SIGKILL)

    def signal(self, name: str | None, sig: signal.Signals, *, oom: bool) -> None:
        for container in self.containers + self.init_containers:
            if name is None or container.name == name:
                container.oom = oom
                container.signal_group(sig)
                if name is None:
                    return

    def live_pids(self) -> list[int]:
        return [pid for c in self.init_containers + self.containers if (pid := c.pid()) is not None]

    def log_files(self, container: str) -> list[LogFile]:
        for found in self.init_containers + self.containers:
            if found.name == container:
                return list(found.runs)
        return []


class Kubelet:
    """One node: its Node object, its pod workers, and the pod IP range ``<prefix>.2-254``."""

    def __init__(self, store: Store, node: str, cluster: FakeCluster, node_ip: str) -> None:
        self.store = store
        self.node = node
        self.cluster = cluster
        self.node_ip = node_ip
        self.work_dir: Path = cluster.work_dir / node
        self.alive = True
        self.workers: dict[str, PodWorker] = {}
        # Addresses of deleted pods whose workers (processes) have not ended yet, and those workers.
        self._dying: dict[str, asyncio.Task[None]] = {}
        self._next_ip = 2
        self._running = False
        store.subscribe(self._on_event)

    # -- node ------------------------------------------------------------------------------------
    def register_node(self) -> None:
        now = m.timestamp()
        conditions = [
            {
                "type": kind,
                "status": "False",
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
            for kind, reason, message in (
                ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            )
        ]
        conditions.append(
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        )
        capacity = {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"}
        self.store.create(
            self.store.registry.by_key(NODE_KEY),
            None,
            {
                "metadata": {
                    "name": self.node,
                    "labels": {
                        "kubernetes.io/hostname": self.node,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "beta.kubernetes.io/os": "linux",
                        "beta.kubernetes.io/arch": "amd64",
                    },
                },
                "spec": {"podCIDR": f"{self.node_ip.rsplit('.', 1)[0]}.0/24"},
                "status": {
                    "conditions": conditions,
                    "capacity": capacity,
                    "allocatable": capacity,
                    "addresses": [
                        {"type": "InternalIP", "address": self.node_ip},
                        {"type": "Hostname", "address": self.node},
                    ],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                    "nodeInfo": {
                        "machineID": self.node,
                        "systemUUID": self.node,
                        "bootID": m.new_uid(),
                        "kernelVersion": os.uname().release,
                        "osImage": "fakekube",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                        "containerRuntimeVersion": "fakekube://local-processes",
                        "kubeletVersion": GIT_VERSION,
                        "kubeProxyVersion": GIT_VERSION,
                    },
                },
            },
        )

    def start(self) -> None:
        self._running = True
        for pod in list(self.store.iter(self.store.registry.by_key(POD_KEY))):
            if (pod.get("spec") or {}).get("nodeName") == self.node:
                self._sync(pod)

    def extra_env(self, pod: dict[str, Any], ip: str) -> dict[str, str]:
        """What every container gets besides its spec: the pod's identity and the API's address."""
        host, _, port = self.cluster.url.rpartition("://")[2].rpartition(":")
        if self.cluster.network is not None:  # the `kubernetes` Service's address, in the pod network
            host, port = SERVICE_HOST, str(SERVICE_PORT)
        return {
            "HOSTNAME": pod["metadata"]["name"],
            "FAKEKUBE_POD_IP": ip,
            "FAKEKUBE_POD_NAME": pod["metadata"]["name"],
            "FAKEKUBE_POD_NAMESPACE": pod["metadata"]["namespace"],
            "FAKEKUBE_NODE_NAME": self.node,
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
        }

    def _allocate_ip(self, pod: dict[str, Any]) -> str:
        """A free address: held by no pod, not even one still dying, and no process listens there.

        Real pods have network namespaces of their own; ours share the host's, so an address
        where another process (outside this cluster) answers on one of the pod's ports is
        skipped, or probes and requests meant for the pod would reach that process. With the pod
        network they do have their own, and the host's view of ``10.244.x.y`` says nothing about
        it (a transparent proxy on the host's route may accept any address): nothing is checked.
        """
        used = {w.ip for w in self.workers.values()} | set(self._dying)
        prefix = self.node_ip.rsplit(".", 1)[0]
        ports = _container_ports(pod) if self.cluster.network is None else []
        for _ in range(253):
            candidate = f"{prefix}.{self._next_ip}"
            self._next_ip = 2 if self._next_ip >= 254 else self._next_ip + 1
            if candidate not in used and not _anyone_listening(candidate, ports):
                return candidate
        raise RuntimeError(f"node {self.node} has no pod IP left")

    # -- pods ------------------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if event.resource.key != POD_KEY or not self._running or not self.alive:
            return
        if (event.obj.get("spec") or {}).get("nodeName") != self.node:
            return
        if event.type == "DELETED":
            worker = self.workers.pop(event.obj["metadata"]["uid"], None)
            if worker is not None:
                worker.kill_now()
                self._hold_ip_until_done(worker)
            return
        self._sync(event.obj)

    def _sync(self, pod: dict[str, Any]) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.get(uid)
        terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if worker is None:
            if terminal:
                return
            worker = PodWorker(self, pod, self._allocate_ip(pod))
            self.workers[uid] = worker
            worker.task = asyncio.get_running_loop().create_task(worker.run(), name=f"pod {uid}")
        if m.is_terminating(pod) and not worker.terminating:
            asyncio.get_running_loop().create_task(worker.terminate())

    def _hold_ip_until_done(self, worker: PodWorker) -> None:
        """A deleted pod's address is not handed out while its processes may still hold it."""
        if worker.task is None or worker.task.done():
            return
        ip, task = worker.ip, worker.task
        self._dying[ip] = task
        task.add_done_callback(lambda _: self._dying.pop(ip, None))

    def log_files(self, uid: str, container: str) -> list[LogFile]:
        worker = self.workers.get(uid)
        return worker.log_files(container) if worker is not None else []

    async def signal_container(
        self, namespace: str, name: str, container: str | None, sig: signal.Signals, *, oom: bool = False
    ) -> None:
        for worker in self.workers.values():
            if (worker.namespace, worker.name) == (namespace, name):
                worker.signal(container, sig, oom=oom)
                return
        raise LookupError(f"pod {namespace}/{name} has no running containers on {self.node}")

    def live_pids(self) -> list[int]:
        return [pid for worker in list(self.workers.values()) for pid in worker.live_pids()]

    def kill_all_now(self) -> None:
        for worker in list(self.workers.values()):
            worker.kill_now()

    async def crash(self) -> None:
        """The node dies: every process is killed and nothing more is reported."""
        self.alive = False
        self.kill_all_now()
        await self._wait_workers()

    async def stop(self) -> None:
        self._running = False
        self.kill_all_now()
        await self._wait_workers()

    async def _wait_workers(self) -> None:
        tasks = [w.task for w in self.workers.values() if w.task is not None] + list(self._dying.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.kill_all_now()  # whatever started meanwhile
