"""``minitron loss``: held-out LM loss of a model, at any TP/PP.

minitron loss model=ckpt/smollm2 data.paths=[data/builtin/news]
torchrun --nproc_per_node 2 -m minitron loss model=ckpt/smollm2 data.paths=[data/builtin] tp=2
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from minitron.checkpoint.load import load_model
from minitron.config.schema import DataConfig, LossConfig
from minitron.data.datasets import resolve_prefixes, samples
from minitron.eval.evaluator import require_finite
from minitron.eval.lm_loss import lm_loss
from minitron.parallel import runtime


def held_out_loss(
    model, arch, data: DataConfig, split: str, num_samples: int, micro_batch_size: int
) -> dict:
    """LM loss of a loaded model on ``num_samples`` seeded samples of ``split`` (collective)."""
    batch = samples(data, split, num_samples, arch.vocab_size)
    result = lm_loss(model, batch, arch.vocab_size, micro_batch_size)
    require_finite(result["loss"], f"the model on {', '.join(data.paths)} ({split})")
    result.update(
        data=list(data.paths),
        split=split,
        samples=num_samples,
        seq_length=data.seq_length,
        seed=data.seed,
    )
    return result


def main(cfg: LossConfig, log=print) -> dict:
    t0 = time.perf_counter()
    resolve_prefixes(cfg.data)  # a missing dataset fails before the model loads
    lay = runtime.init(cfg.tp, cfg.pp)
    model, arch, _ = load_model(cfg.model, cfg.dtype)
    result = held_out_loss(model, arch, cfg.data, cfg.split, cfg.num_samples, cfg.micro_batch_size)
    result.update(
        model=cfg.model,
        layout={"tp": lay.tp, "pp": lay.pp},
        dtype=cfg.dtype,
        seconds=round(time.perf_counter() - t0, 2),
    )
    if lay.is_main:
        log(
            f"[loss] {cfg.model} on {','.join(cfg.data.paths)} ({cfg.split}, {result['tokens']:,} "
            f"tokens): loss {result['loss']:.4f}, perplexity {result['perplexity']:.2f}"
        )
        if cfg.out:
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.out).write_text(json.dumps(result, indent=2))
    return result
