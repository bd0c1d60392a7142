"""Hand-made Megatron-LM, Megatron-Bridge and NeMo 2 checkpoints of tiny HF models.

Written with megatron-core's ``dist_checkpointing.save`` directly (not minitron's exporter),
following the layouts those projects document and write (docs/interop.md lists the
sources): Megatron-LM's tracker + ``iter_0000007/`` with ``args`` (a Namespace holding an
AttnBackend enum and torch dtypes), RNG state (numpy) and optimizer entries; Bridge's
``run_config.yaml`` (keys sorted, ``_target_`` records), ``train_state.pt`` and
``tokenizer/``, no ``args``; NeMo 2's ``weights/`` with ``module.``-prefixed keys,
Lightning state in ``common.pt`` and ``context/model.yaml`` + ``context/nemo_tokenizer/``.

Each builder runs in a one-process world at TP=1, PP=1 (the caller's ``world`` fixture).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _model(hf_dir: Path, rows: int):
    """A megatron-core GPTModel holding the HF weights, with ``rows`` embedding rows."""
    from minitron.checkpoint.hf_io import HFReader
    from minitron.models.arch import load_arch
    from minitron.models.builder import build_model
    from minitron.models.weights import load_hf_weights

    arch = load_arch(hf_dir)
    arch = arch.replace(padded_vocab_size=rows)
    model = build_model(arch, init_weights=False)
    load_hf_weights(model, HFReader(hf_dir), arch)
    return model, arch


def _copy_tokenizer(hf_dir: Path, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for f in TOKENIZER_FILES:
        if (hf_dir / f).is_file():
            shutil.copy2(hf_dir / f, out / f)
    return out


def _rope_args(arch) -> dict:
    s = arch.rope_scaling
    return {"use_rope_scaling": bool(s), "rope_scaling_factor": float(s["factor"]) if s else 8.0}


def megatron_lm(
    hf_dir: Path,
    out: Path,
    iteration: int = 7,
    extra_args: dict | None = None,
    with_tokenizer_path: bool = True,
) -> Path:
    """Megatron-LM ``pretrain_gpt.py`` layout: tracker, ``iter_%07d/`` (torch_dist), full
    training state; the HF tokenizer named by ``args.tokenizer_model``."""
    import numpy as np
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedObject, ShardedTensor
    from megatron.core.transformer.enums import AttnBackend

    cfg = json.loads((hf_dir / "config.json").read_text())
    vocab = cfg["vocab_size"]
    rows = -(-vocab // 128) * 128  # _vocab_size_with_padding at TP=1
    model, arch = _model(hf_dir, rows)
    heads, groups = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    args = dict(
        num_layers=cfg["num_hidden_layers"],
        hidden_size=cfg["hidden_size"],
        ffn_hidden_size=cfg["intermediate_size"],
        num_attention_heads=heads,
        group_query_attention=groups != heads,
        num_query_groups=groups,
        kv_channels=cfg.get("head_dim") or cfg["hidden_size"] // heads,
        max_position_embeddings=cfg["max_position_embeddings"],
        seq_length=64,
        position_embedding_type="rope",
        rotary_base=int(arch.rope_theta),
        rotary_percent=1.0,
        rotary_interleaved=False,
        normalization="RMSNorm",
        layernorm_epsilon=cfg["rms_norm_eps"],
        swiglu=True,
        add_bias_linear=False,
        add_qkv_bias=False,
        qk_layernorm=False,
        apply_layernorm_1p=False,
        num_experts=None,
        untie_embeddings_and_output_weights=not cfg.get("tie_word_embeddings", False),
        padded_vocab_size=rows,
        vocab_size=None,
        make_vocab_size_divisible_by=128,
        tokenizer_type="HuggingFaceTokenizer",
        tokenizer_model=str(hf_dir) if with_tokenizer_path else "meta-llama/absent",
        tensor_model_parallel_size=1,
        pipeline_model_parallel_size=1,
        bf16=False,
        fp16=False,
        params_dtype=torch.float32,
        main_grads_dtype=torch.float32,
        attention_backend=AttnBackend.auto,
        transformer_impl="local",
        ckpt_format="torch_dist",
        lr=3e-4,
        train_iters=100,
        save=str(out),
        load=None,
        **_rope_args(arch),
    )
    args.update(extra_args or {})
    sharded = model.sharded_state_dict()
    emb = sharded["embedding.word_embeddings.weight"]
    state = {
        "args": argparse.Namespace(**args),
        "checkpoint_version": 3.0,
        "iteration": iteration,
        "model": sharded,
        "optimizer": {
            "state": {
                "exp_avg": ShardedTensor.from_rank_offsets(
                    "optimizer.state.exp_avg.embedding.word_embeddings.weight",
                    torch.zeros_like(emb.data),
                    replica_id=0,
                )
            },
            "param_groups": [{"lr": 3e-4}],
        },
        "opt_param_scheduler": {"num_steps": iteration * 4, "max_lr": 3e-4},
        "rng_state": ShardedObject(
            "rng_state",
            [
                {
                    "random_rng_state": None,
                    "np_rng_state": np.random.get_state(),
                    "torch_rng_state": torch.get_rng_state(),
                    "cuda_rng_state": None,
                    "rng_tracker_states": {},
                }
            ],
            (1, 1),
            (0, 0),
            replica_id=0,
        ),
        "num_floating_point_operations_so_far": 1.5e12,
    }
    it = out / f"iter_{iteration:07d}"
    it.mkdir(parents=True)
    dist_checkpointing.save(
        state,
        str(it),
        content_metadata={"singleton_local_shards": False, "chained_optim_avoid_prefix": True},
    )
    (out / "latest_checkpointed_iteration.txt").write_text(str(iteration))
    return out


BRIDGE_MODEL = """\
_target_: megatron.bridge.models.gpt_provider.GPTModelProvider
activation_func:
  _call_: false
  _target_: torch.nn.functional.silu
add_bias_linear: false
add_qkv_bias: false
attention_backend:
  _args_:
  - 5
  _call_: true
  _target_: megatron.core.transformer.enums.AttnBackend
bf16: false
ffn_hidden_size: {ffn}
gated_linear_unit: true
hidden_size: {hidden}
init_method:
  _args_: []
  _partial_: true
  _target_: torch.nn.init.normal_
  mean: 0.0
  std: 0.02
kv_channels: {kv}
layernorm_epsilon: {eps}
make_vocab_size_divisible_by: 128
normalization: RMSNorm
num_attention_heads: {heads}
num_layers: {layers}
num_query_groups: {groups}
params_dtype:
  _call_: false
  _target_: torch.float32
pipeline_model_parallel_size: 1
position_embedding_type: rope
rope_scaling: {rope_scaling}
rope_scaling_factor: {rope_factor}
rotary_base: {theta}
rotary_percent: 1.0
seq_length: {seq}
share_embeddings_and_output_weights: {tied}
should_pad_vocab: false
tensor_model_parallel_size: 1
vocab_size: {vocab}
"""


def bridge(hf_dir: Path, out: Path, step: int = 5) -> Path:
    """Megatron-Bridge layout: tracker files, ``iter_%07d/`` with torch_dist weights (no
    ``args``; unpadded vocabulary), ``run_config.yaml``, ``train_state.pt``, ``tokenizer/``."""
    import yaml
    from megatron.core import dist_checkpointing

    cfg = json.loads((hf_dir / "config.json").read_text())
    model, arch = _model(hf_dir, cfg["vocab_size"])
    s = arch.rope_scaling
    section = BRIDGE_MODEL.format(
        ffn=cfg["intermediate_size"],
        hidden=cfg["hidden_size"],
        kv=cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"],
        eps=cfg["rms_norm_eps"],
        heads=cfg["num_attention_heads"],
        layers=cfg["num_hidden_layers"],
        groups=cfg["num_key_value_heads"],
        rope_scaling=str(bool(s)).lower(),
        rope_factor=float(s["factor"]) if s else 1.0,
        theta=int(arch.rope_theta),
        seq=cfg["max_position_embeddings"],
        tied=str(cfg.get("tie_word_embeddings", False)).lower(),
        vocab=cfg["vocab_size"],
    )
    run_config = {
        "_target_": "megatron.bridge.training.config.ConfigContainer",
        "checkpoint": {
            "_target_": "megatron.bridge.training.config.CheckpointConfig",
            "ckpt_format": "torch_dist",
            "save": str(out),
            "save_optim": True,
            "save_rng": True,
            "fully_parallel_save": True,
        },
        "model": yaml.safe_load(section),
        "tokenizer": {
            "_target_": "megatron.bridge.training.tokenizers.config.TokenizerConfig",
            "tokenizer_type": "HuggingFaceTokenizer",
            "tokenizer_model": None,
        },
        "train": {
            "_target_": "megatron.bridge.training.config.TrainingConfig",
            "global_batch_size": 8,
            "train_iters": 10,
        },
    }
    it = out / f"iter_{step:07d}"
    it.mkdir(parents=True)
    dist_checkpointing.save(
        {"checkpoint_version": 3.0, "iteration": step, "model": model.sharded_state_dict()},
        str(it),
        content_metadata={"singleton_local_shards": False},
    )
    (it / "run_config.yaml").write_text(yaml.safe_dump(run_config, default_flow_style=False))
    train_state = {
        "step": torch.tensor(step),
        "consumed_train_samples": torch.tensor(40),
        "floating_point_operations_so_far": torch.tensor(1e9),
        "do_train": torch.tensor(True),
    }
    torch.save(train_state, it / "train_state.pt")
    shutil.copy2(it / "train_state.pt", out / "latest_train_state.pt")
    _copy_tokenizer(hf_dir, it / "tokenizer")
    (out / "latest_checkpointed_iteration.txt").write_text(str(step))
    return out


class Lightning:
    """Stands for what Lightning keeps in NeMo 2's ``common.pt`` (callbacks, loops): classes
    minitron never needs, and so never unpickles."""

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))

    def __init__(self, marker: str):
        self.marker = marker


def nemo2(hf_dir: Path, out: Path, marker: Path | None = None) -> Path:
    """NeMo 2 layout: ``weights/`` (keys under ``module.``, Lightning state in common.pt) and
    ``context/model.yaml`` (a LlamaConfig with every field, NeMo's Llama 3.1 scaling fields)
    + ``context/nemo_tokenizer/`` + ``context/io.json``."""
    import yaml
    from megatron.core import dist_checkpointing

    cfg = json.loads((hf_dir / "config.json").read_text())
    model, arch = _model(hf_dir, -(-cfg["vocab_size"] // 128) * 128)
    weights = out / "weights"
    weights.mkdir(parents=True)
    state = {
        "sharded_state_dict": model.sharded_state_dict(prefix="module."),
        "epoch": 0,
        "global_step": 12,
        "pytorch-lightning_version": "2.5.0",
        "loops": {"fit_loop": {"state_dict": {}}},
        "state_dict": {},
        "optimizer_states": {},
    }
    if marker is not None:
        state["callbacks"] = {"ModelCheckpoint": Lightning(str(marker))}
    dist_checkpointing.save(state, str(weights))
    s = arch.rope_scaling
    config = {
        "_target_": "nemo.collections.llm.gpt.model.llama.Llama31Config"
        if s
        else "nemo.collections.llm.gpt.model.llama.LlamaConfig",
        "num_layers": cfg["num_hidden_layers"],
        "hidden_size": cfg["hidden_size"],
        "ffn_hidden_size": cfg["intermediate_size"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_query_groups": cfg["num_key_value_heads"],
        "kv_channels": cfg.get("head_dim"),
        "seq_length": cfg["max_position_embeddings"],
        "normalization": "RMSNorm",
        "gated_linear_unit": True,
        "activation_func": {"_target_": "torch.nn.functional.silu", "_call_": False},
        "add_bias_linear": False,
        "position_embedding_type": "rope",
        "rotary_base": int(arch.rope_theta),
        "rotary_percent": 1.0,
        "layernorm_epsilon": cfg["rms_norm_eps"],
        "make_vocab_size_divisible_by": 128,
        "share_embeddings_and_output_weights": bool(cfg.get("tie_word_embeddings", False)),
        "vocab_size": None,
        "bf16": False,
        "num_moe_experts": None,
    }
    if s:
        config.update(
            scale_factor=s["factor"],
            low_freq_factor=s["low_freq_factor"],
            high_freq_factor=s["high_freq_factor"],
            old_context_len=s["original_max_position_embeddings"],
        )
    context = out / "context"
    context.mkdir()
    (context / "model.yaml").write_text(
        yaml.safe_dump(
            {
                "_target_": "nemo.collections.llm.gpt.model.llama.LlamaModel",
                "config": config,
                "optim": None,
                "tokenizer": {
                    "_target_": "nemo.collections.common.tokenizers.huggingface."
                    "auto_tokenizer.AutoTokenizer",
                    "pretrained_model_name": "nemo_tokenizer",
                    "use_fast": True,
                },
            },
            default_flow_style=False,
        )
    )
    (context / "io.json").write_text(json.dumps({"root": {"type": "ref", "key": "trainer"}}))
    _copy_tokenizer(hf_dir, context / "nemo_tokenizer")
    return out
