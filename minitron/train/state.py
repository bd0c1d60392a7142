"""Resumable training state: periodic atomic checkpoints of everything a run needs.

    <run>/checkpoints/step_000050/
        <name>/            each trained model: a minitron checkpoint (weights, manifest, tokenizer)
        optim/<name>/      its optimizer state (fp32 main weights, Adam moments, step), saved by
                           megatron-core dist_checkpointing from the optimizer's sharded state
                           dict: one layout-independent checkpoint, not a file per rank
        rng/rank_R.safetensors   rank R's RNG states (tensors only, no pickle)
        trainer.json       step, samples consumed, layout, optimizer kind, the run's settings,
                           sizes and sha256 of optim/ and rng/ (written last)

A checkpoint directory is built under a temp name and renamed when complete, so
``kill -9`` at any moment leaves either the previous checkpoint or the new one.
:func:`resume_point` finds the newest complete one and verifies it (settings, and every
file's size and sha256, as ``minitron loss`` does): a damaged one is reported with the
one before it, never used. :func:`restore` puts models, optimizers and RNG back. At the same layout a resumed run's losses equal an uninterrupted run's
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
from minitron.checkpoint.dist_save import dist_save
from minitron.checkpoint.gate import dist_load
from minitron.checkpoint.mcore import load_weights, save_checkpoint
from minitron.errors import CheckpointError, ConfigError, MinitronError
from minitron.parallel import collectives, runtime
from minitron.train import settings as run_settings

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
    get_cuda_rng_tracker().set_states(
        {k[len("tracker.") :]: v for k, v in state.items() if k.startswith("tracker.")}
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(
    run: Path,
    step: int,
    samples: int,
    trained: list,
    settings: dict,
    keep_last: int = 2,
    skipped_steps: int = 0,
) -> Path:
    """Write checkpoint ``step`` (collective) of the :class:`~minitron.train.loop.Trained`
    models in ``trained``, each with its optimizer."""
    from safetensors.torch import save_file

    lay = runtime.layout()
    _check_weights(trained, run, step)
    out = step_dir(run, step)
    tmp = None
    if lay.is_main:
        tmp = atomic.begin(out, "train-step")
        (tmp / "optim").mkdir()
        (tmp / "rng").mkdir()
    tmp = collectives.broadcast_object(tmp)
    for t in trained:
        arch, hf_config, tok, dtype = t.source
        save_checkpoint(
            t.model,
            tmp / t.name,
            arch=arch,
            hf_config=hf_config,
            tokenizer_src=tok,
            dtype=dtype,
            extra={"stage": "train", "step": step},
            check=False,
        )
        if lay.is_main:
            (tmp / "optim" / t.name).mkdir()
        runtime.barrier()
        dist_save(t.engine.sharded_state_dict(False), str(tmp / "optim" / t.name))
    save_file(_rng_state(), str(tmp / "rng" / f"rank_{lay.rank}.safetensors"))
    runtime.barrier()
    if lay.is_main:
        (tmp / TRAINER_FILE).write_text(
            json.dumps(
                {
                    "step": step,
                    "samples": samples,
                    "fingerprint": run_settings.digest(settings),
                    "settings": settings,
                    "layout": {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "world": lay.world_size},
                    "distributed_optimizer": trained[0].engine.options.use_distributed_optimizer,
                    "skipped_steps": skipped_steps,
                    "models": sorted(t.name for t in trained),
                    # the models have their own manifests; this covers the optimizer state and RNG
                    "files": {**_checksums(tmp, "optim"), **_checksums(tmp, "rng")},
                },
                indent=2,
            )
        )
        atomic.commit(tmp, out, overwrite=True)
        for old in complete(run)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    runtime.barrier()
    return out


class NonFiniteLoss(MinitronError):
    """Training diverged: non-finite gradients in a row, or a non-finite weight."""


def _check_weights(trained: list, run: Path, step: int) -> None:
    """Collective: stop before a checkpoint would hold a non-finite weight (a finite
    gradient can still step weights to inf at a huge learning rate)."""
    from minitron.checkpoint.mcore import non_finite

    bad = collectives.first_error(
        next(
            (f"{t.name}: {b}" for t in trained if (b := non_finite(t.model.named_parameters()))),
            None,
        )
    )
    if bad is not None:
        last = latest(run)
        raise NonFiniteLoss(
            f"after step {step} a weight is not finite ({bad}); nothing was "
            f"saved. The last good checkpoint is "
            f"{last or 'none (no checkpoint written yet)'}: lower optim.lr or "
            "check the data, then rerun"
        )


def _checksums(root: Path, sub: str) -> dict:
    return {f"{sub}/{k}": v for k, v in atomic.checksums(root / sub).items()}


def complete(run: Path) -> list[Path]:
    """A run's complete checkpoints (trainer.json is written last), oldest first."""
    return sorted(
        p for p in (Path(run) / "checkpoints").glob("step_*") if (p / TRAINER_FILE).is_file()
    )


def latest(run: Path) -> Optional[Path]:
    """The newest complete checkpoint of a run, or None."""
    done = complete(run)
    return done[-1] if done else None


_INFO_KEYS = ("step", "samples", "fingerprint", "layout", "models")


def read_info(ckpt: Path) -> dict:
    """A checkpoint's trainer.json."""
    f = Path(ckpt) / TRAINER_FILE
    try:
        info = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{f} cannot be read ({e}); the checkpoint is damaged") from None
    missing = [k for k in _INFO_KEYS if not isinstance(info, dict) or k not in info]
    if missing:
        raise CheckpointError(f"{f} lacks {missing}; the checkpoint is damaged")
    return info


def problem(ckpt: Path, info: dict) -> Optional[str]:
    """What is wrong with a checkpoint's files (sizes and sha256), or None."""
    from minitron.checkpoint.mcore import read_manifest

    for name in info["models"]:
        try:
            manifest = read_manifest(ckpt / name)
        except CheckpointError as e:
            return str(e)
        bad = atomic.verify(ckpt / name, manifest["files"])
        if bad:
            return f"{name}/{bad}"
    if "files" not in info:
        return None  # written before trainer.json listed its files: the models were checked
    return atomic.verify(ckpt, info["files"])


def resume_point(run: Path, settings: dict) -> Optional[tuple[Path, dict]]:
    """The checkpoint to resume from and its trainer.json, verified; None for a new run.
    The newest complete checkpoint is used only if its settings match and its files are
    intact; otherwise the error names what differs or what is damaged, and the checkpoint
    before it."""
    done = complete(run)
    if not done:
        return None
    newest = done[-1]
    before = (
        f"; the checkpoint before it is {done[-2]}: delete {newest} to resume from that"
        if len(done) > 1
        else "; no earlier checkpoint is left: start over with overwrite=true"
    )
    try:
        info = read_info(newest)
    except CheckpointError as e:
        raise CheckpointError(f"{e}{before}") from None
    diff = run_settings.differences(info.get("settings"), settings)
    if diff or (not info.get("settings") and info["fingerprint"] != run_settings.digest(settings)):
        raise ConfigError(
            "config",
            f"{run} was started with other settings "
            f"({'; '.join(diff) or 'written by an older minitron'}); put them "
            "back, pass overwrite=true to start over, or use another out",
        )
    bad = problem(newest, info)
    if bad:
        raise CheckpointError(f"{newest} is damaged ({bad}){before}")
    return newest, info


def restore(ckpt: Path, info: dict, trained: list, seed: int) -> None:
    """Load a verified checkpoint (:func:`resume_point`) into the built models and
    optimizers, and the RNG."""
    from safetensors.torch import load_file

    from minitron.parallel.runtime import reseed

    lay = runtime.layout()
    missing = sorted({t.name for t in trained} - set(info.get("models", [])))
    if missing or not (ckpt / "optim").is_dir():
        raise CheckpointError(
            f"{ckpt} has no optimizer state for {missing or 'any model'} "
            "(written by an older minitron?); start a new run from its model"
        )
    for t in trained:
        load_weights(t.model, ckpt / t.name)
        t.engine.load_optimizer_state(
            dist_load(t.engine.sharded_state_dict(True), ckpt / "optim" / t.name)
        )
    saved = info["layout"]
    same = (saved["tp"], saved["pp"], saved["dp"]) == (lay.tp, lay.pp, lay.dp)
    rng = ckpt / "rng" / f"rank_{lay.rank}.safetensors"
    if same and rng.is_file():
        _set_rng_state(load_file(str(rng)))
    else:  # another layout: every rank's streams differ anyway; continue from the step
        reseed(seed + info["step"])
