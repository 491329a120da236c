"""`nanofaas`: scaffold, deploy, invoke, watch executions, read logs, see queues.

Every command talks to the gateway at --url / NANOFAAS_URL through the REST
client; failures become one line on stderr with a hint, and an exit code from
exit_codes.py.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.shell_completion import get_completion_class

from nanofaas_client.cli import exit_codes
from nanofaas_client.cli.deploy import Prepared, prepare, prepare_image
from nanofaas_client.cli.image import DEFAULT_BASE_IMAGE, EngineMissing, ImageError, registry_problem
from nanofaas_client.cli.output import FORMATS, Output
from nanofaas_client.cli.scaffold import ScaffoldError, scaffold
from nanofaas_client.cli.venvs import VenvError
from nanofaas_client.errors import (
    AlreadyExists,
    ExecutionFailed,
    NanofaasError,
    NotFound,
    PlatformUnreachable,
    RateLimited,
    error_for,
)
from nanofaas_client.manifest import ManifestError, dump_manifest
from nanofaas_client.models import Execution, FunctionStatus, Invocation, LogLine
from nanofaas_client.rest import DEFAULT_URL, Client


@dataclass
class State:
    url: str
    out: Output
    retry: bool = False
    token: str = ""
    # What the command is about, for a helpful 404 ("function" or "execution", and its name).
    subject: tuple[str, str] = ("", "")
    _client: Client | None = field(default=None, repr=False)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.url, retry_rate_limited=self.retry, token=self.token)
        return self._client

    def about(self, kind: str, name: str) -> None:
        self.subject = (kind, name)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _hint(state: State, error: NanofaasError) -> str:
    """The error, plus what to do about it for the common cases."""
    if isinstance(error, PlatformUnreachable):
        return (
            f"cannot reach the nanofaas platform at {state.url}.\n"
            "  Start it with `make up` in a nanofaas checkout (or `nanofaas up` there),\n"
            "  or point --url / NANOFAAS_URL at a running gateway."
        )
    if isinstance(error, NotFound):
        kind, name = state.subject
        if kind == "function":
            return f"{error.message}{_close_names(state, name)}"
        if kind == "execution":
            hint = "ended executions are kept for a while; list recent ones: nanofaas exec ls"
            return f"{error.message}\n  {hint}"
    if isinstance(error, RateLimited):
        wait = f"{error.retry_after_s:g} s" if error.retry_after_s is not None else "a moment"
        reason = f", reason: {error.reason}" if error.reason else ""
        hint = f"retry after {wait} (Retry-After{reason}); --retry waits and retries by itself"
        return f"{error.message}\n  {hint}"
    if isinstance(error, AlreadyExists):
        return f"{error.message}\n  `nanofaas fn deploy` updates an existing function; `fn rm` deletes it"
    if isinstance(error, ExecutionFailed) and error.execution_id:
        return f"execution {error.execution_id} failed: {error}"
    return str(error)


def _close_names(state: State, name: str) -> str:
    try:
        names = [summary.name for summary in state.client.list_functions()]
    except NanofaasError:
        return ""
    if not names:
        return "\n  no function is registered; create one: nanofaas fn init NAME && nanofaas fn deploy NAME"
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    if close:
        return f"\n  did you mean: {', '.join(close)}?"
    return f"\n  registered: {', '.join(sorted(names)[:10])}"


class NanofaasGroup(click.Group):
    """Turns the client's exceptions into a message and a documented exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NanofaasError as error:
            state = ctx.find_object(State)
            message = _hint(state, error) if state is not None else str(error)
            _problem(ctx, message)
            ctx.exit(exit_codes.exit_code_for(error))
        except (ManifestError, ScaffoldError) as error:
            _problem(ctx, str(error))
            ctx.exit(exit_codes.USAGE)
        except EngineMissing as error:
            _problem(ctx, str(error))
            ctx.exit(exit_codes.ENGINE_MISSING)
        except (VenvError, ImageError) as error:
            _problem(ctx, str(error))
            ctx.exit(exit_codes.BUILD_FAILED)


def _problem(ctx: click.Context, message: str) -> None:
    state = ctx.find_object(State)
    if state is not None:
        state.out.problem(message)
    else:
        click.echo(f"error: {message}", err=True)


pass_state = click.make_pass_decorator(State)


@click.group(cls=NanofaasGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    envvar="NANOFAAS_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The gateway's URL (or NANOFAAS_URL).",
)
@click.option(
    "--token",
    envvar="NANOFAAS_TOKEN",
    default="",
    show_default=False,
    help="API bearer token, when the platform has authentication on (or NANOFAAS_TOKEN).",
)
@click.option("-o", "--output", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--retry", is_flag=True, help="On 429, wait for Retry-After and try again (3 attempts).")
@click.version_option(package_name="nanofaas-client")
@click.pass_context
def cli(ctx: click.Context, url: str, token: str, output: str, retry: bool) -> None:
    """nanofaas: deploy Python functions and invoke them.

    \b
    Quick start (with the platform running: `make up`):
      nanofaas fn init hello
      nanofaas fn deploy hello
      nanofaas invoke hello -d '{"name": "you"}'
      nanofaas logs hello
    """
    state = State(url.rstrip("/"), Output(output), retry, token.strip())
    ctx.obj = state
    ctx.call_on_close(state.close)


# -- functions -------------------------------------------------------------------------------


@cli.group(cls=NanofaasGroup)
def fn() -> None:
    """Functions: init, deploy, ls, get, update, rm."""


@fn.command("init")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@pass_state
def fn_init(state: State, name: str, parent: Path) -> None:
    """Create NAME/ with handler.py, requirements.txt and function.yaml."""
    folder = scaffold(name, parent)
    state.out.note(f"created {folder}/ (handler.py, requirements.txt, function.yaml)")
    state.out.note(f"next: nanofaas fn deploy {folder}")


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """How `fn deploy` makes the function runnable: the local backend's way, or as an image."""

    build: bool = False
    registry: str = ""
    base_image: str = DEFAULT_BASE_IMAGE

    @property
    def wanted(self) -> bool:
        return self.build or bool(self.registry)


def _check_registry(_: click.Context, __: click.Parameter, value: str) -> str:
    problem = registry_problem(value) if value else None
    if problem is not None:
        raise click.BadParameter(problem)
    return value


def _image_options(function: Any) -> Any:
    """The image options of `fn deploy` and `fn update`."""
    for option in reversed(
        (
            click.option(
                "--image-build",
                "image_build",
                is_flag=True,
                envvar="NANOFAAS_IMAGE_BUILD",
                help="Build an image FROM the runtime image with docker and register it (Kubernetes).",
            ),
            click.option(
                "--registry",
                envvar="NANOFAAS_REGISTRY",
                default="",
                callback=_check_registry,
                help="Tag the image <registry>/<name>:<hash> and push it there (implies --image-build).",
            ),
            click.option(
                "--base-image",
                envvar="NANOFAAS_BASE_IMAGE",
                default=DEFAULT_BASE_IMAGE,
                show_default=True,
                help="The runtime image the function's image is built FROM.",
            ),
        )
    ):
        function = option(function)
    return function


def _prepare(state: State, target: Path, image: ImageOptions) -> Prepared:
    out = state.out

    def make(on_line: Any) -> Prepared:
        if image.wanted:
            return prepare_image(target, on_line, base_image=image.base_image, registry=image.registry)
        return prepare(target, on_line)

    if out.errors.is_terminal:
        with out.errors.status("preparing…") as status:
            return make(lambda line: status.update(line[:100]))
    return make(lambda line: out.note(line) if not line.startswith(" ") else None)


def _deploy(state: State, target: Path, *, create: bool, image: ImageOptions) -> tuple[dict[str, Any], bool]:
    out = state.out
    prepared = _prepare(state, target, image)
    spec = prepared.spec
    if prepared.venv is not None:
        verb = "built" if prepared.venv.created else "reusing"
        out.note(f"{verb} virtualenv {prepared.venv.path}")
    if prepared.image is not None:
        built = prepared.image
        out.note(
            f"{'built' if built.built else 'reusing'} image {built.tag}{' (pushed)' if built.pushed else ''}"
        )
    state.about("function", str(spec["name"]))
    if create:
        try:
            state.client.register(spec)
            return spec, True
        except AlreadyExists:
            pass
    return state.client.update(spec), False


@fn.command("deploy")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@_image_options
@pass_state
def fn_deploy(state: State, target: Path, image_build: bool, registry: str, base_image: str) -> None:
    """Register (or update) the function of a folder or a function.yaml.

    \b
    Local backend (default): the folder goes on PYTHONPATH; a requirements.txt
    listing packages gets a virtualenv of the function's own, cached under
    $NANOFAAS_CACHE_DIR (default ~/.cache/nanofaas/venvs), which the runtime runs in.
    \b
    Kubernetes (--image-build, or --registry): an image FROM the runtime image
    holds the folder and its requirements (wheels built here, installed offline);
    tagged <registry>/<name>:<content hash>, pushed when --registry is given.
    """
    options = ImageOptions(image_build, registry, base_image)
    spec, created = _deploy(state, target, create=True, image=options)
    _deployed(state, spec, "created" if created else "updated", options)


@fn.command("update")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@_image_options
@pass_state
def fn_update(state: State, target: Path, image_build: bool, registry: str, base_image: str) -> None:
    """Update an existing function from a folder or a function.yaml (same options as deploy)."""
    options = ImageOptions(image_build, registry, base_image)
    spec, _ = _deploy(state, target, create=False, image=options)
    _deployed(state, spec, "updated", options)


def _deployed(state: State, spec: dict[str, Any], verb: str, image: ImageOptions) -> None:
    name = str(spec["name"])
    value = {"name": name, "result": verb}
    pairs = [("NAME", name), ("RESULT", verb)]
    if image.wanted:  # the tag it was built as
        value["image"] = str(spec["image"])
        pairs.append(("IMAGE", value["image"]))
    state.out.record(pairs, value)
    state.out.note(f'invoke it: nanofaas invoke {name} -d \'{{"name": "you"}}\'')


@fn.command("ls")
@pass_state
def fn_ls(state: State) -> None:
    """List the registered functions."""
    functions = sorted(state.client.list_functions(), key=lambda f: f.name)
    rows = [[f.name, f.image, f.execution_mode, str(f.concurrency), f.created_at] for f in functions]
    value = [
        {
            "name": f.name,
            "image": f.image,
            "executionMode": f.execution_mode,
            "concurrency": f.concurrency,
            "createdAt": f.created_at,
        }
        for f in functions
    ]
    state.out.table(["NAME", "IMAGE", "MODE", "CONCURRENCY", "CREATED"], rows, value)


@fn.command("get")
@click.argument("name")
@pass_state
def fn_get(state: State, name: str) -> None:
    """Show a function's spec (as function.yaml in table format)."""
    state.about("function", name)
    spec = state.client.get_function(name)
    if state.out.format == "table":
        click.echo(dump_manifest(spec), nl=False)
    else:
        state.out.data(spec)


@fn.command("rm")
@click.argument("name")
@pass_state
def fn_rm(state: State, name: str) -> None:
    """Delete a function (its queued executions end with FUNCTION_DELETED)."""
    state.about("function", name)
    state.client.delete(name)
    state.out.record([("NAME", name), ("RESULT", "deleted")], {"name": name, "result": "deleted"})


# -- invocations ---------------------------------------------------------------------------


def _read_input(data: str | None) -> Any:
    if data is None:
        return None
    if data == "-":
        text = sys.stdin.read()
    elif data.startswith("@"):
        try:
            text = Path(data[1:]).read_text()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {data[1:]}: {exc.strerror or exc}", param_hint="-d"
            ) from None
    else:
        text = data
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"not JSON ({exc.msg}); a string needs quotes: -d '\"text\"'", param_hint="-d"
        ) from None


def _headers(values: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition(":")
        if not sep:
            name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r}: expected 'Name: value'", param_hint="--header")
        headers[name.strip()] = text.strip()
    return headers


def _print_output(state: State, output: Any) -> None:
    if isinstance(output, bytes):
        click.echo(output, nl=False)
    elif state.out.format == "table":
        click.echo(json.dumps(output, indent=2, ensure_ascii=False))
    else:
        state.out.data(output)


def _invocation_value(invocation: Invocation) -> dict[str, Any]:
    output = invocation.output
    return {
        "executionId": invocation.execution_id,
        "status": invocation.status,
        "output": output if not isinstance(output, bytes) else None,
    }


@cli.command("invoke")
@click.argument("name")
@click.option("-d", "--data", help="The input: JSON, @file (JSON in a file) or - (JSON on stdin).")
@click.option("--async", "run_async", is_flag=True, help="Enqueue and print the execution id.")
@click.option("--wait", is_flag=True, help="With --async: wait for the end and print the result.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.001),
    help="Seconds: lowers the function's timeout (sync), or how long --wait waits (default 60).",
)
@click.option("--idempotency-key", default="", help="Repeated within the TTL: the same execution.")
@click.option(
    "--header", "-H", "header_values", multiple=True, help="An extra header 'Name: value' (repeatable)."
)
@pass_state
def invoke_command(
    state: State,
    *,
    name: str,
    data: str | None,
    run_async: bool,
    wait: bool,
    timeout: float | None,
    idempotency_key: str,
    header_values: tuple[str, ...],
) -> None:
    """Invoke a function (sync by default) and print its output."""
    state.about("function", name)
    value = _read_input(data)
    headers = _headers(header_values)
    if wait and not run_async:
        raise click.UsageError("--wait goes with --async (a sync invocation always waits)")
    client = state.client
    if not run_async:
        timeout_ms = int(timeout * 1000) if timeout is not None else None
        invocation = client.invoke(
            name, value, idempotency_key=idempotency_key, timeout_ms=timeout_ms, headers=headers
        )
        if state.out.format == "table":
            _print_output(state, invocation.output)
        else:
            state.out.data(_invocation_value(invocation))
        return
    enqueued = client.enqueue(name, value, idempotency_key=idempotency_key, headers=headers)
    if not wait:
        if state.out.format == "table":
            click.echo(enqueued.execution_id)
        else:
            state.out.data({"executionId": enqueued.execution_id, "status": enqueued.status})
        return
    state.about("execution", enqueued.execution_id)
    _finished(state, client.wait(enqueued.execution_id, timeout or 60.0), output_only=True)


# -- executions ------------------------------------------------------------------------------


def _execution_pairs(execution: Execution) -> list[tuple[str, str]]:
    pairs = [
        ("ID", execution.execution_id),
        ("FUNCTION", execution.function_name),
        ("STATUS", execution.status),
        ("ATTEMPTS", str(execution.attempts)),
        ("ENQUEUED", execution.enqueued_at or ""),
        ("STARTED", execution.started_at or ""),
        ("FINISHED", execution.finished_at or ""),
        ("TRACE", execution.trace_id),
    ]
    if execution.error is not None:
        pairs.append(("ERROR", f"{execution.error.code}: {execution.error.message}"))
    if execution.status == "success":
        pairs.append(("OUTPUT", json.dumps(execution.output, ensure_ascii=False)))
    return pairs


def _finished(state: State, execution: Execution, *, output_only: bool = False) -> None:
    """Print an ended execution; a failed one exits with its error family's code."""
    if execution.status == "success" and output_only:
        if state.out.format == "table":
            _print_output(state, execution.output)
        else:
            state.out.data(execution.raw)
        return
    state.out.record(_execution_pairs(execution), execution.raw)
    if execution.error is not None or execution.status in ("error", "timeout"):
        code = (
            execution.error.code if execution.error else ("TIMEOUT" if execution.status == "timeout" else "")
        )
        message = execution.error.message if execution.error else execution.status
        raise error_for(code, message, execution_id=execution.execution_id)


@cli.group("exec", cls=NanofaasGroup)
def exec_group() -> None:
    """Executions: get, wait, ls."""


@exec_group.command("get")
@click.argument("execution_id")
@pass_state
def exec_get(state: State, execution_id: str) -> None:
    """Show an execution's status (and output once it succeeded)."""
    state.about("execution", execution_id)
    execution = state.client.get_execution(execution_id)
    state.out.record(_execution_pairs(execution), execution.raw)


@exec_group.command("wait")
@click.argument("execution_id")
@click.option("--timeout", type=click.FloatRange(min=0.001), default=60.0, show_default=True, help="Seconds.")
@pass_state
def exec_wait(state: State, execution_id: str, timeout: float) -> None:
    """Wait (polling with back-off) until an execution ends; exits non-zero if it failed."""
    state.about("execution", execution_id)
    _finished(state, state.client.wait(execution_id, timeout))


@exec_group.command("ls")
@click.option("--function", "function", help="Only this function's executions.")
@click.option("--status", type=click.Choice(["queued", "running", "success", "error", "timeout"]))
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--before", help="Page: only executions older than this execution id.")
@pass_state
def exec_ls(state: State, function: str | None, status: str | None, limit: int, before: str | None) -> None:
    """Recent executions, newest first."""
    if function:
        state.about("function", function)
    executions = state.client.list_executions(function, status, limit, before)
    rows = [
        [
            e.execution_id,
            e.function_name,
            e.status,
            str(e.attempts),
            e.enqueued_at or "",
            e.error.code if e.error else "",
        ]
        for e in executions
    ]
    state.out.table(
        ["ID", "FUNCTION", "STATUS", "ATTEMPTS", "ENQUEUED", "ERROR"], rows, [e.raw for e in executions]
    )


# -- logs and status ---------------------------------------------------------------------------


def _log_text(line: LogLine) -> str:
    execution = line.execution_id[:12] if line.execution_id else "-"
    return f"{line.ts}  {line.stream:<6}  {execution:<12}  {line.message}"


def _log_value(line: LogLine) -> dict[str, str]:
    value = {"ts": line.ts, "stream": line.stream, "level": line.level, "message": line.message}
    if line.execution_id:
        value["executionId"] = line.execution_id
    return value


def _print_logs(state: State, lines: Iterator[LogLine] | list[LogLine]) -> None:
    for line in lines:
        if state.out.format == "json":
            click.echo(json.dumps(_log_value(line), ensure_ascii=False))
        elif state.out.format == "yaml":
            click.echo("---")
            state.out.data(_log_value(line))
        else:
            click.echo(_log_text(line))


@cli.command("logs")
@click.argument("name")
@click.option("--exec", "execution", help="Only this execution's lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--tail", type=click.IntRange(0, 10_000), help="Only the last N lines.")
@click.option("--since", help="Only lines from this time: ISO-8601 (e.g. 2024-05-01T12:00:00Z) or epoch ms.")
@pass_state
def logs_command(
    state: State, *, name: str, execution: str | None, follow: bool, tail: int | None, since: str | None
) -> None:
    """A function's log lines (what its processes printed), oldest first; -o json prints JSON lines."""
    state.about("function", name)
    if not follow:
        _print_logs(state, state.client.logs(name, execution, since, tail))
        return
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends a follow: not an error
        _print_logs(state, state.client.follow_logs(name, execution, since, tail))


def _status_value(status: FunctionStatus) -> dict[str, Any]:
    r = status.replicas
    return {
        "name": status.name,
        "replicas": {
            "current": r.current,
            "ready": r.ready,
            "desired": r.desired,
            "min": r.min,
            "max": r.max,
        },
        "inFlight": status.in_flight,
        "queued": status.queued,
        "oldestQueuedAgeMs": status.oldest_queued_age_ms,
    }


@cli.command("status")
@click.argument("name", required=False)
@pass_state
def status_command(state: State, name: str | None) -> None:
    """Queue and replicas of one function, or of every function."""
    client = state.client
    if name is not None:
        state.about("function", name)
        status = client.function_status(name)
        r = status.replicas
        pairs = [
            ("NAME", status.name),
            ("REPLICAS", f"{r.current} (ready {r.ready}, desired {r.desired}, min {r.min}, max {r.max})"),
            ("IN-FLIGHT", str(status.in_flight)),
            ("QUEUED", str(status.queued)),
            ("OLDEST-QUEUED", f"{status.oldest_queued_age_ms} ms"),
        ]
        state.out.record(pairs, _status_value(status))
        return
    statuses = []
    for summary in sorted(client.list_functions(), key=lambda f: f.name):
        try:
            statuses.append(client.function_status(summary.name))
        except NotFound:
            continue  # deleted meanwhile
    rows = [
        [
            s.name,
            str(s.replicas.current),
            str(s.replicas.ready),
            str(s.in_flight),
            str(s.queued),
            str(s.oldest_queued_age_ms),
        ]
        for s in statuses
    ]
    state.out.table(
        ["NAME", "REPLICAS", "READY", "IN-FLIGHT", "QUEUED", "OLDEST-QUEUED-MS"],
        rows,
        [_status_value(s) for s in statuses],
    )


# -- the platform ------------------------------------------------------------------------------


def find_checkout(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "scripts" / "up.py").is_file() and (folder / "Makefile").is_file():
            return folder
    return None


@cli.command("up", context_settings={"ignore_unknown_options": True})
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), help="The nanofaas checkout.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def up_command(repo: Path | None, args: tuple[str, ...]) -> None:
    """Start the platform in the foreground, like `make up` (extra ARGS go to scripts/up.py)."""
    root = repo or find_checkout(Path.cwd())
    if root is None or not (root / "scripts" / "up.py").is_file():
        raise click.UsageError("not inside a nanofaas checkout: run it there, or pass --repo PATH")
    venv_python = root / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.is_file() else sys.executable
    try:
        code = subprocess.call([python, str(root / "scripts" / "up.py"), *args], cwd=root)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_command(shell: str) -> None:
    """Print the shell completion script: eval "$(nanofaas completion bash)"."""
    completion = get_completion_class(shell)
    assert completion is not None
    click.echo(completion(cli, {}, "nanofaas", "_NANOFAAS_COMPLETE").source())


def main() -> None:
    cli(prog_name="nanofaas")


if __name__ == "__main__":
    main()
