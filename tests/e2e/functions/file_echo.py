"""A FILE-mode command: request JSON at $INPUT_FILE, output JSON at $OUTPUT_FILE."""

import json
import os
from pathlib import Path

request = json.loads(Path(os.environ["INPUT_FILE"]).read_text())
output = {"input": request.get("input"), "mode": "file", "executionId": os.environ.get("EXECUTION_ID")}
Path(os.environ["OUTPUT_FILE"]).write_text(json.dumps(output))
