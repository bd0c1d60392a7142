"""Baseline importance for honest comparison, in the same score format: random and
weight magnitude (LLM-Pruner's L2 criterion: the L2 norm of all weights a unit owns).

Both read whole tensors through ``read(canonical_name)`` (``models.full_tensors.FullTensors``
for a split model), so they run at any TP/PP. Pure otherwise.
"""

from __future__ import annotations

from typing import Callable

import torch

from minitron.models.arch import ModelArch


def random_scores(arch: ModelArch, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {"channels": torch.rand(arch.hidden_size, generator=g)}
    for i in range(arch.num_layers):
        out[f"layers.{i}.heads"] = torch.rand(arch.num_attention_heads, generator=g)
        out[f"layers.{i}.neurons"] = torch.rand(arch.ffn_hidden_size, generator=g)
    return out


def magnitude_scores(
    arch: ModelArch, read: Callable[[str], torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per unit, sqrt of the sum of squares of every weight that belongs to it:

    - channel c: embedding and output column c, norm entries c, input columns c of
      ``linear_qkv`` / ``linear_fc1``, output rows c of ``linear_proj`` / ``linear_fc2``;
    - head: its query rows in ``linear_qkv`` and its input columns of ``linear_proj``
      (K/V rows are shared by the group);
    - neuron: its gate and up rows of ``linear_fc1`` and its column of ``linear_fc2``.
    """
    h, d, q = arch.hidden_size, arch.head_dim, arch.num_attention_heads
    g, hpg = arch.num_query_groups, arch.heads_per_group
    sq = lambda t: t.double().pow(2)  # noqa: E731
    ch = sq(read("embedding.word_embeddings.weight")[: arch.vocab_size]).sum(0)
    if not arch.tie_word_embeddings:
        ch += sq(read("output_layer.weight")[: arch.vocab_size]).sum(0)
    ch += sq(read("decoder.final_layernorm.weight"))
    out = {}
    for i in range(arch.num_layers):
        p = f"decoder.layers.{i}."
        qkv, proj = (
            read(p + "self_attention.linear_qkv.weight"),
            read(p + "self_attention.linear_proj.weight"),
        )
        fc1, fc2 = read(p + "mlp.linear_fc1.weight"), read(p + "mlp.linear_fc2.weight")
        for norm in ("input_layernorm.weight", "pre_mlp_layernorm.weight"):
            ch += sq(read(p + norm))
        ch += sq(qkv).sum(0) + sq(fc1).sum(0) + sq(proj).sum(1) + sq(fc2).sum(1)
        q_rows = sq(qkv).reshape(g, hpg + 2, d, h)[:, :hpg].sum((2, 3)).reshape(q)
        proj_cols = sq(proj).reshape(h, q, d).sum((0, 2))
        out[f"layers.{i}.heads"] = (q_rows + proj_cols).sqrt().float()
        gate, up = sq(fc1).chunk(2, dim=0)
        out[f"layers.{i}.neurons"] = (gate.sum(1) + up.sum(1) + sq(fc2).sum(0)).sqrt().float()
    out["channels"] = ch.sqrt().float()
    return out
