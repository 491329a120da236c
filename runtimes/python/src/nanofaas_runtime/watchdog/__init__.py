"""Run any command as a function process (used by the scheduler's local backend and the images).

HTTP mode: `ServerProcess` (spawn, health-poll until ready, stop). STDIO and FILE
modes: `invoke_stdio` / `invoke_file`, one process per invocation. Every child
runs in its own session/process group, never through a shell, with exactly the
environment given; timeouts kill the whole group.
"""

from nanofaas_runtime.watchdog.oneshot import DEFAULT_MAX_OUTPUT_BYTES, invoke_file, invoke_stdio
from nanofaas_runtime.watchdog.process import StartError, free_port, kill_process_group
from nanofaas_runtime.watchdog.server_process import ServerProcess

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "ServerProcess",
    "StartError",
    "free_port",
    "invoke_file",
    "invoke_stdio",
    "kill_process_group",
]
