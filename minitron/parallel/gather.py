"""Whole tensors and score vectors from a TP/PP-split model, delivered to every rank.

``full_tensor`` is collective: every rank calls it with the same name in the same
order. The owning PP stage all-gathers the TP shards and unshards them
(``shard.tp_unshard``, SwiGLU-aware); the result is broadcast from that stage's
first rank to the whole world. One tensor at a time: memory stays at the model
plus one whole tensor.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from minitron.models.convert import canonical_shape, owner_stage
from minitron.parallel.shard import split_dim, tp_unshard


def _params_by_canonical(model) -> dict[str, torch.nn.Parameter]:
    from minitron.models.weights import local_parameters

    return {c: p for c, _, p in local_parameters(model)}


class FullTensors:
    """``FullTensors(model)(name)`` -> the whole canonical tensor, on every rank (collective)."""

    def __init__(self, model):
        from megatron.core import parallel_state as ps

        self.model = model
        self.arch = model.minitron_arch
        self.params = _params_by_canonical(model)
        self.tp = ps.get_tensor_model_parallel_world_size()
        self.pp = ps.get_pipeline_model_parallel_world_size()
        self.pp_rank = ps.get_pipeline_model_parallel_rank()
        self.tp_group = ps.get_tensor_model_parallel_group()
        self.dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        self.stage_src = self._first_rank_of_each_stage()

    def _first_rank_of_each_stage(self) -> list[int]:
        """Global rank of (pp = s, tp = 0, dp = 0) for every stage s."""
        from megatron.core import parallel_state as ps

        if not dist.is_initialized() or dist.get_world_size() == 1:
            return [0] * self.pp
        where = [None] * dist.get_world_size()
        dist.all_gather_object(
            where, (self.pp_rank, ps.get_tensor_model_parallel_rank(), ps.get_data_parallel_rank())
        )
        return [where.index((s, 0, 0)) for s in range(self.pp)]

    def _local_full(self, name: str) -> torch.Tensor:
        p = self.params[name].detach()
        shape = canonical_shape(self.arch, name)
        dim = split_dim(shape, tuple(p.shape), self.tp)
        if dim is None or self.tp == 1:
            return p
        parts = [torch.empty_like(p) for _ in range(self.tp)]
        dist.all_gather(parts, p.contiguous(), group=self.tp_group)
        return tp_unshard(parts, dim, gated=name.endswith("mlp.linear_fc1.weight"))

    def __call__(self, name: str) -> torch.Tensor:
        owner = owner_stage(self.arch, name, self.pp)
        if self.arch.tie_word_embeddings and name == "output_layer.weight":
            name, owner = "embedding.word_embeddings.weight", 0
        full = self._local_full(name) if owner == self.pp_rank else None
        if dist.is_initialized() and dist.get_world_size() > 1:
            if full is None:
                full = torch.empty(
                    canonical_shape(self.arch, name), dtype=self.dtype, device=self.device
                )
            full = full.contiguous()
            dist.broadcast(full, src=self.stage_src[owner])
        return full


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
    parts = [None] * world
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
