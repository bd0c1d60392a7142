"""Gradient synchronisation and clipping for a TP/PP/DP-split model, with explicit groups.

- ``finalize_grads``: average over data-parallel replicas; with tied embeddings and
  PP > 1, sum the embedding's and the last stage's output-layer copy's gradients
  (megatron-core's embedding group), so both copies stay equal.
- ``clip_grad_norm``: the global L2 norm over every parameter of the whole model,
  counting TP-replicated parameters (norms) once: sums of squares are all-reduced
  over the TP group for split parameters only, then over the PP group.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from minitron.parallel.collectives import all_reduce_sum


def _world(group) -> int:
    return dist.get_world_size(group) if dist.is_initialized() else 1


def finalize_grads(model, params: list[torch.nn.Parameter]) -> None:
    from megatron.core import parallel_state as ps

    dp = ps.get_data_parallel_group()
    if _world(dp) > 1:
        for p in params:
            if p.grad is not None:
                all_reduce_sum(p.grad, dp).div_(_world(dp))
    if ps.get_pipeline_model_parallel_world_size() > 1 and model.share_embeddings_and_output_weights:
        if ps.is_rank_in_embedding_group():
            w = model.shared_embedding_or_output_weight()
            if w.grad is not None and w.requires_grad:
                all_reduce_sum(w.grad, ps.get_embedding_group())


def split_parameters(model, params: list[torch.nn.Parameter]) -> set[int]:
    """ids of the parameters that are split over TP ranks: a model parameter whose shard is
    smaller than the whole tensor, or an extra one (a LoRA adapter) marked
    ``tensor_model_parallel``. (megatron-core sets that mark only when it initialises the
    weights itself, so shapes are the reliable test for loaded models.)"""
    from minitron.models.convert import canonical_shape
    from minitron.models.weights import local_parameters

    arch = model.minitron_arch
    split = {id(p) for c, _, p in local_parameters(model) if canonical_shape(arch, c) != tuple(p.shape)}
    split |= {id(p) for p in params if getattr(p, "tensor_model_parallel", False)}
    return split


def grad_norm(model, params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Global L2 norm of the gradients of ``params`` across the whole model (every rank)."""
    from megatron.core import parallel_state as ps

    dev = params[0].device if params else torch.device("cpu")
    split_ids = split_parameters(model, params)
    split = torch.zeros((), dtype=torch.float64, device=dev)
    replicated = torch.zeros((), dtype=torch.float64, device=dev)
    for p in params:
        if p.grad is None:
            continue
        sq = p.grad.detach().double().pow(2).sum()
        if id(p) in split_ids:
            split += sq
        else:
            replicated += sq
    # a tied output layer on the last stage repeats the first stage's embedding: count it once
    if (ps.get_pipeline_model_parallel_world_size() > 1 and model.share_embeddings_and_output_weights
            and ps.is_pipeline_last_stage() and not ps.is_pipeline_first_stage()):
        w = model.shared_embedding_or_output_weight()
        if w.grad is not None and any(w is p for p in params):
            split -= w.grad.detach().double().pow(2).sum()
    total = all_reduce_sum(split, ps.get_tensor_model_parallel_group()) + replicated
    total = all_reduce_sum(total, ps.get_pipeline_model_parallel_group())
    return total.sqrt()


def clip_grad_norm(model, params: list[torch.nn.Parameter], max_norm: float) -> float:
    """Scale gradients so their global norm is at most ``max_norm``; returns the norm before."""
    norm = grad_norm(model, params)
    if max_norm > 0 and torch.isfinite(norm) and norm > max_norm:
        scale = (max_norm / (norm + 1e-6)).item()
        for p in params:
            if p.grad is not None:
                p.grad.mul_(scale)
    return norm.item()
