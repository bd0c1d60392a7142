"""What a checkpoint directory holds, told by its file names alone (nothing is read).

A leaf module: the config schemas use it to check a path before any work, the loaders to
pick a reader.
"""

from __future__ import annotations

import re
from pathlib import Path

TRACKER = "latest_checkpointed_iteration.txt"
"""Megatron-LM's file naming the latest iteration ("release" or a number)."""
ITERATION_DIR = re.compile(r"^(iter_\d+|release)$")


def is_megatron(path: str | Path) -> bool:
    """Whether ``path`` looks like a Megatron-LM, Megatron-Bridge or NeMo 2 checkpoint."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return False
    if (p / TRACKER).is_file():
        return True
    if ITERATION_DIR.match(p.name) and (p / "metadata.json").is_file():
        return True
    return (p / "weights" / "metadata.json").is_file() and (p / "context").is_dir()
