"""The architecture of a Megatron-family checkpoint, read and written as pure functions.

Three descriptions of one Llama-family GPTModel:

* Megatron-LM's ``args`` namespace (``common.pt``): argparse names such as
  ``num_layers``, ``swiglu``, ``untie_embeddings_and_output_weights``;
* a ``TransformerConfig``-shaped mapping: Megatron-Bridge's model provider in
  ``run_config.yaml`` and NeMo 2's ``config`` in ``context/model.yaml`` (``gated_linear_unit``,
  ``share_embeddings_and_output_weights``, ``layernorm_epsilon``);
* minitron's :class:`~minitron.models.arch.ModelArch`.

Whatever a minitron model cannot express (MoE, biases, LayerNorm, partial or
interleaved RoPE, QK norm, MLA, multi-token prediction) is refused with the field
named. megatron-core's Llama 3.1 RoPE scaling takes only a factor: its low/high
frequency factors and original context are fixed (:data:`MCORE_ROPE`).
"""

from __future__ import annotations

from typing import Any, Optional

from minitron.errors import ConfigError
from minitron.models.arch import DEFAULT_VOCAB_PAD_MULTIPLE, ModelArch, hf_config_for, pad_vocab

#: megatron-core's fixed Llama 3.1 scaling parameters (``rotary_pos_embedding._apply_scaling``)
MCORE_ROPE = {
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
#: Megatron-LM's ``--make-vocab-size-divisible-by`` default; rows are padded to it x TP
MEGATRON_VOCAB_MULTIPLE = 128


def _need(doc: dict, key: str, where: str):
    if doc.get(key) is None:
        raise ConfigError(
            key,
            f"{where} does not give {key!r}, which minitron needs to build "
            "the model; the checkpoint was written by a tool this version "
            "does not read",
        )
    return doc[key]


def _refuse(ok: bool, key: str, where: str, what: str) -> None:
    if not ok:
        raise ConfigError(
            key,
            f"{where}: {what}; minitron represents Llama-family models only "
            "(RMSNorm, SwiGLU, RoPE, no biases, no MoE)",
        )


def _true_vocab(rows: int, vocab_size: Optional[int], where: str) -> int:
    if vocab_size is None:
        return rows
    if vocab_size > rows:
        raise ConfigError(
            "tokenizer",
            f"the tokenizer has {vocab_size} tokens but {where} "
            f"has only {rows} embedding rows; pass the tokenizer the model was "
            "trained with",
        )
    return int(vocab_size)


def arch_from_args(
    args: dict,
    vocab_size: Optional[int] = None,
    where: str = "args",
    vocab_pad_multiple: int = DEFAULT_VOCAB_PAD_MULTIPLE,
) -> ModelArch:
    """ModelArch from Megatron-LM's ``args`` (as a dict). ``vocab_size``: the tokenizer's
    size (the checkpoint only knows its padded rows)."""
    a: dict[str, Any] = dict(args)
    if "disable_bias_linear" in a:  # older Megatron-LM spelling
        a["add_bias_linear"] = not a["disable_bias_linear"]
    _refuse(
        not a.get("num_experts"),
        "num_experts",
        where,
        f"a mixture of experts ({a.get('num_experts')} experts)",
    )
    _refuse(
        a.get("normalization", "LayerNorm") == "RMSNorm",
        "normalization",
        where,
        f"normalization is {a.get('normalization', 'LayerNorm')!r}, not RMSNorm",
    )
    _refuse(bool(a.get("swiglu")), "swiglu", where, "the MLP is not SwiGLU")
    _refuse(
        not a.get("add_bias_linear", True),
        "add_bias_linear",
        where,
        "linear layers "
        "have biases (Megatron-LM's default; Llama is trained with --disable-bias-linear)",
    )
    _refuse(not a.get("add_qkv_bias"), "add_qkv_bias", where, "attention has QKV biases")
    _refuse(
        a.get("position_embedding_type", "learned_absolute") == "rope",
        "position_embedding_type",
        where,
        f"positions are {a.get('position_embedding_type', 'learned_absolute')!r}, not rope",
    )
    _refuse(
        float(a.get("rotary_percent", 1.0)) == 1.0,
        "rotary_percent",
        where,
        "RoPE covers only part of each head",
    )
    _refuse(not a.get("rotary_interleaved"), "rotary_interleaved", where, "interleaved RoPE")
    _refuse(not a.get("qk_layernorm"), "qk_layernorm", where, "QK layer norm")
    _refuse(not a.get("apply_layernorm_1p"), "apply_layernorm_1p", where, "1+gamma norms")
    _refuse(
        not a.get("multi_latent_attention"),
        "multi_latent_attention",
        where,
        "multi-latent attention",
    )
    _refuse(not a.get("mtp_num_layers"), "mtp_num_layers", where, "multi-token prediction")
    heads = int(_need(a, "num_attention_heads", where))
    hidden = int(_need(a, "hidden_size", where))
    groups = int(a["num_query_groups"]) if a.get("group_query_attention") else heads
    rows = int(_need(a, "padded_vocab_size", where))
    vocab = _true_vocab(rows, vocab_size or a.get("vocab_size"), where)
    scaling = None
    if a.get("use_rope_scaling"):
        scaling = {
            "rope_type": "llama3",
            "factor": float(a.get("rope_scaling_factor", 8.0)),
            **MCORE_ROPE,
        }
    return ModelArch(
        family="llama",
        hidden_size=hidden,
        ffn_hidden_size=int(a.get("ffn_hidden_size") or 4 * hidden),
        num_layers=int(_need(a, "num_layers", where)),
        num_attention_heads=heads,
        num_query_groups=groups,
        head_dim=int(a.get("kv_channels") or hidden // heads),
        vocab_size=vocab,
        padded_vocab_size=pad_vocab(vocab, vocab_pad_multiple),
        max_position_embeddings=int(
            a.get("max_position_embeddings") or a.get("seq_length") or 4096
        ),
        rope_theta=float(a.get("rotary_base", 10000)),
        rope_scaling=scaling,
        # the flag is --norm-epsilon; the namespace keeps it as layernorm_epsilon
        norm_eps=float(a.get("layernorm_epsilon", a.get("norm_epsilon", 1e-5))),
        tie_word_embeddings=not a.get("untie_embeddings_and_output_weights", False),
    )


def _activation(value: Any) -> str:
    """The activation's name from a serialised ``activation_func`` (a ``_target_`` mapping,
    a dotted string, or a name)."""
    if isinstance(value, dict):
        value = value.get("_target_", "")
    return str(value).rsplit(".", 1)[-1]


def arch_from_config(
    cfg: dict,
    vocab_size: Optional[int] = None,
    where: str = "model",
    vocab_pad_multiple: int = DEFAULT_VOCAB_PAD_MULTIPLE,
) -> ModelArch:
    """ModelArch from a TransformerConfig-shaped mapping: a Megatron-Bridge model provider
    (``run_config.yaml`` ``model:``) or NeMo 2's ``config`` (``context/model.yaml``)."""
    c = cfg
    _refuse(
        not c.get("num_moe_experts"),
        "num_moe_experts",
        where,
        f"a mixture of experts ({c.get('num_moe_experts')} experts)",
    )
    _refuse(
        c.get("normalization", "LayerNorm") == "RMSNorm",
        "normalization",
        where,
        f"normalization is {c.get('normalization', 'LayerNorm')!r}, not RMSNorm",
    )
    _refuse(bool(c.get("gated_linear_unit")), "gated_linear_unit", where, "the MLP is not gated")
    act = _activation(c.get("activation_func", "silu"))
    _refuse(act == "silu", "activation_func", where, f"the activation is {act!r}, not silu")
    _refuse(
        not c.get("add_bias_linear", True), "add_bias_linear", where, "linear layers have biases"
    )
    _refuse(not c.get("add_qkv_bias"), "add_qkv_bias", where, "attention has QKV biases")
    _refuse(
        c.get("position_embedding_type", "rope") == "rope",
        "position_embedding_type",
        where,
        f"positions are {c.get('position_embedding_type')!r}, not rope",
    )
    _refuse(
        float(c.get("rotary_percent", 1.0)) == 1.0,
        "rotary_percent",
        where,
        "RoPE covers only part of each head",
    )
    _refuse(not c.get("rotary_interleaved"), "rotary_interleaved", where, "interleaved RoPE")
    _refuse(not c.get("qk_layernorm"), "qk_layernorm", where, "QK layer norm")
    _refuse(
        not c.get("layernorm_zero_centered_gamma"),
        "layernorm_zero_centered_gamma",
        where,
        "1+gamma norms",
    )
    _refuse(
        not c.get("multi_latent_attention"),
        "multi_latent_attention",
        where,
        "multi-latent attention",
    )
    _refuse(not c.get("mtp_num_layers"), "mtp_num_layers", where, "multi-token prediction")
    heads = int(_need(c, "num_attention_heads", where))
    hidden = int(_need(c, "hidden_size", where))
    rows = c.get("padded_vocab_size") or c.get("vocab_size")
    vocab = (
        _true_vocab(int(rows), vocab_size or c.get("vocab_size"), where)
        if rows
        else (vocab_size or _need(c, "vocab_size", where))
    )
    return ModelArch(
        family="llama",
        hidden_size=hidden,
        ffn_hidden_size=int(c.get("ffn_hidden_size") or 4 * hidden),
        num_layers=int(_need(c, "num_layers", where)),
        num_attention_heads=heads,
        num_query_groups=int(c.get("num_query_groups") or heads),
        head_dim=int(c.get("kv_channels") or hidden // heads),
        vocab_size=int(vocab),
        padded_vocab_size=pad_vocab(int(vocab), vocab_pad_multiple),
        max_position_embeddings=int(
            c.get("seq_length") or c.get("max_position_embeddings") or 4096
        ),
        rope_theta=float(c.get("rotary_base", 10000)),
        rope_scaling=_config_scaling(c),
        norm_eps=float(c.get("layernorm_epsilon", 1e-5)),
        tie_word_embeddings=bool(c.get("share_embeddings_and_output_weights", False)),
    )


def _config_scaling(c: dict) -> Optional[dict]:
    """Llama 3.1 scaling from Bridge's ``rope_scaling``/``rope_scaling_factor`` or NeMo's
    ``scale_factor``/``low_freq_factor``/``high_freq_factor``/``old_context_len``."""
    if "scale_factor" in c and c.get("scale_factor"):  # NeMo 2 Llama31Config
        return {
            "rope_type": "llama3",
            "factor": float(c["scale_factor"]),
            "low_freq_factor": float(c.get("low_freq_factor", 1.0)),
            "high_freq_factor": float(c.get("high_freq_factor", 4.0)),
            "original_max_position_embeddings": int(c.get("old_context_len", 8192)),
        }
    if c.get("rope_scaling"):
        return {
            "rope_type": "llama3",
            "factor": float(c.get("rope_scaling_factor", 8.0)),
            **MCORE_ROPE,
        }
    return None


def check_mcore_rope(arch: ModelArch, field: str = "rope_scaling") -> None:
    """Refuse scaling megatron-core cannot express (it fixes all but the factor)."""
    s = arch.rope_scaling
    if s and any(float(s[k]) != float(v) for k, v in MCORE_ROPE.items()):
        raise ConfigError(
            field,
            f"RoPE scaling {s} differs from megatron-core's fixed "
            f"{MCORE_ROPE}; Megatron-LM would run this model with other "
            "frequencies, so it is not written in this format",
        )


def megatron_vocab_rows(vocab_size: int, tp: int = 1) -> int:
    """Rows Megatron-LM pads a vocabulary to (``_vocab_size_with_padding``)."""
    return pad_vocab(vocab_size, MEGATRON_VOCAB_MULTIPLE * tp)


def hf_config_from_arch(arch: ModelArch, dtype: str, tokens: Optional[dict] = None) -> dict:
    """A Hugging Face Llama ``config.json`` for ``arch``: the export template of a model
    imported from a checkpoint that has none. ``tokens``: bos/eos ids of its tokenizer."""
    base = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "max_position_embeddings": arch.max_position_embeddings,
        "rms_norm_eps": arch.norm_eps,
        "rope_theta": arch.rope_theta,
        "rope_scaling": dict(arch.rope_scaling) if arch.rope_scaling else None,
        "use_cache": True,
        "torch_dtype": dtype,
        **(tokens or {}),
    }
    return hf_config_for(arch, base)
