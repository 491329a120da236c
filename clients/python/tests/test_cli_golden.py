"""The CLI's tables and messages, byte for byte, over a scripted gateway.

The CLI against the real platform is tests/e2e/test_cli.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from nanofaas_client import Client
from nanofaas_client.cli import exit_codes, main

Routes = dict[tuple[str, str], httpx.Response]


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Callable[[Routes], Callable[..., Result]]:
    def install(routes: Routes) -> Callable[..., Result]:
        def answer(request: httpx.Request) -> httpx.Response:
            return routes.get((request.method, request.url.path), httpx.Response(404, json={"error": {}}))

        def client(url: str, **options: Any) -> Client:
            return Client(url, transport=httpx.MockTransport(answer), **options)

        monkeypatch.setattr(main, "Client", client)

        def run(*args: str) -> Result:
            return CliRunner().invoke(main.cli, ["--url", "http://nf", *args])

        return run

    return install


def summary(name: str, mode: str = "WARM") -> dict[str, Any]:
    return {
        "name": name,
        "image": "nanofaas/python-runtime:latest",
        "concurrency": 4,
        "executionMode": mode,
        "createdAt": "2024-05-01T12:00:00.000Z",
    }


def status(name: str, current: int, in_flight: int, queued: int, age: int) -> dict[str, Any]:
    replicas = {"current": current, "ready": current, "desired": current, "min": current, "max": current}
    return {
        "name": name,
        "replicas": replicas,
        "inFlight": in_flight,
        "queued": queued,
        "oldestQueuedAgeMs": age,
    }


def test_fn_ls_table(gateway: Callable[[Routes], Callable[..., Result]]) -> None:
    run = gateway(
        {("GET", "/v1/functions"): httpx.Response(200, json=[summary("zeta", "JOB"), summary("hello")])}
    )
    assert run("fn", "ls").stdout == (
        "NAME   IMAGE                           MODE  CONCURRENCY  CREATED\n"
        "hello  nanofaas/python-runtime:latest  WARM  4            2024-05-01T12:00:00.000Z\n"
        "zeta   nanofaas/python-runtime:latest  JOB   4            2024-05-01T12:00:00.000Z\n"
    )


def test_status_table_of_every_function(gateway: Callable[[Routes], Callable[..., Result]]) -> None:
    run = gateway(
        {
            ("GET", "/v1/functions"): httpx.Response(200, json=[summary("hello"), summary("busy")]),
            ("GET", "/v1/functions/hello/status"): httpx.Response(200, json=status("hello", 1, 0, 0, 0)),
            ("GET", "/v1/functions/busy/status"): httpx.Response(200, json=status("busy", 4, 4, 12, 1500)),
        }
    )
    assert run("status").stdout == (
        "NAME   REPLICAS  READY  IN-FLIGHT  QUEUED  OLDEST-QUEUED-MS\n"
        "busy   4         4      4          12      1500\n"
        "hello  1         1      0          0       0\n"
    )


def test_exec_ls_table_and_logs_lines(gateway: Callable[[Routes], Callable[..., Result]]) -> None:
    execution = {
        "executionId": "e1",
        "functionName": "hello",
        "status": "error",
        "attempts": 1,
        "traceId": "t",
        "enqueuedAt": "2024-05-01T12:00:00.000Z",
        "error": {"code": "FUNCTION_ERROR", "message": "boom"},
    }
    line = {
        "ts": "2024-05-01T12:00:00.001Z",
        "stream": "stdout",
        "level": "INFO",
        "message": "hi",
        "executionId": "e1",
    }
    run = gateway(
        {
            ("GET", "/v1/executions"): httpx.Response(200, json=[execution]),
            ("GET", "/v1/functions/hello/logs"): httpx.Response(200, json={"name": "hello", "lines": [line]}),
        }
    )
    assert run("exec", "ls").stdout == (
        "ID  FUNCTION  STATUS  ATTEMPTS  ENQUEUED                  ERROR\n"
        "e1  hello     error   1         2024-05-01T12:00:00.000Z  FUNCTION_ERROR\n"
    )
    assert run("logs", "hello").stdout == "2024-05-01T12:00:00.001Z  stdout  e1            hi\n"
    assert run("-o", "json", "logs", "hello").stdout == (
        '{"ts": "2024-05-01T12:00:00.001Z", "stream": "stdout", "level": "INFO", "message": "hi", '
        '"executionId": "e1"}\n'
    )


def test_messages_for_common_errors(gateway: Callable[[Routes], Callable[..., Result]]) -> None:
    busy = httpx.Response(
        429,
        json={"error": {"code": "RESOURCE_EXHAUSTED", "message": "queue of function 'hello' is full (1)"}},
        headers={"Retry-After": "3", "X-Queue-Reject-Reason": "depth"},
    )
    run = gateway(
        {
            ("POST", "/v1/functions/hello:enqueue"): busy,
            ("GET", "/v1/functions"): httpx.Response(200, json=[summary("hello")]),
            ("POST", "/v1/functions/helo:invoke"): httpx.Response(
                404, json={"error": {"code": "NOT_FOUND", "message": "function 'helo' not found"}}
            ),
        }
    )
    refused = run("invoke", "hello", "--async")
    assert refused.exit_code == exit_codes.RATE_LIMITED
    assert refused.stderr == (
        "error: queue of function 'hello' is full (1)\n"
        "  retry after 3 s (Retry-After, reason: depth); --retry waits and retries by itself\n"
    )
    missing = run("invoke", "helo")
    assert missing.exit_code == exit_codes.NOT_FOUND
    assert missing.stderr == "error: function 'helo' not found\n  did you mean: hello?\n"
    assert run("invoke", "hello", "--wait").exit_code == exit_codes.USAGE
