"""Cut a full (unsplit) tensor into this rank's tensor-parallel shard, and back.

Pure slicing; the shard's shape tells which dimension is split (heads, MLP neurons
and vocabulary rows are split; norms are replicated). The SwiGLU ``linear_fc1``
is special: rank r holds ``[gate_r; up_r]``, not the r-th slice of ``[gate; up]``.
"""

from __future__ import annotations

import torch


def split_dim(full_shape: tuple, shard_shape: tuple, tp: int) -> int | None:
    """The dimension split across ``tp`` ranks, or None when the tensor is replicated."""
    if tuple(full_shape) == tuple(shard_shape):
        return None
    diff = [d for d, (a, b) in enumerate(zip(full_shape, shard_shape)) if a != b]
    if (
        len(full_shape) != len(shard_shape)
        or len(diff) != 1
        or full_shape[diff[0]] != shard_shape[diff[0]] * tp
    ):
        raise ValueError(
            f"shard shape {tuple(shard_shape)} is not a {tp}-way split of {tuple(full_shape)}"
        )
    return diff[0]


def tp_shard(
    full: torch.Tensor, shard_shape: tuple, rank: int, tp: int, gated: bool = False
) -> torch.Tensor:
    """Rank ``rank``'s piece of ``full`` for a parameter of ``shard_shape``."""
    dim = split_dim(full.shape, shard_shape, tp)
    if dim is None:
        return full
    if gated:
        gate, up = full.chunk(2, dim=dim)
        return torch.cat([gate.chunk(tp, dim=dim)[rank], up.chunk(tp, dim=dim)[rank]], dim=dim)
    return full.chunk(tp, dim=dim)[rank]


def tp_unshard(shards: list[torch.Tensor], dim: int | None, gated: bool = False) -> torch.Tensor:
    """Inverse of :func:`tp_shard` given every rank's piece in rank order."""
    if dim is None:
        return shards[0]
    if gated:
        gates, ups = zip(*(s.chunk(2, dim=dim) for s in shards))
        return torch.cat(list(gates) + list(ups), dim=dim)
    return torch.cat(shards, dim=dim)
