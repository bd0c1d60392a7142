"""Width and depth trimming of whole-model (canonical) tensors, given what to keep. Pure.

A :class:`Plan` lists, in the original order, the hidden channels, the KV groups
and query heads of each layer, the MLP neurons of each layer, and the layers
that survive. :func:`select_topk` and :func:`select_heads` build one from scores;
:func:`prune_tensor` cuts one tensor by it. Layouts (megatron-core, see
``models/convert.py``): ``linear_qkv`` is ``[(q + 2g) d, h]`` grouped as
``[g, q/g + 2, d, h]``; ``linear_proj`` is ``[h, q d]``; ``linear_fc1`` is
``[gate; up]`` ``[2f, h]``; ``linear_fc2`` is ``[h, f]``.
"""

from __future__ import annotations

import dataclasses
import re

import torch

from minitron.models.arch import ModelArch

_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")


@dataclasses.dataclass
class Plan:
    """What survives. Index tensors are sorted ascending (the original order is kept)."""

    channels: torch.Tensor  # [h'] hidden channels
    groups: list[torch.Tensor]  # per kept layer: [g'] KV groups
    heads: list[torch.Tensor]  # per kept layer: [g', q'/g'] head slots within each kept group
    neurons: list[torch.Tensor]  # per kept layer: [f'] MLP neurons
    layers: list[int]  # kept layers (original indices)

    def target(self, arch: ModelArch) -> ModelArch:
        return arch.replace(
            hidden_size=len(self.channels),
            num_query_groups=int(self.groups[0].numel()),
            num_attention_heads=int(self.heads[0].numel()),
            ffn_hidden_size=int(self.neurons[0].numel()),
            num_layers=len(self.layers),
        )


def select_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores, ascending (ties: the lower index wins)."""
    if not 0 < k <= scores.numel():
        raise ValueError(f"cannot keep {k} of {scores.numel()}")
    order = torch.argsort(-scores.double(), stable=True)
    return order[:k].sort().values


def select_heads(
    head_scores: torch.Tensor, groups: int, keep_groups: int, keep_per_group: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the best ``keep_groups`` KV groups (by the sum of their heads' scores), and in
    each the best ``keep_per_group`` query heads, so GQA stays valid.
    Returns ``(groups [g'], head slots within group [g', q'/g'])``."""
    per_group = head_scores.reshape(groups, -1)
    kept_groups = select_topk(per_group.sum(1), keep_groups)
    slots = torch.stack([select_topk(per_group[g], keep_per_group) for g in kept_groups.tolist()])
    return kept_groups, slots


def _qkv(t: torch.Tensor, arch: ModelArch, groups: torch.Tensor, slots: torch.Tensor):
    """Rows of the kept groups: their kept query heads, then their K and V heads."""
    g, d, h = arch.num_query_groups, arch.head_dim, t.shape[-1]
    hpg = arch.heads_per_group
    grouped = t.reshape(g, hpg + 2, d, h)[groups]  # [g', hpg + 2, d, h]
    kv = torch.tensor([hpg, hpg + 1]).expand(len(groups), 2)
    rows = torch.cat([slots, kv], 1)  # [g', q'/g' + 2]
    return grouped[torch.arange(len(groups))[:, None], rows].reshape(-1, h)


def _proj(t: torch.Tensor, arch: ModelArch, groups: torch.Tensor, slots: torch.Tensor):
    """Input columns of the kept query heads."""
    h, g, d = t.shape[0], arch.num_query_groups, arch.head_dim
    grouped = t.reshape(h, g, arch.heads_per_group, d)[:, groups]  # [h, g', hpg, d]
    return grouped[:, torch.arange(len(groups))[:, None], slots].reshape(h, -1)


def prune_tensor(
    name: str, t: torch.Tensor, plan: Plan, arch: ModelArch
) -> tuple[str, torch.Tensor]:
    """Cut canonical tensor ``name`` of the original model; returns its name in the pruned
    model (layers renumbered) and the trimmed tensor."""
    ch = plan.channels
    m = _LAYER.match(name)
    if m is None:
        if name in ("embedding.word_embeddings.weight", "output_layer.weight"):
            return name, t[:, ch]
        if name == "decoder.final_layernorm.weight":
            return name, t[ch]
        raise KeyError(name)
    old, rest = int(m.group(1)), m.group(2)
    new = plan.layers.index(old)
    groups, slots, neurons = plan.groups[new], plan.heads[new], plan.neurons[new]
    if rest in ("input_layernorm.weight", "pre_mlp_layernorm.weight"):
        out = t[ch]
    elif rest == "self_attention.linear_qkv.weight":
        out = _qkv(t, arch, groups, slots)[:, ch]
    elif rest == "self_attention.linear_proj.weight":
        out = _proj(t, arch, groups, slots)[ch]
    elif rest == "mlp.linear_fc1.weight":
        gate, up = t.chunk(2, dim=0)
        out = torch.cat([gate[neurons], up[neurons]])[:, ch]
    elif rest == "mlp.linear_fc2.weight":
        out = t[:, neurons][ch]
    else:
        raise KeyError(name)
    return f"decoder.layers.{new}.{rest}", out.contiguous()


def identity_plan(arch: ModelArch) -> Plan:
    """A plan that keeps everything (pruning to the current shape changes nothing)."""
    g, hpg = arch.num_query_groups, arch.heads_per_group
    return Plan(
        channels=torch.arange(arch.hidden_size),
        groups=[torch.arange(g)] * arch.num_layers,
        heads=[torch.arange(hpg).repeat(g, 1)] * arch.num_layers,
        neurons=[torch.arange(arch.ffn_hidden_size)] * arch.num_layers,
        layers=list(range(arch.num_layers)),
    )
