"""``minitron eval``: LM loss and multiple-choice accuracy, at any TP/PP.

minitron eval --config examples/smollm2/eval.yaml
minitron eval --model ckpt/smollm2 --task winogrande limit=500
torchrun --nproc_per_node 2 -m minitron eval --config examples/smollm2/eval.yaml tp=2
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from minitron.checkpoint.load import describe_source, load_model
from minitron.config.schema import EvalConfig
from minitron.data.datasets import resolve_prefixes
from minitron.data.tokenizer import load_tokenizer
from minitron.errors import ConfigError
from minitron.eval.evaluator import Evaluator, records, table
from minitron.eval.layer_skip import skip_layers
from minitron.parallel import runtime


def run(ev: Evaluator, cfg: EvalConfig, common: dict) -> list[dict]:
    """Every task of ``cfg`` on the evaluator's model (with cfg.skip_layers skipped)."""
    rows = []
    with skip_layers(ev.model, cfg.skip_layers):
        for task in cfg.tasks:
            task = dataclasses.replace(
                task,
                limit=cfg.limit if cfg.limit is not None else task.limit,
                num_fewshot=cfg.num_fewshot if cfg.num_fewshot is not None else task.num_fewshot,
            )
            rows += records(task.name, "mc", ev.multiple_choice(ev.prepare(task)), common, task)
        for lt in cfg.loss:
            rows += records(lt.name, "loss", ev.loss(lt), {**common, "seed": lt.data.seed})
    return rows


def main(cfg: EvalConfig, log=print) -> list[dict]:
    t0 = time.perf_counter()
    for i, lt in enumerate(cfg.loss):  # a missing dataset fails before the model loads
        try:
            resolve_prefixes(lt.data)
        except ConfigError as e:
            raise ConfigError(f"loss[{i}].{e.field}", e.message) from None
    if cfg.skip_layers:  # so do layers the model does not have
        n = describe_source(cfg.model)[0].num_layers
        if max(cfg.skip_layers) >= n:
            raise ConfigError(
                "skip_layers", f"{sorted(cfg.skip_layers)}: the model has {n} layers (0..{n - 1})"
            )
    lay = runtime.init(cfg.tp, cfg.pp)
    model, arch, _ = load_model(cfg.model, cfg.dtype)
    ev = Evaluator(
        model,
        arch,
        load_tokenizer(cfg.model),
        batch_size=cfg.batch_size,
        micro_batch_size=cfg.micro_batch_size,
        max_length=cfg.max_length,
        progress=cfg.progress,
    )
    common = {
        "model": cfg.model,
        "layout": {"tp": lay.tp, "pp": lay.pp},
        "dtype": cfg.dtype,
        "skip_layers": list(cfg.skip_layers),
    }
    rows = run(ev, cfg, common)
    if lay.is_main:
        log(table(rows))
        log(f"[eval] {time.perf_counter() - t0:.1f}s")
        if cfg.out:
            Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
            Path(cfg.out).write_text(json.dumps(rows, indent=2))
    return rows
