"""Which of a process image's paths a pod's volume mounts would hide (``kubelet/imagefs.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

from fakekube.kubelet.imagefs import hidden, image_paths

CLONE = Path("/tmp/clone")
VENV = CLONE / ".tox" / "deploy"


def test_a_path_under_a_volume_is_hidden_once() -> None:
    # The venv is under the clone: binding the clone back brings it along.
    assert hidden([CLONE, VENV, Path("/usr")], {Path("/tmp")}) == [CLONE]


def test_a_volume_between_two_image_paths_hides_the_deeper_again() -> None:
    assert hidden([CLONE, VENV], {Path("/tmp"), CLONE / ".tox"}) == [CLONE, VENV]


def test_a_volume_at_an_image_path_itself_is_the_pods() -> None:
    assert hidden([CLONE, VENV], {CLONE}) == [VENV]
    assert hidden([CLONE], {Path("/etc/hosts"), CLONE / "data"}) == []


def test_the_image_is_the_interpreter_and_the_programs_files_never_the_sandbox(tmp_path: Path) -> None:
    program = tmp_path / "app" / "main.py"
    program.parent.mkdir()
    program.touch()
    sandbox = tmp_path / "pod"
    sandbox.mkdir()
    found = image_paths([sys.executable, str(program), str(sandbox / "x")], {"PATH": "/nowhere"}, sandbox)
    assert Path(sys.prefix).resolve() in found
    assert Path(sys.executable).parent.resolve() in found
    assert program.parent.resolve() in found
    assert all(path != sandbox and sandbox not in path.parents for path in found)
