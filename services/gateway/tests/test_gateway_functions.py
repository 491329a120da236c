"""Function CRUD through the real app and a fake gRPC registry."""

from __future__ import annotations

from typing import Any

import grpc
import orjson
import pytest

from nanofaas.v1 import types_pb2
from nanofaas_gateway.clients import GatewayClients

from .gateway_harness import Gateway

pytestmark = pytest.mark.asyncio(loop_scope="module")

FULL_SPEC: dict[str, Any] = {
    "name": "echo",
    "image": "nanofaas/python-runtime:1",
    "command": ["python", "-m", "app"],
    "env": {"A": "1"},
    "resources": {"cpu": "500m", "memory": "256Mi"},
    "timeoutMs": 1000,
    "concurrency": 2,
    "queueSize": 7,
    "maxRetries": 0,
    "executionMode": "WARM",
    "runtimeMode": "STDIO",
    "rateLimitPerSecond": 2.5,
    "minReplicas": 0,
    "maxReplicas": 2,
    "targetInFlight": 1,
    "scaleDownDelayMs": 500,
}


async def post_spec(gateway: Gateway, spec: dict[str, Any]) -> tuple[int, Any]:
    async with gateway.session.post(gateway.url("/v1/functions"), json=spec) as response:
        return response.status, await response.json()


async def test_register_returns_201_summary_and_location(gateway: Gateway) -> None:
    async with gateway.session.post(gateway.url("/v1/functions"), json=FULL_SPEC) as response:
        assert response.status == 201
        assert response.headers["Location"] == "/v1/functions/echo"
        assert response.content_type == "application/json"
        body = await response.json()
    assert body == {
        "name": "echo",
        "image": "nanofaas/python-runtime:1",
        "concurrency": 2,
        "executionMode": "WARM",
        "createdAt": "2024-05-01T12:00:00.123Z",
    }


async def test_register_sends_every_field_to_the_registry(gateway: Gateway) -> None:
    status, _ = await post_spec(gateway, FULL_SPEC)
    assert status == 201
    sent = gateway.registry.registered[-1]
    assert sent.name == "echo"
    assert list(sent.command) == ["python", "-m", "app"]
    assert dict(sent.env) == {"A": "1"}
    assert (sent.resources.cpu, sent.resources.memory) == ("500m", "256Mi")
    assert (sent.timeout_ms, sent.concurrency, sent.queue_size, sent.max_retries) == (1000, 2, 7, 0)
    assert sent.HasField("max_retries")
    assert sent.execution_mode == types_pb2.EXECUTION_MODE_WARM
    assert sent.runtime_mode == types_pb2.RUNTIME_MODE_STDIO


async def test_register_leaves_unset_fields_for_registry_defaults(gateway: Gateway) -> None:
    status, _ = await post_spec(gateway, {"name": "minimal", "image": "img"})
    assert status == 201
    sent = gateway.registry.registered[-1]
    for field in ("timeout_ms", "concurrency", "queue_size", "max_retries", "resources"):
        assert not sent.HasField(field)
    assert sent.execution_mode == types_pb2.EXECUTION_MODE_UNSPECIFIED


@pytest.mark.parametrize(
    ("alias", "mode"),
    [("REMOTE", types_pb2.EXECUTION_MODE_JOB), ("POOL", types_pb2.EXECUTION_MODE_WARM)],
)
async def test_execution_mode_aliases_resolve_and_are_recorded(
    gateway: Gateway, alias: str, mode: int
) -> None:
    status, body = await post_spec(gateway, {"name": "aliased", "image": "img", "executionMode": alias})
    assert status == 201
    sent = gateway.registry.registered[-1]
    assert sent.execution_mode == mode
    assert sent.execution_mode_alias == alias
    assert body["executionMode"] == ("JOB" if alias == "REMOTE" else "WARM")


async def test_endpoint_spec_passes_endpoint_url(gateway: Gateway) -> None:
    spec = {"name": "ep", "image": "img", "endpointUrl": "http://127.0.0.1:1/invoke", "runtimeCommand": "a b"}
    status, body = await post_spec(gateway, spec)
    assert status == 201
    assert body["executionMode"] == "ENDPOINT"
    sent = gateway.registry.registered[-1]
    assert sent.endpoint_url == "http://127.0.0.1:1/invoke"
    assert sent.runtime_command == "a b"


async def test_register_existing_function_is_409(gateway: Gateway) -> None:
    assert (await post_spec(gateway, FULL_SPEC))[0] == 201
    status, body = await post_spec(gateway, FULL_SPEC)
    assert status == 409
    assert body == {"error": {"code": "ALREADY_EXISTS", "message": "function 'echo' already exists"}}


async def test_registry_invalid_argument_is_400_with_its_message(gateway: Gateway) -> None:
    gateway.registry.failures.fail(
        "Register", grpc.StatusCode.INVALID_ARGUMENT, "endpointUrl: required for ENDPOINT"
    )
    status, body = await post_spec(gateway, {"name": "x", "image": "img", "executionMode": "ENDPOINT"})
    assert status == 400
    assert body == {"error": {"code": "INVALID_ARGUMENT", "message": "endpointUrl: required for ENDPOINT"}}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "1starts-with-digit"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"name": "has space"}, "name"),
        ({"image": ""}, "image"),
        ({"timeoutMs": "1000"}, "timeoutMs"),
        ({"timeoutMs": 1000.0}, "timeoutMs"),
        ({"concurrency": True}, "concurrency"),
        ({"queueSize": [1]}, "queueSize"),
        ({"maxRetries": "3"}, "maxRetries"),
        ({"rateLimitPerSecond": "2"}, "rateLimitPerSecond"),
        ({"rateLimitPerSecond": False}, "rateLimitPerSecond"),
        ({"minReplicas": "1"}, "minReplicas"),
        ({"scaleDownDelayMs": 1.5}, "scaleDownDelayMs"),
        ({"executionMode": "LAMBDA"}, "executionMode"),
        ({"runtimeMode": "SOCKET"}, "runtimeMode"),
        ({"env": {"A": 1}}, "env.A"),
        ({"command": "python app.py"}, "command"),
        ({"resources": {"cpu": 1}}, "resources.cpu"),
    ],
)
async def test_wrong_json_type_is_422_naming_the_field(
    gateway: Gateway, change: dict[str, Any], field: str
) -> None:
    status, body = await post_spec(gateway, {**FULL_SPEC, **change})
    assert status == 422
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["message"].startswith(f"{field}:"), body
    assert gateway.registry.registered == []


BOUNDED = [
    # (REST field, proto field, registry message, out-of-range values of every size)
    ("timeoutMs", "timeout_ms", "timeoutMs: must be between 1 and 300000", [0, 300_001, -(2**40), 2**40]),
    ("concurrency", "concurrency", "concurrency: must be between 1 and 10000", [0, 10_001, 2**40, 2**70]),
    ("queueSize", "queue_size", "queueSize: must be between 1 and 1000000", [0, 1_000_001, -(2**70), 2**63]),
    ("maxRetries", "max_retries", "maxRetries: must be between 0 and 100", [-1, 101, 2**62, -(2**64)]),
]


@pytest.mark.parametrize(("field", "proto_field", "message", "values"), BOUNDED)
async def test_bounded_fields_reach_the_registry_clamped_to_int64(
    gateway: Gateway, field: str, proto_field: str, message: str, values: list[int]
) -> None:
    """The gateway has no ranges: every integer reaches the registry, which answers by value."""
    answers = set()
    for value in values:
        status, body = await post_spec(gateway, {**FULL_SPEC, field: value})
        answers.add((status, body["error"]["code"], body["error"]["message"]))
        assert getattr(gateway.registry.registered[-1], proto_field) == min(max(value, -(2**63)), 2**63 - 1)
    assert answers == {(400, "INVALID_ARGUMENT", message)}


@pytest.mark.parametrize(("field", "proto_field", "message", "_"), BOUNDED)
async def test_integers_too_long_to_convert_get_the_same_answer(
    gateway: Gateway, field: str, proto_field: str, message: str, _: list[int]
) -> None:
    """5000 digits is past Python's int conversion limit: clamped unconverted, same answer as 2**63."""
    answers = set()
    for literal in (str(2**63), "9" * 5000, "-" + "9" * 5000, str(-(2**63) - 1)):
        spec = orjson.dumps({**FULL_SPEC, field: 0})
        raw = spec.replace(f'"{field}":0'.encode(), f'"{field}":{literal}'.encode())
        async with gateway.session.post(
            gateway.url("/v1/functions"), data=raw, headers={"Content-Type": "application/json"}
        ) as response:
            error = (await response.json())["error"]
            answers.add((response.status, error["code"], error["message"]))
        sent = getattr(gateway.registry.registered[-1], proto_field)
        assert sent == (-(2**63) if literal.startswith("-") else 2**63 - 1)
    assert answers == {(400, "INVALID_ARGUMENT", message)}


@pytest.mark.parametrize(
    ("value", "sent"),
    [(1_000_001, 1_000_001.0), (1e300, 1e300), (-0.5, -0.5), (2**70, float(2**63 - 1))],
)
async def test_rate_limit_reaches_the_registry_unchecked(gateway: Gateway, value: float, sent: float) -> None:
    status, body = await post_spec(gateway, {**FULL_SPEC, "rateLimitPerSecond": value})
    assert (status, body["error"]["code"]) == (400, "INVALID_ARGUMENT")
    assert body["error"]["message"] == "rateLimitPerSecond: must be between 0 and 1e+06 (0 = no limit)"
    assert gateway.registry.registered[-1].rate_limit_per_second == sent


async def test_missing_required_fields_are_named(gateway: Gateway) -> None:
    status, body = await post_spec(gateway, {"concurrency": 1})
    assert status == 422
    assert "name: Field required" in body["error"]["message"]
    assert "image: Field required" in body["error"]["message"]


async def test_malformed_json_spec_is_400(gateway: Gateway) -> None:
    headers = {"Content-Type": "application/json"}
    async with gateway.session.post(gateway.url("/v1/functions"), data=b"{nope", headers=headers) as response:
        assert response.status == 400
        body = await response.json()
    assert body["error"]["code"] == "INVALID_ARGUMENT"
    assert "invalid JSON" in body["error"]["message"]


async def test_spec_without_content_type_is_read_as_json(gateway: Gateway) -> None:
    async with gateway.session.post(
        gateway.url("/v1/functions"),
        data=b'{"name":"plain","image":"img"}',
        skip_auto_headers=["Content-Type"],
    ) as response:
        assert response.status == 201
    assert gateway.registry.registered[-1].name == "plain"


async def test_spec_sent_like_curl_d_is_read_as_json(gateway: Gateway) -> None:
    """`curl -d '{...}'` labels its data form-urlencoded: the JSON in it is registered."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = b'{"name": "curled", "image": "img"}'
    async with gateway.session.post(gateway.url("/v1/functions"), data=body, headers=form) as response:
        assert response.status == 201
    assert gateway.registry.registered[-1].name == "curled"


async def test_real_form_data_is_400_invalid_json(gateway: Gateway) -> None:
    async with gateway.session.post(gateway.url("/v1/functions"), data={"name": "x"}) as response:
        assert response.status == 400
        error = (await response.json())["error"]
        assert error["code"] == "INVALID_ARGUMENT" and "invalid JSON" in error["message"]


async def test_spec_as_bytes_is_415(gateway: Gateway) -> None:
    octets = {"Content-Type": "application/octet-stream"}
    async with gateway.session.post(gateway.url("/v1/functions"), data=b"{}", headers=octets) as response:
        assert response.status == 415
        assert (await response.json())["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_list_returns_summaries(gateway: Gateway) -> None:
    assert (await post_spec(gateway, FULL_SPEC))[0] == 201
    assert (await post_spec(gateway, {"name": "second", "image": "img2"}))[0] == 201
    async with gateway.session.get(gateway.url("/v1/functions")) as response:
        assert response.status == 200
        body = await response.json()
    assert sorted(item["name"] for item in body) == ["echo", "second"]
    second = next(item for item in body if item["name"] == "second")
    assert second == {
        "name": "second",
        "image": "img2",
        "concurrency": 4,
        "executionMode": "JOB",
        "createdAt": "2024-05-01T12:00:00.123Z",
    }


async def test_list_empty_is_empty_array(gateway: Gateway) -> None:
    async with gateway.session.get(gateway.url("/v1/functions")) as response:
        assert response.status == 200
        assert await response.json() == []


async def test_get_returns_spec_with_defaults(gateway: Gateway) -> None:
    assert (await post_spec(gateway, {"name": "defaults", "image": "img"}))[0] == 201
    async with gateway.session.get(gateway.url("/v1/functions/defaults")) as response:
        assert response.status == 200
        body = await response.json()
    assert body == {
        "name": "defaults",
        "image": "img",
        "env": {},
        "timeoutMs": 30000,
        "concurrency": 4,
        "queueSize": 100,
        "maxRetries": 3,
        "executionMode": "JOB",
        "runtimeMode": "HTTP",
        "rateLimitPerSecond": 0,
    }


async def test_get_returns_every_set_field(gateway: Gateway) -> None:
    assert (await post_spec(gateway, FULL_SPEC))[0] == 201
    async with gateway.session.get(gateway.url("/v1/functions/echo")) as response:
        assert response.status == 200
        assert await response.json() == FULL_SPEC


@pytest.mark.parametrize(
    "path", ["/v1/functions/missing", "/v1/functions/9bad", "/v1/functions/foo:invoke", "/v1/functions/ok%0A"]
)
async def test_get_unknown_or_invalid_name_is_404(gateway: Gateway, path: str) -> None:
    async with gateway.session.get(gateway.url(path)) as response:
        assert response.status == 404
        body = await response.json()
    assert body["error"]["code"] == "NOT_FOUND"
    assert gateway.scheduler.invokes == []
    assert gateway.registry.specs == {}


async def test_put_replaces_spec_and_returns_it(gateway: Gateway) -> None:
    assert (await post_spec(gateway, FULL_SPEC))[0] == 201
    updated = {**FULL_SPEC, "image": "img:2", "concurrency": 9}
    async with gateway.session.put(gateway.url("/v1/functions/echo"), json=updated) as response:
        assert response.status == 200
        body = await response.json()
    assert body == updated
    request = gateway.registry.updates[-1]
    assert request.name == "echo"
    assert request.spec.image == "img:2"


async def test_put_unknown_function_is_404(gateway: Gateway) -> None:
    async with gateway.session.put(gateway.url("/v1/functions/echo"), json=FULL_SPEC) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "NOT_FOUND"


async def test_put_with_other_name_in_body_is_400(gateway: Gateway) -> None:
    async with gateway.session.put(gateway.url("/v1/functions/other"), json=FULL_SPEC) as response:
        assert response.status == 400
        body = await response.json()
    assert body["error"]["message"].startswith("name:")
    assert gateway.registry.updates == []


async def test_put_invalid_spec_is_422(gateway: Gateway) -> None:
    async with gateway.session.put(
        gateway.url("/v1/functions/echo"), json={**FULL_SPEC, "queueSize": "7"}
    ) as response:
        assert response.status == 422
        assert (await response.json())["error"]["message"].startswith("queueSize:")


async def test_put_out_of_range_value_is_the_registry_answer(gateway: Gateway) -> None:
    assert (await post_spec(gateway, FULL_SPEC))[0] == 201
    for value in (10_001, 2**70):
        async with gateway.session.put(
            gateway.url("/v1/functions/echo"), json={**FULL_SPEC, "concurrency": value}
        ) as response:
            assert response.status == 400
            assert await response.json() == {
                "error": {"code": "INVALID_ARGUMENT", "message": "concurrency: must be between 1 and 10000"}
            }


async def test_put_invalid_path_name_is_404(gateway: Gateway) -> None:
    async with gateway.session.put(
        gateway.url("/v1/functions/-bad"), json={**FULL_SPEC, "name": "x"}
    ) as response:
        assert response.status == 404


async def test_delete_is_204_then_404(gateway: Gateway) -> None:
    assert (await post_spec(gateway, FULL_SPEC))[0] == 201
    async with gateway.session.delete(gateway.url("/v1/functions/echo")) as response:
        assert response.status == 204
        assert await response.read() == b""
    async with gateway.session.delete(gateway.url("/v1/functions/echo")) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "NOT_FOUND"


async def test_delete_invalid_name_is_404_without_registry_call(gateway: Gateway) -> None:
    gateway.registry.failures.fail("Delete", grpc.StatusCode.INTERNAL, "must not be called")
    async with gateway.session.delete(gateway.url("/v1/functions/_x")) as response:
        assert response.status == 404
    assert "Delete" in gateway.registry.failures.pending


async def test_mutations_raise_min_registry_revision_of_invocations(gateway: Gateway) -> None:
    status, _ = await post_spec(gateway, {"name": "rev", "image": "img"})
    assert status == 201
    registered_revision = gateway.registry.specs["rev"].revision
    async with gateway.session.post(gateway.url("/v1/functions/rev:invoke"), json={"input": 1}) as response:
        assert response.status == 200
    assert gateway.scheduler.invokes[-1].min_registry_revision == registered_revision

    async with gateway.session.delete(gateway.url("/v1/functions/rev")) as response:
        assert response.status == 204
    async with gateway.session.post(gateway.url("/v1/functions/rev:enqueue"), json={}) as response:
        assert response.status == 202
    assert gateway.scheduler.enqueues[-1].min_registry_revision == gateway.registry.revision
    assert gateway.registry.revision > registered_revision


async def test_a_restarted_registrys_epoch_replaces_the_old_revision_mark(gateway: Gateway) -> None:
    """Finding 7: after a registry restart (revisions from 0 again) the old high mark is not sent on."""
    gateway.registry.epoch, gateway.registry.revision = 1_000, 40
    assert (await post_spec(gateway, {"name": "before", "image": "img"}))[0] == 201
    async with gateway.session.post(gateway.url("/v1/functions/before:invoke"), json={}) as response:
        assert response.status == 200
    sent = gateway.scheduler.invokes[-1]
    assert (sent.min_registry_epoch, sent.min_registry_revision) == (1_000, 41)

    gateway.registry.epoch, gateway.registry.revision = 2_000, 0  # restarted, memory store
    async with gateway.session.delete(gateway.url("/v1/functions/before")) as response:
        assert response.status == 204
    async with gateway.session.post(gateway.url("/v1/functions/before:enqueue"), json={}) as response:
        assert response.status == 202
    sent = gateway.scheduler.enqueues[-1]
    assert (sent.min_registry_epoch, sent.min_registry_revision) == (2_000, 1)


async def test_marks_stay_monotonic_within_an_epoch_and_ignore_an_older_one() -> None:
    # Lazy channels: nothing connects to these addresses.
    clients = GatewayClients(
        grpc.aio.insecure_channel("127.0.0.1:1"), grpc.aio.insecure_channel("127.0.0.1:1")
    )
    clients.observe_revision(5)  # a registry that sends no epoch: revisions as they are
    clients.observe_revision(3)
    assert (clients.min_registry_epoch, clients.min_registry_revision) == (0, 5)
    clients.observe_revision(2, epoch=7)
    assert (clients.min_registry_epoch, clients.min_registry_revision) == (7, 2)
    clients.observe_revision(9, epoch=6)  # an answer that crossed the restart
    clients.observe_revision(1, epoch=7)
    assert (clients.min_registry_epoch, clients.min_registry_revision) == (7, 2)
