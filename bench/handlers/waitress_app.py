"""An OpenFaaS python3-http-style server: Flask under waitress, the same no-op handler.

Run as `python -m waitress_app PORT` with this directory on PYTHONPATH. Flask and waitress
live only in the bench environment, so they are imported dynamically (mypy runs without them).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

flask: Any = importlib.import_module("flask")
app: Any = flask.Flask(__name__)


def invoke(path: str = "") -> Any:
    flask.request.get_data()
    return flask.Response("null", status=200, content_type="application/json")


app.add_url_rule("/", "root", invoke, methods=["POST", "GET"])
app.add_url_rule("/<path:path>", "any", invoke, methods=["POST", "GET"])


if __name__ == "__main__":
    waitress: Any = importlib.import_module("waitress")
    waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=8, _quiet=True)
