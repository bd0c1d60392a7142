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
import time
from pathlib import Path
from typing import Callable, Optional

import torch

from minitron.checkpoint.mcore import save_checkpoint
from minitron.config.train import OptimConfig, ScheduleConfig, TrainingBase
from minitron.data.datasets import build
from minitron.errors import ConfigError
from minitron.parallel import runtime
from minitron.parallel.engine import Engine, EngineOptions
from minitron.parallel.schedule import reduce_metrics
from minitron.train import settings as run_settings
from minitron.train import state
from minitron.train.metrics import MetricsLogger
from minitron.train.schedule import lr_at
from minitron.train.state import NonFiniteLoss  # noqa: F401 (raised here and by state.save)


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
    tag: Optional[str] = None  # suffix of its grad_norm/lr metrics; None: "" first, else _name

    @property
    def ddp(self):
        return self.engine.ddp


def finished(final: Path, names: list[str], settings: dict) -> bool:
    """Whether ``final/`` holds every model, trained with these settings (other settings
    are refused, naming the keys that differ)."""
    from minitron.checkpoint.mcore import read_manifest

    if not all((final / n / "manifest.json").is_file() for n in names):
        return False
    for n in names:
        saved = read_manifest(final / n).get("extra", {}).get("settings")
        diff = run_settings.differences(saved, settings)
        if diff:
            raise ConfigError(
                "config",
                f"{final.parent} already finished with other settings "
                f"({'; '.join(diff)}); pass overwrite=true to start over, or use "
                "another out",
            )
    return True


def start_over(run_dir: Path, log) -> None:
    """``overwrite=true``: remove what an earlier run left (its checkpoints, final models,
    metrics), nothing else."""
    import shutil

    removed = []
    for name in ("checkpoints", "final", "tensorboard", "metrics.csv"):
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
        else:
            continue
        removed.append(name)
    if removed:
        log(f"[train] overwrite=true: removed {', '.join(removed)} from {run_dir}")


def gpt_batches(data_cfg, sched: ScheduleConfig, vocab_size: int) -> Callable[[int], list[dict]]:
    """Step -> this data-parallel rank's micro-batches of that global batch, from the train
    split of prepared data (megatron-core GPTDataset, seeded). Collective (builds the index)."""
    lay = runtime.layout()
    dataset = build(data_cfg, {"train": sched.steps * sched.global_batch_size}, vocab_size)["train"]
    per_rank = sched.global_batch_size // lay.dp

    def batches(step: int) -> list[dict]:
        start = step * sched.global_batch_size + lay.dp_rank * per_rank
        items = [dataset[i] for i in range(start, start + per_rank)]
        stacked = {
            k: torch.stack([it[k] for it in items]) for k in ("tokens", "labels", "loss_mask")
        }
        return split_micro(stacked, sched.micro_batch_size)

    return batches


def split_micro(stacked: dict, size: int) -> list[dict]:
    n = next(iter(stacked.values())).shape[0]
    return [{k: v[i : i + size] for k, v in stacked.items()} for i in range(0, n, size)]


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
            raise ConfigError(
                "use_distributed_optimizer",
                f"the checkpoint was saved with "
                f"use_distributed_optimizer={str(was).lower()}; resume with that "
                "value (or leave it unset), or start a new run",
            )
    for t in trained:
        dtype = next(t.model.parameters()).dtype
        t.engine = Engine(t.model, t.optim, EngineOptions.of(opts, dtype, lay.dp, distributed))


def run(
    run_dir: str | Path,
    trained: list[Trained],
    batches: Callable[[int], list[dict]],
    sched: ScheduleConfig,
    make_step: Callable[[], Callable[[list[dict]], Optional[list]]],
    validate: Callable[[], dict],
    settings: dict,
    opts: TrainingBase,
    log=print,
) -> dict:
    """Train ``trained`` for ``sched.steps`` optimizer steps; ``batches(step)`` gives this
    rank's micro-batches of global batch ``step`` (so the data position is the step).
    ``make_step()`` is called once the models are wrapped (``Trained.ddp``) and returns the
    step function over a step's micro-batches."""
    run_dir = Path(run_dir)
    lay = runtime.layout()
    final = run_dir / "final"
    if getattr(opts, "overwrite", False) and lay.is_main:
        start_over(run_dir, log)
    runtime.barrier()
    if runtime.on_main(finished, final, [t.name for t in trained], settings):
        if lay.is_main:
            log(f"[train] {run_dir} is complete (final/ exists) with these settings: nothing to do")
        return {"resumed_from": None, "complete": True}
    if sched.global_batch_size % (sched.micro_batch_size * lay.dp):
        raise ConfigError(
            "schedule.global_batch_size",
            f"{sched.global_batch_size} must be a multiple of micro_batch_size x "
            f"data-parallel size ({sched.micro_batch_size} x {lay.dp})",
        )
    point = runtime.on_main(state.resume_point, run_dir, settings)
    _engines(trained, opts, point[1] if point else None)
    start, resumed = 0, None
    if point is not None:
        ckpt, info = point
        state.restore(ckpt, info, trained, sched.seed)
        start, resumed = info["step"], str(ckpt)
        skipped_total = info.get("skipped_steps", 0)
    else:
        torch.manual_seed(sched.seed)
        skipped_total = 0
    step_fn = make_step()
    logger = MetricsLogger(
        run_dir, sched.steps, start, lay.is_main, opts.tensorboard, opts.progress
    )
    if resumed:
        logger.message(f"[train] resumed from {resumed} (step {start})")
    last_metrics: dict = {}
    streak = 0
    for step in range(start, sched.steps):
        t0 = time.perf_counter()
        for t in trained:
            assert t.engine is not None  # _engines wrapped every model
            t.model.train()
            t.engine.zero_grad()
            t.engine.set_lr(
                lr_at(step, t.optim.lr, t.optim.min_lr, t.optim.warmup_steps, sched.steps)
            )
        step_batches = batches(step)
        per_micro = step_fn(step_batches)
        # the loss count is known on the last stage; finalize sends it to the other stages
        count = sum(int(m["count"]) for m in per_micro) if per_micro is not None else 0
        metrics = reduce_metrics(per_micro)
        skipped = False
        for i, t in enumerate(trained):
            assert t.engine is not None
            t.engine.finalize(count)
            ok, norm = t.engine.step()
            skipped |= not ok
            tag = t.tag if t.tag is not None else ("" if i == 0 else "_" + t.name)
            metrics[f"grad_norm{tag}"] = norm
            metrics[f"lr{tag}"] = t.engine.optimizer.param_groups[0]["lr"]
        streak = streak + 1 if skipped else 0
        skipped_total += int(skipped)
        metrics["skipped_steps"] = skipped_total
        tokens = sum(int(b["loss_mask"].sum()) for b in step_batches) * lay.dp
        metrics["tokens_per_s"] = tokens / (time.perf_counter() - t0)
        done = step + 1
        if skipped:
            logger.message(
                f"[train] step {done}: non-finite gradient norm "
                f"({metrics.get('grad_norm')}) or loss ({metrics.get('loss')}); the "
                f"update was skipped ({streak} in a row, {skipped_total} in all)"
            )
        if done == sched.steps or (sched.eval_every and done % sched.eval_every == 0):
            metrics.update(validate())
        if done % sched.log_every == 0 or done == sched.steps or skipped:
            logger.log(done, metrics)
        if streak >= opts.max_skipped_steps:
            last = state.latest(run_dir)
            raise NonFiniteLoss(
                f"{streak} steps in a row up to step {done} had a non-finite "
                f"gradient norm or loss (max_skipped_steps={opts.max_skipped_steps});"
                f" the last good checkpoint is "
                f"{last or 'none (no checkpoint written yet)'}: lower optim.lr or "
                "check the data, then rerun"
            )
        if done % sched.save_every == 0 or done == sched.steps:
            state.save(
                run_dir,
                done,
                done * sched.global_batch_size,
                trained,
                settings,
                sched.keep_last,
                skipped_total,
            )
        last_metrics = metrics
    final_metrics = {k: v for k, v in last_metrics.items() if k.startswith("val_")}
    for t in trained:
        if t.before_save is not None:
            t.before_save()
        arch, hf_config, tok, dtype = t.source
        save_checkpoint(
            t.model,
            final / t.name,
            arch=arch,
            hf_config=hf_config,
            tokenizer_src=tok,
            dtype=dtype,
            overwrite=True,
            extra={
                "stage": "train",
                "run": str(run_dir),
                "steps": sched.steps,
                "settings": settings,
            },
        )
    logger.close(f"[train] done: {final}" if lay.is_main else None)
    return {"resumed_from": resumed, "complete": True, "final": final_metrics}
