"""A process that wrote a checkpoint and is then killed leaves no process behind."""

import os
import signal
import subprocess
import sys
import time

from helpers import ROOT

WRITER = """
import sys, time, torch
from megatron.core.dist_checkpointing import ShardedTensor
from minitron.parallel import runtime
from minitron.checkpoint import dist_save
runtime.init(1, 1)
import pathlib; pathlib.Path(sys.argv[1]).mkdir()
state = {"w": ShardedTensor.from_rank_offsets("w", torch.arange(8.0))}
dist_save.dist_save(state, sys.argv[1])
print(dist_save._manager._process.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigkilled_writer_leaves_no_results_manager(tmp_path):
    """megatron-core's writer keeps a spawned multiprocessing manager for its results; killed
    with SIGKILL, the writer must take it along (it would otherwise live on as an orphan)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "ck")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        manager = int(proc.stdout.readline())
        assert _alive(manager)
        assert (tmp_path / "ck" / "metadata.json").exists()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 20
    while _alive(manager) and time.time() < deadline:
        time.sleep(0.2)
    alive = _alive(manager)
    if alive:
        os.kill(manager, signal.SIGKILL)
    assert not alive, f"the results manager {manager} outlived its killed parent"


def test_shutdown_ends_the_manager_and_a_later_save_starts_another(tmp_path, world):
    import torch
    from megatron.core.dist_checkpointing import ShardedTensor

    from minitron.checkpoint import dist_save

    state = {"w": ShardedTensor.from_rank_offsets("w", torch.arange(8.0))}
    (tmp_path / "a").mkdir()
    dist_save.dist_save(state, str(tmp_path / "a"))
    first = dist_save.shutdown()
    assert first is not None
    deadline = time.time() + 10
    while _alive(first) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(first)
    (tmp_path / "b").mkdir()
    dist_save.dist_save(state, str(tmp_path / "b"))
    assert dist_save.shutdown() not in (None, first)
