"""Importance scores on disk: one layout-independent file, full-size tensors with names.

    <dir>/scores.safetensors   channels [h]; layers.{i}.heads [q]; layers.{i}.neurons [f];
                               layers.block_influence [L]; blocks.block_influence [L, L]
                               (block s..e at [s, e], NaN where not measured)
    <dir>/scores.json          method, aggregation, calibration, the architecture scored,
                               the layout it was scored at

Scores made at TP=2 prune at TP=1 (and any other layout); one scoring run serves
every target size. Written atomically.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import torch

from minitron.checkpoint import atomic
from minitron.errors import CheckpointError
from minitron.models.arch import ModelArch

FORMAT = "minitron-scores"


def expected_shapes(arch: ModelArch) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"channels": (arch.hidden_size,)}
    for i in range(arch.num_layers):
        shapes[f"layers.{i}.heads"] = (arch.num_attention_heads,)
        shapes[f"layers.{i}.neurons"] = (arch.ffn_hidden_size,)
    return shapes


def save_scores(
    out: str | Path,
    scores: dict[str, torch.Tensor],
    arch: ModelArch,
    meta: dict,
    overwrite: bool = False,
) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    want = expected_shapes(arch)
    for name, shape in want.items():
        if name not in scores or tuple(scores[name].shape) != shape:
            got = tuple(scores[name].shape) if name in scores else None
            raise ValueError(f"score {name}: shape {got}, expected {shape}")
    tmp = atomic.begin(out, "scores")
    save_file(
        {k: v.float().contiguous() for k, v in scores.items()}, str(tmp / "scores.safetensors")
    )
    info = {
        "format": FORMAT,
        "version": 1,
        "arch": arch.to_dict(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **meta,
    }
    (tmp / "scores.json").write_text(json.dumps(info, indent=2))
    atomic.commit(tmp, out, overwrite, "scores")
    return out


def load_scores(
    path: str | Path, arch: ModelArch | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata); checks they fit ``arch`` when given."""
    from safetensors.torch import load_file

    p = Path(path)
    if not (p / "scores.json").is_file() or not (p / "scores.safetensors").is_file():
        raise CheckpointError(
            f"{p}: not a minitron score directory (scores.json and "
            "scores.safetensors); make one with `minitron score`"
        )
    meta = json.loads((p / "scores.json").read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{p}/scores.json: format {meta.get('format')!r} is not {FORMAT!r}")
    tensors = load_file(str(p / "scores.safetensors"))
    if arch is not None:
        scored = ModelArch.from_dict(meta["arch"])
        for f in (
            "hidden_size",
            "ffn_hidden_size",
            "num_layers",
            "num_attention_heads",
            "num_query_groups",
        ):
            if getattr(scored, f) != getattr(arch, f):
                raise CheckpointError(
                    f"{p}: scores are for {f}={getattr(scored, f)}, the model "
                    f"has {getattr(arch, f)}; score this model first"
                )
        for name, shape in expected_shapes(arch).items():
            if name not in tensors or tuple(tensors[name].shape) != shape:
                raise CheckpointError(f"{p}: {name} is missing or has the wrong shape")
    return tensors, meta
