"""TensorRT-LLM checkpoint format for Llama-family models (written from TensorRT-LLM's docs).

A directory with one ``config.json`` and one ``rank{i}.safetensors`` per rank:

    transformer.vocab_embedding.weight            [vocab, h]         every rank (no parallel embedding)
    transformer.layers.{l}.input_layernorm.weight [h]                every rank
    transformer.layers.{l}.attention.qkv.weight   [(q + 2 kv) d / tp, h]   rank's q heads, then its kv heads
                                                  (tp > kv: one kv head per rank, duplicated)
    transformer.layers.{l}.attention.dense.weight [h, q d / tp]      o_proj, split on the input dim
    transformer.layers.{l}.post_layernorm.weight  [h]                every rank
    transformer.layers.{l}.mlp.fc.weight          [f / tp, h]        HF gate_proj (the activated branch)
    transformer.layers.{l}.mlp.gate.weight        [f / tp, h]        HF up_proj (the multiplied branch)
    transformer.layers.{l}.mlp.proj.weight        [h, f / tp]        down_proj, split on the input dim
    transformer.ln_f.weight                       [h]                every rank
    lm_head.weight                                [vocab_pad / tp, h] rows split; vocab padded to a multiple of tp
                                                  (a copy even when tied to the embedding)

Pure: takes HF-named whole tensors (``models.convert.mcore_to_hf``) and returns
per-rank dicts; :func:`trtllm_config` writes the config with the architecture,
dtype, mapping and (empty) quantization fields.
"""

from __future__ import annotations

import math

import torch

from minitron.errors import ConfigError
from minitron.models.arch import ModelArch

ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}


def check_tp(arch: ModelArch, tp: int) -> None:
    for field, value in (
        ("num_attention_heads", arch.num_attention_heads),
        ("ffn_hidden_size", arch.ffn_hidden_size),
    ):
        if value % tp:
            raise ConfigError(
                "tp", f"tp={tp} must divide {field}={value} for a TensorRT-LLM checkpoint"
            )
    g = arch.num_query_groups
    if g % tp and tp % g:
        raise ConfigError(
            "tp",
            f"tp={tp} and num_query_groups={g}: one must divide the other "
            "(each rank holds whole KV heads; with tp > KV heads every head is "
            "duplicated tp / KV heads times)",
        )


def kv_heads(t: torch.Tensor, groups: int, tp: int, rank: int) -> torch.Tensor:
    """Rank ``rank``'s KV heads of a K or V projection ``[groups * d, h]``: its share when
    ``tp`` divides the heads; with more ranks than heads, the one head it serves, as
    TensorRT-LLM's converter duplicates KV heads (rank r gets head r // (tp / groups))."""
    if tp <= groups:
        return _rows(t, tp, rank)
    return t.chunk(groups, dim=0)[rank // (tp // groups)].contiguous()


def trtllm_config(arch: ModelArch, dtype: str, tp: int, hf_config: dict) -> dict:
    cfg = {
        "architecture": ARCHITECTURES[arch.family],
        "dtype": dtype,
        "logits_dtype": "float32",
        "vocab_size": arch.vocab_size,
        "max_position_embeddings": arch.max_position_embeddings,
        "hidden_size": arch.hidden_size,
        "num_hidden_layers": arch.num_layers,
        "num_attention_heads": arch.num_attention_heads,
        "num_key_value_heads": arch.num_query_groups,
        "head_size": arch.head_dim,
        "hidden_act": "silu",
        "intermediate_size": arch.ffn_hidden_size,
        "norm_epsilon": arch.norm_eps,
        "position_embedding_type": "rope_gpt_neox",
        "rotary_base": arch.rope_theta,
        "rotary_scaling": None,
        "tie_word_embeddings": arch.tie_word_embeddings,
        "use_parallel_embedding": False,
        "embedding_sharding_dim": 0,
        "share_embedding_table": False,
        "mapping": {"world_size": tp, "tp_size": tp, "pp_size": 1},
        "quantization": {"quant_algo": None, "kv_cache_quant_algo": None},
        "bos_token_id": hf_config.get("bos_token_id"),
        "eos_token_id": hf_config.get("eos_token_id"),
    }
    if arch.rope_scaling:
        s = arch.rope_scaling
        cfg["rotary_scaling"] = {
            "type": "llama3",
            "factor": s["factor"],
            "low_freq_factor": s["low_freq_factor"],
            "high_freq_factor": s["high_freq_factor"],
            "original_max_position_embeddings": s["original_max_position_embeddings"],
        }
    return cfg


def _rows(t: torch.Tensor, tp: int, rank: int) -> torch.Tensor:
    return t.chunk(tp, dim=0)[rank].contiguous()


def _cols(t: torch.Tensor, tp: int, rank: int) -> torch.Tensor:
    return t.chunk(tp, dim=1)[rank].contiguous()


def rank_weights(
    hf: dict[str, torch.Tensor], arch: ModelArch, tp: int, rank: int
) -> dict[str, torch.Tensor]:
    """TensorRT-LLM tensors of rank ``rank`` from HF-named whole tensors."""
    check_tp(arch, tp)
    out = {
        "transformer.vocab_embedding.weight": hf["model.embed_tokens.weight"].contiguous(),
        "transformer.ln_f.weight": hf["model.norm.weight"].contiguous(),
    }
    head = hf["model.embed_tokens.weight"] if arch.tie_word_embeddings else hf["lm_head.weight"]
    padded = math.ceil(arch.vocab_size / tp) * tp
    if padded != head.shape[0]:
        head = torch.cat([head, head.new_zeros(padded - head.shape[0], head.shape[1])])
    # its own storage, never a view of the embedding: safetensors refuses tensors that
    # share memory, which a tied head at tp=1 without padding would
    out["lm_head.weight"] = _rows(head, tp, rank).clone()
    for i in range(arch.num_layers):
        p, t = f"model.layers.{i}.", f"transformer.layers.{i}."
        q = _rows(hf[p + "self_attn.q_proj.weight"], tp, rank)
        k, v = (
            kv_heads(hf[p + f"self_attn.{x}_proj.weight"], arch.num_query_groups, tp, rank)
            for x in "kv"
        )
        out[t + "attention.qkv.weight"] = torch.cat([q, k, v]).contiguous()
        out[t + "attention.dense.weight"] = _cols(hf[p + "self_attn.o_proj.weight"], tp, rank)
        out[t + "input_layernorm.weight"] = hf[p + "input_layernorm.weight"].contiguous()
        out[t + "post_layernorm.weight"] = hf[p + "post_attention_layernorm.weight"].contiguous()
        out[t + "mlp.fc.weight"] = _rows(hf[p + "mlp.gate_proj.weight"], tp, rank)
        out[t + "mlp.gate.weight"] = _rows(hf[p + "mlp.up_proj.weight"], tp, rank)
        out[t + "mlp.proj.weight"] = _cols(hf[p + "mlp.down_proj.weight"], tp, rank)
    return out
