"""Resumable training state: periodic atomic checkpoints of everything a run needs.

    <run>/checkpoints/step_000050/
        <name>/            each trained model: a minitron checkpoint (weights, manifest, tokenizer)
        optim/<name>/      its optimizer state (fp32 main weights, Adam moments, step), saved by
                           megatron-core dist_checkpointing from the optimizer's sharded state
                           dict: one layout-independent checkpoint, not a file per rank
        rng/rank_R.safetensors   rank R's RNG states (tensors only, no pickle)
        trainer.json       step, samples consumed, layout, optimizer kind, config fingerprint
                           (written last)

A checkpoint directory is built under a temp name and renamed when complete, so
``kill -9`` at any moment leaves either the previous checkpoint or the new one.
:func:`latest` finds the newest complete one; :func:`restore` puts models, optimizers
and RNG back. At the same layout a resumed run's losses equal an uninterrupted run's
bit for bit on CPU; at another data-parallel (or TP/PP) size the weights and optimizer
state are resharded and the run continues (RNG streams are then re-seeded from the step).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

import torch

from minitron.checkpoint import atomic
from minitron.checkpoint.mcore import load_weights, save_checkpoint
from minitron.errors import CheckpointError
from minitron.parallel import runtime

TRAINER_FILE = "trainer.json"


def step_dir(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step_{step:06d}"


def _rng_state() -> dict[str, torch.Tensor]:
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    state = {"torch": torch.get_rng_state()}
    state.update({f"tracker.{k}": v for k, v in get_cuda_rng_tracker().get_states().items()})
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return {k: v.contiguous() for k, v in state.items()}


def _set_rng_state(state: dict[str, torch.Tensor]) -> None:
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    torch.set_rng_state(state["torch"])
    get_cuda_rng_tracker().set_states({k[len("tracker."):]: v for k, v in state.items()
                                       if k.startswith("tracker.")})
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(run: Path, step: int, samples: int, trained: list, fingerprint: str,
         keep_last: int = 2, skipped_steps: int = 0) -> Path:
    """Write checkpoint ``step`` (collective) of the :class:`~minitron.train.loop.Trained`
    models in ``trained``, each with its optimizer."""
    from safetensors.torch import save_file

    lay = runtime.layout()
    out = step_dir(run, step)
    tmp = atomic.temp_dir_for(out)
    if lay.is_main:
        atomic.begin(out)
        (tmp / "optim").mkdir()
        (tmp / "rng").mkdir()
    runtime.barrier()
    for t in trained:
        arch, hf_config, tok, dtype = t.source
        save_checkpoint(t.model, tmp / t.name, arch=arch, hf_config=hf_config, tokenizer_src=tok,
                        dtype=dtype, extra={"stage": "train", "step": step})
        if lay.is_main:
            (tmp / "optim" / t.name).mkdir()
        runtime.barrier()
        t.engine.save_optimizer(tmp / "optim" / t.name)
    save_file(_rng_state(), str(tmp / "rng" / f"rank_{lay.rank}.safetensors"))
    runtime.barrier()
    if lay.is_main:
        (tmp / TRAINER_FILE).write_text(json.dumps({
            "step": step, "samples": samples, "fingerprint": fingerprint,
            "layout": {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "world": lay.world_size},
            "distributed_optimizer": trained[0].engine.options.use_distributed_optimizer,
            "skipped_steps": skipped_steps,
            "models": sorted(t.name for t in trained)}, indent=2))
        atomic.commit(tmp, out, overwrite=True)
        done = sorted(p for p in (run / "checkpoints").glob("step_*") if (p / TRAINER_FILE).is_file())
        for old in done[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    runtime.barrier()
    return out


def latest(run: Path) -> Optional[Path]:
    """The newest complete checkpoint of a run, or None."""
    done = sorted(p for p in (Path(run) / "checkpoints").glob("step_*")
                  if (p / TRAINER_FILE).is_file())
    return done[-1] if done else None


def read_info(ckpt: Path) -> dict:
    """A checkpoint's trainer.json."""
    try:
        return json.loads((Path(ckpt) / TRAINER_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{ckpt}/{TRAINER_FILE} cannot be read ({e})") from None


def restore(ckpt: Path, trained: list, fingerprint: str, seed: int) -> dict:
    """Load a checkpoint into the built models and optimizers; returns trainer.json."""
    from safetensors.torch import load_file

    from minitron.parallel.runtime import reseed

    lay = runtime.layout()
    info = read_info(ckpt)
    if info["fingerprint"] != fingerprint:
        raise CheckpointError(f"{ckpt} belongs to a run with a different configuration; use a new "
                              "output directory, or put the original settings back")
    missing = sorted({t.name for t in trained} - set(info.get("models", [])))
    if missing or not (ckpt / "optim").is_dir():
        raise CheckpointError(f"{ckpt} has no optimizer state for {missing or 'any model'} "
                              "(written by an older minitron?); start a new run from its model")
    for t in trained:
        load_weights(t.model, ckpt / t.name)
        t.engine.load_optimizer(ckpt / "optim" / t.name)
    saved = info["layout"]
    same = (saved["tp"], saved["pp"], saved["dp"]) == (lay.tp, lay.pp, lay.dp)
    rng = ckpt / "rng" / f"rank_{lay.rank}.safetensors"
    if same and rng.is_file():
        _set_rng_state(load_file(str(rng)))
    else:  # another layout: every rank's streams differ anyway; continue from the step
        reseed(seed + info["step"])
    return info
