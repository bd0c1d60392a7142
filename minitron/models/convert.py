"""Hugging Face Llama/Mistral tensors <-> megatron-core GPTModel tensors (pure functions).

Names on the megatron side are *canonical*: the local-spec names of an unsplit
model with global layer indices (``decoder.layers.{i}.self_attention.linear_qkv.weight``);
``canonical_name``/``module_name`` translate to and from a built model (its PP
offset and, with Transformer Engine, the fused norm names).

Layouts (h = hidden, d = head_dim, q = query heads, g = KV groups, f = FFN):
- ``linear_qkv.weight`` ``[(q + 2g) d, h]``: per group, its ``q/g`` query heads,
  then its K head, then its V head.
- ``linear_fc1.weight`` ``[2f, h]``: ``[gate; up]`` (SwiGLU ``silu(gate) * up``).
- embedding / output ``[padded_vocab, h]``: HF rows, then zero rows.
"""

from __future__ import annotations

import re
from typing import Callable, Iterator

import torch

from minitron.models.arch import ModelArch

Reader = Callable[[str], torch.Tensor]

_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")
_TE_NAMES = {
    "input_layernorm.weight": "self_attention.linear_qkv.layer_norm_weight",
    "pre_mlp_layernorm.weight": "mlp.linear_fc1.layer_norm_weight",
}
_LOCAL_NAMES = {v: k for k, v in _TE_NAMES.items()}

LAYER_PARAMS = (
    "input_layernorm.weight",
    "self_attention.linear_qkv.weight",
    "self_attention.linear_proj.weight",
    "pre_mlp_layernorm.weight",
    "mlp.linear_fc1.weight",
    "mlp.linear_fc2.weight",
)


def canonical_names(arch: ModelArch) -> list[str]:
    names = ["embedding.word_embeddings.weight"]
    for i in range(arch.num_layers):
        names += [f"decoder.layers.{i}.{p}" for p in LAYER_PARAMS]
    names.append("decoder.final_layernorm.weight")
    if not arch.tie_word_embeddings:
        names.append("output_layer.weight")
    return names


def canonical_name(local_name: str, layer_offset: int) -> str:
    """A built model's parameter name -> canonical (global layer, local-spec norm names)."""
    m = _LAYER.match(local_name)
    if not m:
        return local_name
    rest = _LOCAL_NAMES.get(m.group(2), m.group(2))
    return f"decoder.layers.{int(m.group(1)) + layer_offset}.{rest}"


# ---------------------------------------------------------------- QKV and SwiGLU layouts


def qkv_from_hf(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, arch: ModelArch) -> torch.Tensor:
    """HF ``q_proj [q d, h]``, ``k_proj``/``v_proj [g d, h]`` -> grouped ``[(q + 2g) d, h]``."""
    g, d, h = arch.num_query_groups, arch.head_dim, q.shape[-1]
    q = q.reshape(g, arch.heads_per_group * d, h)
    k = k.reshape(g, d, h)
    v = v.reshape(g, d, h)
    return torch.cat([q, k, v], dim=1).reshape(-1, h)


def qkv_to_hf(
    qkv: torch.Tensor, arch: ModelArch
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`qkv_from_hf`."""
    g, d, h = arch.num_query_groups, arch.head_dim, qkv.shape[-1]
    per = arch.heads_per_group * d
    grouped = qkv.reshape(g, per + 2 * d, h)
    q, k, v = grouped.split([per, d, d], dim=1)
    return q.reshape(-1, h), k.reshape(-1, h), v.reshape(-1, h)


def pad_rows(w: torch.Tensor, rows: int) -> torch.Tensor:
    if w.shape[0] == rows:
        return w
    return torch.cat([w, w.new_zeros(rows - w.shape[0], *w.shape[1:])])


# ---------------------------------------------------------------- whole-model mapping


def hf_tensor_names(arch: ModelArch, name: str) -> list[str]:
    """The HF tensors a canonical megatron tensor is built from."""
    if name == "embedding.word_embeddings.weight":
        return ["model.embed_tokens.weight"]
    if name == "decoder.final_layernorm.weight":
        return ["model.norm.weight"]
    if name == "output_layer.weight":  # tied models keep a copy on the last PP stage
        return ["model.embed_tokens.weight" if arch.tie_word_embeddings else "lm_head.weight"]
    m = _LAYER.match(name)
    if not m:
        raise KeyError(name)
    i, rest = m.group(1), m.group(2)
    p = f"model.layers.{i}."
    return {
        "input_layernorm.weight": [p + "input_layernorm.weight"],
        "self_attention.linear_qkv.weight": [p + f"self_attn.{x}_proj.weight" for x in "qkv"],
        "self_attention.linear_proj.weight": [p + "self_attn.o_proj.weight"],
        "pre_mlp_layernorm.weight": [p + "post_attention_layernorm.weight"],
        "mlp.linear_fc1.weight": [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"],
        "mlp.linear_fc2.weight": [p + "mlp.down_proj.weight"],
    }[rest]


def hf_to_mcore(name: str, read: Reader, arch: ModelArch) -> torch.Tensor:
    """Build one canonical megatron tensor from HF tensors fetched by ``read``."""
    parts = [read(n) for n in hf_tensor_names(arch, name)]
    if name.endswith("linear_qkv.weight"):
        q, k, v = parts
        return qkv_from_hf(q, k, v, arch)
    if name.endswith("linear_fc1.weight"):
        return torch.cat(parts, dim=0)
    if name in ("embedding.word_embeddings.weight", "output_layer.weight"):
        return pad_rows(parts[0], arch.padded_vocab_size)
    return parts[0]


def mcore_to_hf(
    tensors: dict[str, torch.Tensor], arch: ModelArch
) -> Iterator[tuple[str, torch.Tensor]]:
    """Canonical megatron tensors (the whole model) -> HF tensors, in HF's order."""
    yield (
        "model.embed_tokens.weight",
        tensors["embedding.word_embeddings.weight"][: arch.vocab_size],
    )
    for i in range(arch.num_layers):

        def t(p, i=i):
            return tensors[f"decoder.layers.{i}.{p}"]

        hp = f"model.layers.{i}."
        q, k, v = qkv_to_hf(t("self_attention.linear_qkv.weight"), arch)
        gate, up = t("mlp.linear_fc1.weight").chunk(2, dim=0)
        yield hp + "input_layernorm.weight", t("input_layernorm.weight")
        yield hp + "self_attn.q_proj.weight", q
        yield hp + "self_attn.k_proj.weight", k
        yield hp + "self_attn.v_proj.weight", v
        yield hp + "self_attn.o_proj.weight", t("self_attention.linear_proj.weight")
        yield hp + "post_attention_layernorm.weight", t("pre_mlp_layernorm.weight")
        yield hp + "mlp.gate_proj.weight", gate
        yield hp + "mlp.up_proj.weight", up
        yield hp + "mlp.down_proj.weight", t("mlp.linear_fc2.weight")
    yield "model.norm.weight", tensors["decoder.final_layernorm.weight"]
    if not arch.tie_word_embeddings:
        yield "lm_head.weight", tensors["output_layer.weight"][: arch.vocab_size]


def hf_shapes(arch: ModelArch) -> dict[str, tuple[int, ...]]:
    """The shape every HF tensor must have for ``arch`` (checked before an export is written)."""
    h, d, f, v = arch.hidden_size, arch.head_dim, arch.ffn_hidden_size, arch.vocab_size
    q, g = arch.num_attention_heads * d, arch.num_query_groups * d
    shapes = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    for i in range(arch.num_layers):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,),
                p + "self_attn.q_proj.weight": (q, h),
                p + "self_attn.k_proj.weight": (g, h),
                p + "self_attn.v_proj.weight": (g, h),
                p + "self_attn.o_proj.weight": (h, q),
                p + "mlp.gate_proj.weight": (f, h),
                p + "mlp.up_proj.weight": (f, h),
                p + "mlp.down_proj.weight": (h, f),
            }
        )
    if not arch.tie_word_embeddings:
        shapes["lm_head.weight"] = (v, h)
    return shapes


def canonical_shape(arch: ModelArch, name: str) -> tuple[int, ...]:
    """Shape of a whole-model (unsplit) megatron tensor."""
    h, d, f = arch.hidden_size, arch.head_dim, arch.ffn_hidden_size
    q, g = arch.num_attention_heads * d, arch.num_query_groups * d
    if name in ("embedding.word_embeddings.weight", "output_layer.weight"):
        return (arch.padded_vocab_size, h)
    if name == "decoder.final_layernorm.weight":
        return (h,)
    m = _LAYER.match(name)
    if not m:
        raise KeyError(name)
    return {
        "input_layernorm.weight": (h,),
        "self_attention.linear_qkv.weight": (q + 2 * g, h),
        "self_attention.linear_proj.weight": (h, q),
        "pre_mlp_layernorm.weight": (h,),
        "mlp.linear_fc1.weight": (2 * f, h),
        "mlp.linear_fc2.weight": (h, f),
    }[m.group(2)]


def owner_stage(arch: ModelArch, name: str, pp: int) -> int:
    """The pipeline stage that holds a canonical tensor (equal layers per stage)."""
    if name == "embedding.word_embeddings.weight":
        return 0
    if name in ("decoder.final_layernorm.weight", "output_layer.weight"):
        return pp - 1
    m = _LAYER.match(name)
    if not m:
        raise KeyError(name)
    return int(m.group(1)) // (arch.num_layers // pp)
