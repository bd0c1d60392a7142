"""Whole canonical weights of a TP/PP-split model, delivered to every rank.

``FullTensors(model)(name)`` is collective: every rank calls it with the same name in the
same order. The owning PP stage all-gathers the TP shards and unshards them (SwiGLU-aware);
the result is broadcast from that stage's first rank to the whole world. One tensor at a
time: memory stays at the model plus one whole tensor. The communication is in
``minitron/parallel/gather.py``; this module knows the names, shapes and owners.
"""

from __future__ import annotations

import torch

from minitron.models.convert import canonical_shape, owner_stage
from minitron.models.weights import local_parameters
from minitron.parallel.gather import all_gather_tp, broadcast_whole, first_rank_of_each_stage
from minitron.parallel.shard import split_dim


class FullTensors:
    """``FullTensors(model)(name)`` -> the whole canonical tensor, on every rank (collective)."""

    def __init__(self, model):
        from megatron.core import parallel_state as ps

        self.model = model
        self.arch = model.minitron_arch
        self.params = {c: p for c, _, p in local_parameters(model)}
        self.tp = ps.get_tensor_model_parallel_world_size()
        self.pp = ps.get_pipeline_model_parallel_world_size()
        self.pp_rank = ps.get_pipeline_model_parallel_rank()
        self.tp_group = ps.get_tensor_model_parallel_group()
        self.dtype = next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        self.stage_src = first_rank_of_each_stage(
            self.pp,
            self.pp_rank,
            ps.get_tensor_model_parallel_rank(),
            ps.get_data_parallel_rank(),
        )

    def _local_full(self, name: str) -> torch.Tensor:
        p = self.params[name].detach()
        dim = split_dim(canonical_shape(self.arch, name), tuple(p.shape), self.tp)
        if dim is None or self.tp == 1:
            return p
        return all_gather_tp(p, dim, self.tp_group, gated=name.endswith("mlp.linear_fc1.weight"))

    def __call__(self, name: str) -> torch.Tensor:
        owner = owner_stage(self.arch, name, self.pp)
        if self.arch.tie_word_embeddings and name == "output_layer.weight":
            name, owner = "embedding.word_embeddings.weight", 0
        full = self._local_full(name) if owner == self.pp_rank else None
        return broadcast_whole(
            full, canonical_shape(self.arch, name), self.dtype, self.device, self.stage_src[owner]
        )
