"""`python -m bench.fake_cluster WORK_DIR IMAGE USER`: the fake cluster (tests/fakekube) as a
process of its own, for scenario (j).

Run apart from the bench so its CPU (API server, controllers and kubelet share one event loop in
this process) is measured on its own, and its pods (the function processes, started by the
kubelet) are exactly this process' descendants. `IMAGE` runs this interpreter's
`nanofaas_runtime`, with this environment's bin directory first on the pods' PATH (as the
e2e-kubernetes suite maps it). Everything the cluster writes (certificates, pod logs) is under
`WORK_DIR/cluster`, which the bench removes; the kubeconfig appears at `WORK_DIR/kubeconfig`
(renamed into place, so it is never read half written) once the cluster serves. SIGTERM or
SIGINT stops the cluster, which kills every pod's process group.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from fakekube import FakeCluster


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    work, image, user = Path(argv[0]), argv[1], argv[2]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with FakeCluster(work_dir=work / "cluster") as cluster:
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        cluster.add_image(image, [sys.executable, "-m", "nanofaas_runtime"], env={"PATH": path})
        written = cluster.write_kubeconfig(work / "kubeconfig.partial", user=user)
        written.rename(work / "kubeconfig")
        print(f"fake cluster serving {cluster.url}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
