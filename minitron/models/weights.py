"""Move weights between a built (TP/PP-split) GPTModel and whole-model tensors."""

from __future__ import annotations

from typing import Iterator

import torch

from minitron.models.arch import ModelArch
from minitron.models.convert import Reader, canonical_name, hf_to_mcore
from minitron.parallel.shard import tp_shard


def layer_offset(model) -> int:
    """Global index of this PP stage's first layer."""
    layers = model.decoder.layers
    return layers[0].layer_number - 1 if len(layers) else 0


def local_parameters(model) -> Iterator[tuple[str, str, torch.nn.Parameter]]:
    """(canonical name, local name, parameter) for every parameter of this rank."""
    off = layer_offset(model)
    for name, p in model.named_parameters():
        yield canonical_name(name, off), name, p


def is_gated(canonical: str) -> bool:
    return canonical.endswith("mlp.linear_fc1.weight")


@torch.no_grad()
def load_hf_weights(model, read: Reader, arch: ModelArch) -> None:
    """Fill this rank's parameters from HF tensors (only the ones this stage needs)."""
    from megatron.core import parallel_state as ps

    tp, rank = ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
    for cname, _, p in local_parameters(model):
        full = hf_to_mcore(cname, read, arch)
        p.copy_(tp_shard(full, tuple(p.shape), rank, tp, gated=is_gated(cname)).to(p.dtype))


@torch.no_grad()
def full_tensors(model) -> dict[str, torch.Tensor]:
    """Canonical whole-model tensors of a model built at TP=1, PP=1 (on CPU)."""
    from megatron.core import parallel_state as ps

    if (
        ps.get_tensor_model_parallel_world_size() != 1
        or ps.get_pipeline_model_parallel_world_size() != 1
    ):
        raise RuntimeError("full_tensors needs a TP=1, PP=1 model; gather first")
    return {c: p.detach().cpu() for c, _, p in local_parameters(model)}
