"""Resumable training state: periodic atomic checkpoints of everything a run needs.

    <run>/checkpoints/step_000050/
        <name>/            each trained model: a minitron checkpoint (weights, manifest, tokenizer)
        optim/rank_R.pt    rank R's optimizer states and RNG states
        trainer.json       step, samples consumed, layout, config fingerprint (written last)

A checkpoint directory is built under a temp name and renamed when complete, so
``kill -9`` at any moment leaves either the previous checkpoint or the new one.
:func:`latest` finds the newest complete one; :func:`restore` puts models,
optimizers and RNG back exactly (on CPU a resumed run's losses equal an
uninterrupted run's bit for bit).
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


def _rng_state() -> dict:
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    state = {"torch": torch.get_rng_state(), "tracker": get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    torch.set_rng_state(state["torch"])
    get_cuda_rng_tracker().set_states(state["tracker"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save(run: Path, step: int, samples: int, models: dict, optimizers: dict, sources: dict,
         fingerprint: str, keep_last: int = 2) -> Path:
    """Write checkpoint ``step`` (collective). ``models``: name -> model; ``optimizers``: name ->
    torch optimizer; ``sources``: name -> (arch, hf_config, tokenizer dir, dtype name)."""
    lay = runtime.layout()
    out = step_dir(run, step)
    tmp = atomic.temp_dir_for(out)
    if lay.is_main:
        atomic.begin(out)
        (tmp / "optim").mkdir()
    runtime.barrier()
    for name, model in models.items():
        arch, hf_config, tok, dtype = sources[name]
        save_checkpoint(model, tmp / name, arch=arch, hf_config=hf_config, tokenizer_src=tok,
                        dtype=dtype, extra={"stage": "train", "step": step})
    torch.save({"optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                "rng": _rng_state()}, tmp / "optim" / f"rank_{lay.rank}.pt")
    runtime.barrier()
    if lay.is_main:
        (tmp / TRAINER_FILE).write_text(json.dumps({
            "step": step, "samples": samples, "fingerprint": fingerprint,
            "layout": {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "world": lay.world_size},
            "models": sorted(models)}, indent=2))
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


def restore(ckpt: Path, models: dict, optimizers: dict, fingerprint: str) -> dict:
    """Load a checkpoint into built models and optimizers; returns trainer.json."""
    lay = runtime.layout()
    info = json.loads((ckpt / TRAINER_FILE).read_text())
    saved = info["layout"]
    if (saved["tp"], saved["pp"], saved["dp"]) != (lay.tp, lay.pp, lay.dp):
        raise CheckpointError(f"{ckpt} was saved at tp={saved['tp']} pp={saved['pp']} "
                              f"dp={saved['dp']}; resume with the same layout (optimizer states "
                              "are per rank), or start a new run from its model")
    if info["fingerprint"] != fingerprint:
        raise CheckpointError(f"{ckpt} belongs to a run with a different configuration; use a new "
                              "output directory, or put the original settings back")
    for name, model in models.items():
        load_weights(model, ckpt / name)
    blob = torch.load(ckpt / "optim" / f"rank_{lay.rank}.pt", weights_only=False)
    for name, opt in optimizers.items():
        opt.load_state_dict(blob["optimizers"][name])
    _set_rng_state(blob["rng"])
    return info
