"""The few collectives minitron's own code issues, each with an explicit group."""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.distributed as dist


def broadcast_object(obj: Any, src: int = 0, group: Optional[dist.ProcessGroup] = None) -> Any:
    """``obj`` from global rank ``src`` to every rank of ``group`` (default: the world)."""
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=group)
    return box[0]


def gather_vocab(logits: torch.Tensor, group: dist.ProcessGroup) -> torch.Tensor:
    """Concatenate vocab-parallel logits ``[..., v/tp]`` -> ``[..., v]`` over ``group``.

    Only for tests, export checks and small evaluations: training and losses stay
    vocab-parallel."""
    world = dist.get_world_size(group)
    if world == 1:
        return logits
    parts = [torch.empty_like(logits) for _ in range(world)]
    dist.all_gather(parts, logits.contiguous(), group=group)
    return torch.cat(parts, dim=-1)


def all_reduce_sum(t: torch.Tensor, group: Optional[dist.ProcessGroup]) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size(group) > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t


def first_error(message: Optional[str], group: Optional[dist.ProcessGroup] = None) -> Optional[str]:
    """The first non-None ``message`` over the ranks of ``group`` (default: the world), on
    every rank: so that a check failing on one rank stops all of them together."""
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return message
    found: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(found, message, group=group)
    return next((m for m in found if m is not None), None)
