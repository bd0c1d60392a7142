"""The resumable training loop shared by teacher correction, distillation and alignment.

A recipe supplies the models being trained (:class:`Trained`), a ``make_step`` that
returns the step function once the models are wrapped (it runs forward and backward over
all of one optimizer step's micro-batches in one schedule call and returns the last
stage's per-micro-batch metric sums), and a ``validate`` callback. The numerics and communication are megatron-core's (:mod:`minitron.parallel.engine`:
DDP, fp32 main weights, the distributed optimizer, ``finalize_model_grads``). The loop
owns the rest: the data order (each data-parallel rank takes its share of every global
batch), learning rates, skipping steps with a non-finite gradient norm, logging,
periodic validation, atomic checkpoints and resumption.
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
from minitron.config.train import OptimConfig, ScheduleConfig, TrainingBase
from minitron.data.datasets import build
from minitron.errors import ConfigError, MinitronError
from minitron.parallel import runtime
from minitron.parallel.engine import Engine, EngineOptions
from minitron.parallel.schedule import reduce_metrics
from minitron.train import state
from minitron.train.metrics import MetricsLogger
from minitron.train.schedule import lr_at


@dataclasses.dataclass
class Trained:
    """A model the loop updates, with what is needed to save it. ``engine`` (its DDP wrapper
    and optimizer) is built by :func:`run` once it knows the checkpoint it resumes from."""

    name: str
    model: torch.nn.Module
    optim: OptimConfig
    source: tuple  # (arch, hf_config, tokenizer dir, dtype name)
    before_save: Optional[Callable[[], None]] = None  # e.g. merge LoRA adapters
    engine: Optional[Engine] = None

    @property
    def ddp(self):
        return self.engine.ddp


class NonFiniteLoss(MinitronError):
    pass


# settings a resumed run may change: where it lives, how it is laid out and logged, not what
# it computes
_NOT_FINGERPRINTED = ({f.name for f in dataclasses.fields(TrainingBase)} - {"dtype"}) | {"out"}


def fingerprint(cfg) -> str:
    """Hash of the settings a resumed run must share (not layout, intervals or logging)."""
    d = dataclasses.asdict(cfg)
    for k in _NOT_FINGERPRINTED:
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


def _engines(trained: list[Trained], opts: TrainingBase, saved: Optional[dict]) -> None:
    """Wrap every trained model in megatron-core's engine. A resumed run keeps the optimizer
    kind it was saved with unless the config names one (the two store their state in
    different checkpoint formats)."""
    lay = runtime.layout()
    distributed = opts.use_distributed_optimizer
    if saved is not None and "distributed_optimizer" in saved:
        was = saved["distributed_optimizer"]
        if distributed is None:
            distributed = was
        elif distributed != was:
            raise ConfigError("use_distributed_optimizer", f"the checkpoint was saved with "
                              f"use_distributed_optimizer={str(was).lower()}; resume with that "
                              "value (or leave it unset), or start a new run")
    for t in trained:
        dtype = next(t.model.parameters()).dtype
        t.engine = Engine(t.model, t.optim, EngineOptions.of(opts, dtype, lay.dp, distributed))


def run(run_dir: str | Path, trained: list[Trained], batches: Callable[[int], list[dict]],
        sched: ScheduleConfig, make_step: Callable[[], Callable[[list[dict]], Optional[list]]],
        validate: Callable[[], dict], fp: str, opts: TrainingBase, log=print) -> dict:
    """Train ``trained`` for ``sched.steps`` optimizer steps; ``batches(step)`` gives this
    rank's micro-batches of global batch ``step`` (so the data position is the step).
    ``make_step()`` is called once the models are wrapped (``Trained.ddp``) and returns the
    step function over a step's micro-batches."""
    run_dir = Path(run_dir)
    lay = runtime.layout()
    final = run_dir / "final"
    if all((final / t.name / "manifest.json").is_file() for t in trained):
        if lay.is_main:
            log(f"[train] {run_dir} is complete (final/ exists): nothing to do")
        return {"resumed_from": None, "complete": True}
    if sched.global_batch_size % (sched.micro_batch_size * lay.dp):
        raise ConfigError("schedule.global_batch_size",
                          f"{sched.global_batch_size} must be a multiple of micro_batch_size x "
                          f"data-parallel size ({sched.micro_batch_size} x {lay.dp})")
    ckpt = runtime.on_main(state.latest, run_dir)
    saved = runtime.on_main(state.read_info, ckpt) if ckpt is not None else None
    _engines(trained, opts, saved)
    start, resumed = 0, None
    if ckpt is not None:
        info = state.restore(ckpt, trained, fp, sched.seed)
        start, resumed = info["step"], str(ckpt)
        skipped_total = info.get("skipped_steps", 0)
    else:
        torch.manual_seed(sched.seed)
        skipped_total = 0
    step_fn = make_step()
    logger = MetricsLogger(run_dir, sched.steps, start, lay.is_main, opts.tensorboard,
                           opts.progress)
    if resumed:
        logger.message(f"[train] resumed from {resumed} (step {start})")
    last_metrics: dict = {}
    streak = 0
    for step in range(start, sched.steps):
        t0 = time.perf_counter()
        for t in trained:
            t.model.train()
            t.engine.zero_grad()
            t.engine.set_lr(lr_at(step, t.optim.lr, t.optim.min_lr, t.optim.warmup_steps,
                                  sched.steps))
        step_batches = batches(step)
        per_micro = step_fn(step_batches)
        # the loss count is known on the last stage; finalize sends it to the other stages
        count = sum(int(m["count"]) for m in per_micro) if per_micro is not None else 0
        metrics = reduce_metrics(per_micro)
        skipped = False
        for i, t in enumerate(trained):
            t.engine.finalize(count)
            ok, norm = t.engine.step()
            skipped |= not ok
            tag = "" if i == 0 else "_" + t.name
            metrics[f"grad_norm{tag}"] = norm
            metrics[f"lr{tag}"] = t.engine.optimizer.param_groups[0]["lr"]
        streak = streak + 1 if skipped else 0
        skipped_total += int(skipped)
        metrics["skipped_steps"] = skipped_total
        tokens = sum(int(b["loss_mask"].sum()) for b in step_batches) * lay.dp
        metrics["tokens_per_s"] = tokens / (time.perf_counter() - t0)
        done = step + 1
        if skipped:
            logger.message(f"[train] step {done}: non-finite gradient norm "
                           f"({metrics.get('grad_norm')}) or loss ({metrics.get('loss')}); the "
                           f"update was skipped ({streak} in a row, {skipped_total} in all)")
        if done == sched.steps or (sched.eval_every and done % sched.eval_every == 0):
            metrics.update(validate())
        if done % sched.log_every == 0 or done == sched.steps or skipped:
            logger.log(done, metrics)
        if streak >= opts.max_skipped_steps:
            last = state.latest(run_dir)
            raise NonFiniteLoss(f"{streak} steps in a row up to step {done} had a non-finite "
                                f"gradient norm or loss (max_skipped_steps={opts.max_skipped_steps});"
                                f" the last good checkpoint is "
                                f"{last or 'none (no checkpoint written yet)'}: lower optim.lr or "
                                "check the data, then rerun")
        if done % sched.save_every == 0 or done == sched.steps:
            state.save(run_dir, done, done * sched.global_batch_size, trained, fp,
                       sched.keep_last, skipped_total)
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
