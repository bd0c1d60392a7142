"""Every YAML under examples/ opens with the command that runs it, and that command validates."""

import shlex

import pytest

from minitron import cli

from helpers import ROOT

YAMLS = sorted((ROOT / "examples").rglob("*.yaml"))


def test_there_are_examples():
    assert len(YAMLS) >= 4


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_starts_with_its_command_and_loads(path, tmp_path, monkeypatch):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# minitron "), "first line must be the exact command"
    argv = shlex.split(first[len("# minitron ") :])
    rel = str(path.relative_to(ROOT))
    assert rel in argv, f"the command must name its own file ({rel})"
    argv[argv.index(rel)] = str(path)
    monkeypatch.chdir(tmp_path)  # outputs are relative: nothing exists here yet
    name, cfg = cli.parse(argv)
    assert name in cli.COMMANDS
