"""Conventions of the runtime and example function Dockerfiles, checked by parsing them.

This suite needs no docker engine; the container suite (tests/containers) builds and runs
both images for real.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nanofaas_runtime.handler import Context, load_handler

RUNTIME_DIR = Path(__file__).resolve().parents[1]
RUNTIME_DOCKERFILE = RUNTIME_DIR / "Dockerfile"
EXAMPLE_DIR = RUNTIME_DIR / "examples" / "function-image"

DEFAULT_BASE = "python:3.11-slim-bookworm"
VENV_PYTHON = "/opt/nanofaas/bin/python"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "clang", "make", "cmake", "python3-dev")
EXACT_VERSION = re.compile(r"(^|[^0-9.])\d+\.\d+\.\d+([^0-9.]|$)")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper-cased
    args: str  # the arguments, continuation lines joined

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of the arguments, or None for the shell form."""
        try:
            parsed = json.loads(self.args)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, list) and all(isinstance(a, str) for a in parsed) else None


@dataclass
class Stage:
    base: str  # FROM's image, with ARG defaults substituted
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            values.update(parse_env(instruction.args))
        return values


def parse_instructions(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, `\\` continuations joined."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    if pending.strip():
        keyword, _, args = pending.strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    return instructions


def parse_env(args: str) -> dict[str, str]:
    """`ENV K=V K2="V 2"` or the legacy `ENV K V`."""
    words = shlex.split(args)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def substitute(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: variables.get(m.group(1), m.group(0)), value)


def parse_stages(text: str) -> list[Stage]:
    """Stages of a (multi-stage) Dockerfile; global ARG defaults are substituted into FROM."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in parse_instructions(text):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(substitute(words[0], global_args), name))
        elif not stages:
            if instruction.keyword == "ARG":
                key, _, default = instruction.args.partition("=")
                global_args[key.strip()] = default.strip()
        else:
            stages[-1].instructions.append(instruction)
    return stages


def is_pinned(image: str) -> bool:
    """A digest, or a tag that is not `latest` and holds an exact x.y.z version."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return False
    tag = last.split(":", 1)[1]
    return tag != "latest" and EXACT_VERSION.search(tag) is not None


def is_non_root(user: str) -> bool:
    name = user.split(":", 1)[0].strip()
    return name not in ("", "root", "0")


# --- the parser itself ------------------------------------------------------------------------


def test_parser_joins_continuations_and_skips_comments() -> None:
    text = (
        'ARG V=1.2.3\n# comment\nFROM img:${V} AS b\nRUN a \\\n  # inline\n  && b\nENTRYPOINT ["x", "-y"]\n'
    )
    [stage] = parse_stages(text)
    assert (stage.base, stage.name) == ("img:1.2.3", "b")
    assert [(i.keyword, i.args) for i in stage.instructions] == [
        ("RUN", "a && b"),
        ("ENTRYPOINT", '["x", "-y"]'),
    ]
    assert stage.instructions[1].exec_form() == ["x", "-y"]
    assert Instruction("CMD", "python app.py").exec_form() is None


def test_parse_env_forms() -> None:
    assert parse_env('A=1 B="two words"') == {"A": "1", "B": "two words"}
    assert parse_env("LEGACY some value") == {"LEGACY": "some value"}


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("python:3.11.10-slim-bookworm", True),
        ("python@sha256:abc", True),
        ("python:3.11-slim", False),
        ("python:latest", False),
        ("python", False),
        ("localhost:5000/python", False),
    ],
)
def test_is_pinned(image: str, pinned: bool) -> None:
    assert is_pinned(image) is pinned


# --- the runtime image ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime_stages() -> list[Stage]:
    return parse_stages(RUNTIME_DOCKERFILE.read_text())


def test_runtime_builds_every_stage_on_the_base_image_argument() -> None:
    text = RUNTIME_DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=" + DEFAULT_BASE in text.splitlines()
    stages = parse_stages(text)
    assert len(stages) >= 2
    # One base for all stages: the virtualenv made in the build stage points at its interpreter.
    assert [stage.base for stage in stages] == [DEFAULT_BASE] * len(stages)
    froms = [i.args for i in parse_instructions(text) if i.keyword == "FROM"]
    assert all(args.startswith("${BASE_IMAGE}") for args in froms), froms


def test_runtime_installs_host_built_wheels_in_the_build_stage_only(runtime_stages: list[Stage]) -> None:
    build, final = runtime_stages[0], runtime_stages[-1]
    copied = [copy.args for copy in build.all("COPY")]
    assert any(args.startswith("build/wheels/deps/") for args in copied), copied
    assert [args for args in copied if "build/wheels/own/" in args] == [
        "build/wheels/own/nanofaas_runtime-*.whl /wheels/own/"
    ]
    assert "build/wheels/requirements/python-runtime.txt /wheels/requirements.txt" in copied
    installs = [run.args for run in build.all("RUN") if "pip install" in run.args]
    assert len(installs) == 2 and all("--no-index" in args for args in installs), installs
    # Third-party requirements first (their own layer), then the runtime's wheel alone.
    assert "--requirement /wheels/requirements.txt" in installs[0]
    assert "--no-deps /wheels/own/*.whl" in installs[1]
    # The final stage runs nothing: it only copies the virtualenv (no wheels, no caches).
    assert final.all("RUN") == []
    assert f"--from={build.name} /opt/nanofaas /opt/nanofaas" in [copy.args for copy in final.all("COPY")]


def test_runtime_final_stage_runs_as_a_numeric_non_root_user_with_a_tmp_volume(
    runtime_stages: list[Stage],
) -> None:
    final = runtime_stages[-1]
    users = final.all("USER")
    assert users, "the final stage must set USER"
    assert is_non_root(users[-1].args)
    assert all(part.isdigit() for part in users[-1].args.split(":")), "numeric, for runAsNonRoot"
    assert [volume.exec_form() for volume in final.all("VOLUME")] == [["/tmp"]]
    assert final.env()["HOME"] == "/tmp"


def test_runtime_entrypoint_is_the_runtime_in_exec_form(runtime_stages: list[Stage]) -> None:
    [entrypoint] = runtime_stages[-1].all("ENTRYPOINT")
    assert entrypoint.exec_form() == [VENV_PYTHON, "-m", "nanofaas_runtime"]


def test_runtime_has_no_healthcheck() -> None:
    assert all(i.keyword != "HEALTHCHECK" for i in parse_instructions(RUNTIME_DOCKERFILE.read_text()))


def test_runtime_final_stage_has_no_build_tools(runtime_stages: list[Stage]) -> None:
    for run in runtime_stages[-1].all("RUN"):
        words = set(re.split(r"[\s;&|]+", run.args))
        assert not words & set(BUILD_TOOLS), run.args


def test_runtime_listens_on_8080_on_all_interfaces(runtime_stages: list[Stage]) -> None:
    final = runtime_stages[-1]
    assert [e.args for e in final.all("EXPOSE")] == ["8080"]
    env = final.env()
    assert (env["PORT"], env["HOST"]) == ("8080", "0.0.0.0")


# --- the example function image ---------------------------------------------------------------


@pytest.fixture(scope="module")
def example_stage() -> Stage:
    [stage] = parse_stages((EXAMPLE_DIR / "Dockerfile").read_text())
    return stage


def test_example_builds_from_a_pinned_runtime_image(example_stage: Stage) -> None:
    assert example_stage.base.startswith("nanofaas/python-runtime:")
    assert is_pinned(example_stage.base)


def test_example_copies_handler_and_installs_requirements(example_stage: Stage) -> None:
    copied = " ".join(copy.args for copy in example_stage.all("COPY"))
    assert "handler.py" in copied and "requirements.txt" in copied
    assert any("pip install" in run.args and "-r" in run.args for run in example_stage.all("RUN"))
    assert example_stage.env()["HANDLER_MODULE"] == "handler"
    assert all(is_non_root(user.args) for user in example_stage.all("USER"))
    assert not example_stage.all("HEALTHCHECK")
    assert (EXAMPLE_DIR / "requirements.txt").is_file()


def test_example_handler_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR))
    assert "handler" not in sys.modules
    try:
        handler = load_handler("handler", "handle")
        result = handler.call({"input": {"text": "a b A"}, "metadata": {}}, Context())
    finally:
        sys.modules.pop("handler", None)
    assert result == {"words": 3, "distinct": 2}
