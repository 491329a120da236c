"""GET /v1/functions/{name}/logs on the kubernetes backend: the pods' logs, through REST.

The handler prints; the fake cluster's kubelet keeps the container's output; the scheduler
reads it through the API (pods/log) and the line comes back with its executionId, for a WARM
function (its Deployment's pod) and a JOB one (kept when the attempt ended, its pod gone).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from fakekube import FakeCluster
from nanofaas_scheduler.dispatch.kubernetes import naming

from .conftest import helpers, job_objects
from .suite import e2e_module

introspection = e2e_module("test_client_introspection")


@pytest.mark.parametrize("mode", ["WARM", "JOB"])
async def test_the_handlers_line_comes_back_with_its_execution_id(
    http: aiohttp.ClientSession, fn_name: str, mode: str, cluster: FakeCluster
) -> None:
    await helpers.register(http, helpers.python_spec(fn_name, "chatty", executionMode=mode))
    status, _, first = await helpers.invoke(http, fn_name, "one")
    assert status == 200, first
    status, _, second = await helpers.invoke(http, fn_name, "two")
    assert status == 200, second
    if mode == "JOB":  # no pod of the function is left: the lines were kept as attempts ended
        await asyncio.to_thread(
            cluster.wait_until,
            lambda: not [p for p in job_objects(cluster, "pods") if _of(p, fn_name)],
            timeout=30,
            message="the JOB pods deleted",
        )
    mine = f"/v1/functions/{fn_name}/logs?execution={second['executionId']}"
    # A JOB pod's every line is its execution's (its start-up lines too): the handler's is among them.
    (line,) = [entry for entry in await introspection.read_lines(http, mine, 1) if "says" in entry["message"]]
    assert (line["message"], line["stream"], line["executionId"]) == (
        "chatty says two",
        "stdout",
        second["executionId"],
    )
    assert line["ts"].endswith("Z")
    everything = await introspection.read_lines(http, f"/v1/functions/{fn_name}/logs", 2)
    said = [
        (entry["message"], entry.get("executionId")) for entry in everything if "says" in entry["message"]
    ]
    assert said == [("chatty says one", first["executionId"]), ("chatty says two", second["executionId"])]
    (last,) = await introspection.read_lines(http, f"/v1/functions/{fn_name}/logs?tail=1", 1)
    assert last == everything[-1]


@pytest.mark.parametrize("mode", ["WARM", "JOB"])
async def test_follow_streams_the_line_of_an_invocation_made_after_it(
    http: aiohttp.ClientSession, fn_name: str, mode: str
) -> None:
    await helpers.register(http, helpers.python_spec(fn_name, "chatty", executionMode=mode))
    async with http.get(f"/v1/functions/{fn_name}/logs?follow=true") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        status, _, result = await helpers.invoke(http, fn_name, "live")
        assert status == 200, result
        event = await next_event(response, result["executionId"])
    assert event["message"] == "chatty says live"


async def next_event(response: aiohttp.ClientResponse, execution_id: str) -> Any:
    async with asyncio.timeout(30):
        while True:
            raw = (await response.content.readline()).decode()
            if raw.startswith("data: "):
                event = orjson.loads(raw[len("data: ") :])
                if event.get("executionId") == execution_id and "says" in event["message"]:
                    return event


def _of(pod: dict[str, Any], function: str) -> bool:
    return (pod["metadata"].get("annotations") or {}).get(naming.FUNCTION_ANNOTATION) == function
