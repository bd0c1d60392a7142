"""The memory plan of a training stage from its config: what ``--dry-run`` prints, and the
check every training stage makes before it loads a model (on GPU).

The arithmetic is :mod:`minitron.train.memory`; this module only reads a stage's config
(layout, precision, engine options, batch and sequence sizes) into it.
"""

from __future__ import annotations

from typing import Optional, Sequence

from minitron.models.arch import ModelArch
from minitron.models.params import count_params
from minitron.parallel.runtime import world_size_from_env
from minitron.train import memory


def trainable_fraction(arch: ModelArch, mode: str, lora_rank: int = 16) -> float:
    """Share of ``arch``'s parameters a correction mode trains (full, lora, norm)."""
    if mode == "full":
        return 1.0
    total = count_params(arch)["total"]
    h, f, L = arch.hidden_size, arch.ffn_hidden_size, arch.num_layers
    qd, gd = arch.num_attention_heads * arch.head_dim, arch.num_query_groups * arch.head_dim
    if mode == "norm":
        return (2 * L * h + h) / total
    # LoRA on qkv, proj, fc1 (gate + up), fc2: r x (in + out) each
    per_layer = lora_rank * ((h + qd + 2 * gd) + (qd + h) + (h + 2 * f) + (f + h))
    return min(1.0, L * per_layer / total)


def stage_plan(
    cfg,
    trained: list[tuple],
    frozen: Sequence[tuple] = (),
    seq_length: Optional[int] = None,
    loss_kind: str = "lm",
    loss_chunk_tokens: Optional[int] = None,
    rows_per_sample: int = 1,
) -> memory.MemoryPlan:
    """Plan of a stage with TrainingBase fields ``cfg``: ``trained`` (name, arch, mode) and
    ``frozen`` (name, arch) models; sizes from ``cfg.schedule`` and ``cfg.data`` (a
    preference pair is ``rows_per_sample=2`` rows)."""
    dp = cfg.dp or max(1, world_size_from_env() // (cfg.tp * cfg.pp))
    distributed = dp > 1 if cfg.use_distributed_optimizer is None else cfg.use_distributed_optimizer
    models = [
        (
            name,
            memory.ModelRole(
                arch, True, trainable_fraction(arch, mode, getattr(cfg, "lora_rank", 16))
            ),
        )
        for name, arch, mode in trained
    ]
    models += [(name, memory.ModelRole(arch, trained=False)) for name, arch in frozen]
    sched = cfg.schedule
    return memory.plan(
        models,
        tp=cfg.tp,
        pp=cfg.pp,
        dp=dp,
        precision=memory.Precision(cfg.dtype, cfg.grad_reduce_in_fp32, distributed),
        micro_batch_size=sched.micro_batch_size * rows_per_sample,
        seq_length=seq_length or cfg.data.seq_length,
        global_batch_size=sched.global_batch_size * rows_per_sample,
        sequence_parallel=cfg.sequence_parallel,
        recompute=cfg.recompute,
        recompute_num_layers=cfg.recompute_num_layers,
        loss_kind=loss_kind,
        loss_chunk_tokens=loss_chunk_tokens,
        flops_per_second=cfg.flops_per_second,
    )


def dry_run_plan(
    cfg, trained: list[tuple], frozen: Sequence[tuple] = (), log=print, **kwargs
) -> dict:
    """Print a stage's memory plan and step time, then refuse it when over ``gpu_memory_gb``."""
    p = stage_plan(cfg, trained, frozen, **kwargs)
    log(p.format(cfg.gpu_memory_gb))
    memory.check(p, cfg.gpu_memory_gb)
    return {"plan": p.to_dict()}


def check_memory(cfg, trained: list[tuple], frozen: Sequence[tuple] = (), **kwargs) -> None:
    """On GPU, refuse a stage whose plan exceeds ``gpu_memory_gb`` before any model loads
    (on CPU the plan describes no device and nothing is checked)."""
    import torch

    if torch.cuda.is_available():
        memory.check(stage_plan(cfg, trained, frozen, **kwargs), cfg.gpu_memory_gb)
