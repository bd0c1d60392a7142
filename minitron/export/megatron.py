"""Write a minitron model as a Megatron-LM / Megatron-Bridge checkpoint.

    minitron export --ckpt ckpt/student --format megatron --out megatron/student

Layout written (what both projects read)::

    latest_checkpointed_iteration.txt   "release"
    release/                            megatron-core torch_dist (metadata.json, .metadata,
                                        *.distcp, common.pt)
        common.pt                       args (an argparse.Namespace with the architecture
                                        flags), checkpoint_version, iteration
        run_config.yaml                 Megatron-Bridge: the model provider's fields
        tokenizer/                      the model's Hugging Face tokenizer

The model tensors are megatron-core's own ``sharded_state_dict`` under ``model``, the
embedding padded as Megatron-LM pads it at TP=1 (to a multiple of 128 rows; any other
padding loads too, megatron-core reads the common rows). ``args`` and the provider are
pure functions of the architecture (:func:`megatron_args`, :func:`provider_config`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from minitron.models.arch import ModelArch
from minitron.models.megatron_arch import (
    MEGATRON_VOCAB_MULTIPLE,
    check_mcore_rope,
    megatron_vocab_rows,
)

CHECKPOINT_VERSION = 3.0  # Megatron-LM's current ``checkpoint_version``
RELEASE = "release"
#: Megatron-Bridge's generic GPT provider (a Llama-family model is a GPT provider
#: with these fields set)
PROVIDER = "megatron.bridge.models.gpt_provider.GPTModelProvider"


def _theta(arch: ModelArch):
    """RoPE base as Megatron-LM types it (``--rotary-base`` is an int)."""
    return int(arch.rope_theta) if float(arch.rope_theta).is_integer() else arch.rope_theta


def megatron_args(arch: ModelArch, dtype: str, tokenizer_model: str) -> argparse.Namespace:
    """Megatron-LM's ``args`` for ``arch``: the flags ``--use-checkpoint-args`` copies and
    the ones a Llama model is trained with (``pretrain_gpt.py``)."""
    scaling = arch.rope_scaling
    a = dict(
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        ffn_hidden_size=arch.ffn_hidden_size,
        num_attention_heads=arch.num_attention_heads,
        group_query_attention=arch.num_query_groups != arch.num_attention_heads,
        num_query_groups=arch.num_query_groups,
        kv_channels=arch.head_dim,
        max_position_embeddings=arch.max_position_embeddings,
        seq_length=arch.max_position_embeddings,
        position_embedding_type="rope",
        rotary_base=_theta(arch),
        rotary_percent=1.0,
        rotary_interleaved=False,
        use_rope_scaling=scaling is not None,
        rope_scaling_factor=float(scaling["factor"]) if scaling else 8.0,
        normalization="RMSNorm",
        layernorm_epsilon=arch.norm_eps,
        swiglu=True,
        add_bias_linear=False,
        add_qkv_bias=False,
        untie_embeddings_and_output_weights=not arch.tie_word_embeddings,
        qk_layernorm=False,
        apply_layernorm_1p=False,
        num_experts=None,
        vocab_size=arch.vocab_size,
        padded_vocab_size=megatron_vocab_rows(arch.vocab_size),
        make_vocab_size_divisible_by=MEGATRON_VOCAB_MULTIPLE,
        tokenizer_type="HuggingFaceTokenizer",
        tokenizer_model=tokenizer_model,
        tensor_model_parallel_size=1,
        pipeline_model_parallel_size=1,
        virtual_pipeline_model_parallel_size=None,
        ckpt_format="torch_dist",
        bf16=dtype == "bfloat16",
        fp16=dtype == "float16",
        params_dtype={"bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            dtype, torch.float32
        ),
        iteration=0,
        consumed_train_samples=0,
        consumed_valid_samples=0,
    )
    return argparse.Namespace(**a)


def provider_config(arch: ModelArch, dtype: str, tokenizer_model: str) -> dict:
    """Megatron-Bridge's ``run_config.yaml`` for ``arch``: the model provider's fields
    (TransformerConfig names), the tokenizer and the checkpoint format."""
    scaling = arch.rope_scaling
    model = {
        "_target_": PROVIDER,
        "num_layers": arch.num_layers,
        "hidden_size": arch.hidden_size,
        "ffn_hidden_size": arch.ffn_hidden_size,
        "num_attention_heads": arch.num_attention_heads,
        "num_query_groups": arch.num_query_groups,
        "kv_channels": arch.head_dim,
        "seq_length": arch.max_position_embeddings,
        "normalization": "RMSNorm",
        "layernorm_epsilon": arch.norm_eps,
        "gated_linear_unit": True,
        "activation_func": {"_target_": "torch.nn.functional.silu", "_call_": False},
        "add_bias_linear": False,
        "add_qkv_bias": False,
        "position_embedding_type": "rope",
        "rotary_base": _theta(arch),
        "rotary_percent": 1.0,
        "rope_scaling": scaling is not None,
        "rope_scaling_factor": float(scaling["factor"]) if scaling else 8.0,
        "share_embeddings_and_output_weights": arch.tie_word_embeddings,
        "vocab_size": arch.vocab_size,
        "should_pad_vocab": True,  # rows as Megatron-LM pads them, as written here
        "make_vocab_size_divisible_by": MEGATRON_VOCAB_MULTIPLE,
        "tensor_model_parallel_size": 1,
        "pipeline_model_parallel_size": 1,
        "bf16": dtype == "bfloat16",
        "fp16": dtype == "float16",
        "params_dtype": {"_target_": f"torch.{dtype}", "_call_": False},
        "pipeline_dtype": {"_target_": f"torch.{dtype}", "_call_": False},
    }
    return {
        "_target_": "megatron.bridge.training.config.ConfigContainer",
        "checkpoint": {
            "_target_": "megatron.bridge.training.config.CheckpointConfig",
            "ckpt_format": "torch_dist",
            "save_optim": False,
            "save_rng": False,
            "fully_parallel_save": True,
        },
        "model": model,
        "tokenizer": {
            "_target_": "megatron.bridge.training.tokenizers.config.TokenizerConfig",
            "tokenizer_type": "HuggingFaceTokenizer",
            "tokenizer_model": tokenizer_model,
        },
    }


def check(arch: ModelArch) -> None:
    """What the format cannot carry, refused before any weight is read."""
    check_mcore_rope(arch)


def save(
    model, arch: ModelArch, dtype: str, tokenizer_src: Path, tmp: Path, final: Path
) -> list[str]:
    """Write ``model`` (built at TP=1, PP=1 with Megatron-LM's vocab padding) into ``tmp``
    (renamed to ``final`` by the caller); returns the files written."""
    import yaml

    from minitron.checkpoint.dist_save import dist_save
    from minitron.checkpoint.hf_io import copy_tokenizer
    from minitron.parallel import runtime

    release = tmp / RELEASE
    release.mkdir(exist_ok=True)
    tok_final = str((final / RELEASE / "tokenizer").resolve())
    state = {
        "model": model.sharded_state_dict(),
        "args": megatron_args(arch, dtype, tok_final),
        "checkpoint_version": CHECKPOINT_VERSION,
        "iteration": 0,
        "num_floating_point_operations_so_far": 0,
    }
    dist_save(state, str(release))
    if not runtime.layout().is_main:
        return []
    (release / "tokenizer").mkdir()
    copy_tokenizer(tokenizer_src, release / "tokenizer")
    (release / "run_config.yaml").write_text(
        "# Megatron-Bridge run config written by minitron: the model provider of this "
        "checkpoint\n"
        + yaml.safe_dump(provider_config(arch, dtype, tok_final), default_flow_style=False)
    )
    (tmp / "latest_checkpointed_iteration.txt").write_text(RELEASE)
    (tmp / "minitron_export.json").write_text(
        json.dumps({"format": "megatron", "arch": arch.to_dict(), "dtype": dtype}, indent=2)
    )
    return [
        "latest_checkpointed_iteration.txt",
        f"{RELEASE}/",
        f"{RELEASE}/run_config.yaml",
        f"{RELEASE}/tokenizer/",
    ]
