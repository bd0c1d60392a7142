"""``minitron score``: importance estimation on a calibration set, at any TP/PP.

    minitron score --config examples/smollm2/score.yaml
    torchrun --nproc_per_node 2 -m minitron score --config examples/smollm2/score.yaml tp=2

Forward passes only. Heads and neurons are scored on the TP rank that holds
them and concatenated; channels (replicated over TP) are taken as they are; PP
stages contribute their layers; data-parallel ranks split the calibration set
and their partial sums are reduced. The result is one layout-independent file.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch

from minitron.checkpoint.load import load_model
from minitron.config.prune import ScoreConfig
from minitron.data.datasets import microbatches, resolve_prefixes, samples
from minitron.errors import ConfigError
from minitron.models.full_tensors import FullTensors
from minitron.parallel import runtime
from minitron.parallel.schedule import pipeline_forward
from minitron.prune.baselines import magnitude_scores, random_scores
from minitron.prune.collect import Collector
from minitron.prune.scores import save_scores


def activation_scores(
    model,
    batch: dict,
    micro_batch_size: int,
    seq_agg: str,
    batch_agg: str,
    blocks: bool,
    progress=None,
) -> dict[str, torch.Tensor]:
    """Run the calibration forwards with the importance hooks (collective)."""
    collector = Collector(model, seq_agg, batch_agg, blocks)
    model.eval()
    try:
        for mb in microbatches(batch, micro_batch_size):
            pipeline_forward(model, [mb], lambda out, b: None, with_labels=True)
            if progress is not None:
                progress.update(int(mb["tokens"].shape[0]))
    finally:
        collector.remove()
    return collector.results()


def main(cfg: ScoreConfig, log=print) -> dict:
    t0 = time.perf_counter()
    data = cfg.data
    if cfg.method == "activation":
        if data is None:  # validate() refuses this too
            raise ConfigError("data", "method=activation needs calibration data: data.paths=[...]")
        resolve_prefixes(data)  # a missing dataset fails before the model loads
    lay = runtime.init(cfg.tp, cfg.pp)
    model, arch, _ = load_model(cfg.model, cfg.dtype)
    meta: dict[str, Any] = {
        "method": cfg.method,
        "model": cfg.model,
        "scored_layout": {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp},
    }
    if cfg.method == "activation":
        assert data is not None  # checked above
        batch = samples(data, "train", cfg.num_samples, arch.vocab_size)
        mine = {k: v[lay.dp_rank :: lay.dp] for k, v in batch.items()}  # DP ranks split the set
        bar = contextlib.nullcontext(None)
        if cfg.progress and lay.is_main:
            from tqdm import tqdm

            bar = tqdm(total=len(mine["tokens"]), desc="calibration", unit="sample", leave=False)
        with bar as b:
            scores = activation_scores(
                model,
                mine,
                cfg.micro_batch_size,
                cfg.seq_aggregation,
                cfg.batch_aggregation,
                cfg.block_scores,
                b,
            )
        meta.update(
            aggregation={"sequence": cfg.seq_aggregation, "batch": cfg.batch_aggregation},
            calibration={
                "samples": cfg.num_samples,
                "seq_length": data.seq_length,
                "seed": data.seed,
                "data": list(data.paths),
                "split": data.split,
            },
        )
    elif cfg.method == "magnitude":
        scores = magnitude_scores(arch, FullTensors(model))
    else:
        scores = random_scores(arch, cfg.seed)
        meta["seed"] = cfg.seed
    meta["seconds"] = round(time.perf_counter() - t0, 2)
    if lay.is_main:
        save_scores(cfg.out, scores, arch, meta, cfg.overwrite)
        log(f"[score] {cfg.method} scores of {cfg.model} -> {cfg.out} in {meta['seconds']:.1f}s")
    runtime.barrier()
    return scores
