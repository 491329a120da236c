"""A STDIO-mode command: request JSON on stdin, output JSON on stdout."""

import json
import os
import signal
import sys
from pathlib import Path

request = json.load(sys.stdin)
data = request.get("input") or {}
marker = os.environ.get("CRASH_ONCE_MARKER")
if marker and not Path(marker).exists():
    Path(marker).write_text("crashed")
    os.kill(os.getpid(), signal.SIGKILL)
if isinstance(data, dict) and data.get("fail"):
    sys.stderr.write("something went wrong: " + str(data["fail"]) + "\n")
    sys.exit(3)
env = {
    key: os.environ.get(key) for key in ("FUNCTION_NAME", "EXECUTION_ID", "TRACE_ID", "INVOCATION_TIMEOUT_MS")
}
json.dump({"input": data, "metadata": request.get("metadata"), "argv": sys.argv[1:], "env": env}, sys.stdout)
