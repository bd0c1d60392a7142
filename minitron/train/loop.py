"""The resumable training loop shared by teacher correction and distillation.

A recipe supplies the models being trained (:class:`Trained`), a ``micro_step``
that runs forward and backward over one optimizer step's micro-batches and
returns its metrics, and a ``validate`` callback. The loop owns everything else:
the data order (megatron-core GPTDataset, seeded; each data-parallel rank takes its
share of every global batch), learning rates, gradient synchronisation and
clipping, the optimizer step, logging, periodic validation, atomic checkpoints
and resumption, and the stop on a non-finite loss.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from minitron.checkpoint.mcore import save_checkpoint
from minitron.config.train import OptimConfig, ScheduleConfig
from minitron.data.datasets import build
from minitron.errors import MinitronError
from minitron.parallel import runtime
from minitron.parallel.grads import clip_grad_norm, finalize_grads
from minitron.parallel.schedule import from_last_stage
from minitron.train import state
from minitron.train.metrics import MetricsLogger
from minitron.train.schedule import lr_at


@dataclasses.dataclass
class Trained:
    """A model the loop updates, with what is needed to save it."""

    name: str
    model: torch.nn.Module
    params: list
    optim: OptimConfig
    source: tuple  # (arch, hf_config, tokenizer dir, dtype name)
    optimizer: Optional[torch.optim.Optimizer] = None
    before_save: Optional[Callable[[], None]] = None  # e.g. merge LoRA adapters

    def __post_init__(self):
        decay = [p for p in self.params if p.dim() >= 2]
        rest = [p for p in self.params if p.dim() < 2]
        groups = [g for g in ({"params": decay, "weight_decay": self.optim.weight_decay},
                              {"params": rest, "weight_decay": 0.0}) if g["params"]]
        self.optimizer = torch.optim.AdamW(groups, lr=self.optim.lr,
                                           betas=(self.optim.beta1, self.optim.beta2),
                                           eps=self.optim.eps)


class NonFiniteLoss(MinitronError):
    pass


def fingerprint(cfg) -> str:
    """Hash of the settings a resumed run must share (not intervals or logging)."""
    d = dataclasses.asdict(cfg)
    for k in ("progress", "tensorboard"):
        d.pop(k, None)
    for k in ("log_every", "eval_every", "save_every", "keep_last"):
        d.get("schedule", {}).pop(k, None)
    d.pop("validation", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def gpt_batches(data_cfg, sched: ScheduleConfig, vocab_size: int) -> Callable[[int], list[dict]]:
    """Step -> this data-parallel rank's micro-batches of that global batch, from the train
    split of prepared data (megatron-core GPTDataset, seeded). Collective (builds the index)."""
    lay = runtime.layout()
    dataset = build(data_cfg, {"train": sched.steps * sched.global_batch_size}, vocab_size)["train"]
    per_rank = sched.global_batch_size // lay.dp

    def batches(step: int) -> list[dict]:
        start = step * sched.global_batch_size + lay.dp_rank * per_rank
        items = [dataset[i] for i in range(start, start + per_rank)]
        stacked = {k: torch.stack([it[k] for it in items]) for k in ("tokens", "labels", "loss_mask")}
        return split_micro(stacked, sched.micro_batch_size)

    return batches


def split_micro(stacked: dict, size: int) -> list[dict]:
    n = next(iter(stacked.values())).shape[0]
    return [{k: v[i:i + size] for k, v in stacked.items()} for i in range(0, n, size)]


def run(run_dir: str | Path, trained: list[Trained], batches: Callable[[int], list[dict]],
        sched: ScheduleConfig, micro_step: Callable[[list[dict]], dict],
        validate: Callable[[], dict], fp: str, tensorboard: bool = True, progress: bool = True,
        log=print) -> dict:
    """Train ``trained`` for ``sched.steps`` optimizer steps; ``batches(step)`` gives this
    rank's micro-batches of global batch ``step`` (so the data position is the step)."""
    run_dir = Path(run_dir)
    lay = runtime.layout()
    final = run_dir / "final"
    if all((final / t.name / "manifest.json").is_file() for t in trained):
        if lay.is_main:
            log(f"[train] {run_dir} is complete (final/ exists): nothing to do")
        return {"resumed_from": None, "complete": True}
    if sched.global_batch_size % (sched.micro_batch_size * lay.dp):
        raise MinitronError(f"schedule.global_batch_size={sched.global_batch_size} must be a "
                            f"multiple of micro_batch_size x data-parallel size "
                            f"({sched.micro_batch_size} x {lay.dp})")
    start, resumed = 0, None
    ckpt = runtime.on_main(state.latest, run_dir)
    if ckpt is not None:
        info = state.restore(ckpt, {t.name: t.model for t in trained},
                             {t.name: t.optimizer for t in trained}, fp)
        start, resumed = info["step"], str(ckpt)
    if ckpt is None:
        torch.manual_seed(sched.seed)
    logger = MetricsLogger(run_dir, sched.steps, start, lay.is_main, tensorboard, progress)
    if resumed:
        logger.message(f"[train] resumed from {resumed} (step {start})")
    last_metrics: dict = {}
    for step in range(start, sched.steps):
        t0 = time.perf_counter()
        for t in trained:
            lr = lr_at(step, t.optim.lr, t.optim.min_lr, t.optim.warmup_steps, sched.steps)
            for g in t.optimizer.param_groups:
                g["lr"] = lr
            t.optimizer.zero_grad(set_to_none=True)
        step_batches = batches(step)
        metrics = micro_step(step_batches)
        loss = metrics.get("loss", float("nan"))
        if not math.isfinite(loss):
            last = state.latest(run_dir)
            raise NonFiniteLoss(f"non-finite loss {loss} at step {step + 1}; the last good "
                                f"checkpoint is {last or 'none (no checkpoint written yet)'}")
        for t in trained:
            finalize_grads(t.model, t.params)
            norm = clip_grad_norm(t.model, t.params, t.optim.clip_grad)
            metrics[f"grad_norm{'' if t is trained[0] else '_' + t.name}"] = norm
            metrics[f"lr{'' if t is trained[0] else '_' + t.name}"] = \
                t.optimizer.param_groups[0]["lr"]
            t.optimizer.step()
        tokens = sum(int(b["loss_mask"].sum()) for b in step_batches) * lay.dp
        metrics["tokens_per_s"] = tokens / (time.perf_counter() - t0)
        done = step + 1
        if done == sched.steps or (sched.eval_every and done % sched.eval_every == 0):
            metrics.update(validate())
        if done % sched.log_every == 0 or done == sched.steps:
            logger.log(done, metrics)
        if done % sched.save_every == 0 or done == sched.steps:
            state.save(run_dir, done, done * sched.global_batch_size,
                       {t.name: t.model for t in trained}, {t.name: t.optimizer for t in trained},
                       {t.name: t.source for t in trained}, fp, sched.keep_last)
        last_metrics = metrics
    final_metrics = {k: v for k, v in last_metrics.items() if k.startswith("val_")}
    for t in trained:
        if t.before_save is not None:
            t.before_save()
        arch, hf_config, tok, dtype = t.source
        save_checkpoint(t.model, final / t.name, arch=arch, hf_config=hf_config,
                        tokenizer_src=tok, dtype=dtype, overwrite=True,
                        extra={"stage": "train", "run": str(run_dir), "steps": sched.steps})
    logger.close(f"[train] done: {final}" if lay.is_main else None)
    return {"resumed_from": resumed, "complete": True, "final": final_metrics}


def broadcast_metrics(per_micro: Optional[list[dict]]) -> dict:
    """Average the last stage's per-micro-batch metrics and send them to every rank."""
    if per_micro is not None:
        keys = per_micro[0].keys()
        per_micro = {k: float(sum(float(m[k]) for m in per_micro) / len(per_micro)) for k in keys}
    return from_last_stage(per_micro)
