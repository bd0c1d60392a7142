"""Evaluate a model with some of its layers skipped, without rebuilding or copying weights.

    with skip_layers(model, [20, 21, 22]):
        score(model, ...)

megatron-core's TransformerBlock runs the layers in ``decoder.layers``; for the
duration of the block that list holds only the kept layers (the same module
objects: nothing is copied) and is restored afterwards, also on error. Indices
are global (0-based over the whole model); each PP stage drops the ones it owns.
Depth pruning calls this for every candidate block.
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch


@contextlib.contextmanager
def skip_layers(model, layers: Iterable[int]):
    drop = set(int(i) for i in layers)
    arch = getattr(model, "minitron_arch", None)
    if arch is not None and not all(0 <= i < arch.num_layers for i in drop):
        raise ValueError(f"layers to skip {sorted(drop)} must lie in 0..{arch.num_layers - 1}")
    block = model.decoder
    original = block.layers
    if not drop:
        yield model
        return
    block.layers = torch.nn.ModuleList([m for m in original if m.layer_number - 1 not in drop])
    try:
        yield model
    finally:
        block.layers = original
