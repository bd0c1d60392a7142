"""Collectives that assemble whole tensors and score vectors from TP/PP-split pieces.

They take tensors, shapes and process groups, never a model: which parameter is split
along which dimension, and which stage owns it, is the caller's knowledge
(``minitron/models/full_tensors.py`` for weights, ``minitron/prune/collect.py`` for
importance scores).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from minitron.parallel.shard import tp_unshard


def first_rank_of_each_stage(pp: int, pp_rank: int, tp_rank: int, dp_rank: int) -> list[int]:
    """Global rank of (pp = s, tp = 0, dp = 0) for every stage s (collective)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [0] * pp
    where: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(where, (pp_rank, tp_rank, dp_rank))
    return [where.index((s, 0, 0)) for s in range(pp)]


def all_gather_tp(local: torch.Tensor, dim: int, group, gated: bool) -> torch.Tensor:
    """The whole tensor from this TP group's shards along ``dim`` (SwiGLU-aware when
    ``gated``: the fused gate/up rows are unsharded as two halves)."""
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    if world == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local.contiguous(), group=group)
    return tp_unshard(parts, dim, gated=gated)


def broadcast_whole(t: torch.Tensor | None, shape, dtype, device, src: int) -> torch.Tensor:
    """``t`` from global rank ``src`` on every rank (the others pass None)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        assert t is not None
        return t
    if t is None:
        t = torch.empty(shape, dtype=dtype, device=device)
    t = t.contiguous()
    dist.broadcast(t, src=src)
    return t


def gather_tp_vector(local: torch.Tensor, group) -> torch.Tensor:
    """Concatenate per-rank slices of a score vector (heads, neurons) over the TP group."""
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    if world == 1:
        return local
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local.contiguous(), group=group)
    return torch.cat(parts)


def merge_over_pp(scores: dict[str, torch.Tensor], group) -> dict[str, torch.Tensor]:
    """Every stage's named score tensors, merged, on every rank of the PP group."""
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    if world == 1:
        return scores
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, {k: v.cpu() for k, v in scores.items()}, group=group)
    merged: dict[str, torch.Tensor] = {}
    for part in parts:
        for k, v in part.items():
            merged[k] = merged[k] + v if k in merged and k.startswith("partial.") else v
    return merged


def reduce_over_dp(t: torch.Tensor, op: str, group) -> torch.Tensor:
    """Sum or max of a tensor over the data-parallel group (calibration split across DP)."""
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    if world == 1:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM, group=group)
    return t
