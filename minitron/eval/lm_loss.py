"""Token-weighted LM loss of a megatron-core model on fixed samples, at any TP/PP."""

from __future__ import annotations

import math

import torch

from minitron.data.datasets import group_equal, microbatches
from minitron.parallel.schedule import from_last_stage, pipeline_forward


def lm_loss(
    model, batch: dict[str, torch.Tensor], vocab_size: int, micro_batch_size: int, progress=None
) -> dict:
    """Mean cross entropy over every unmasked label token of ``batch``.

    ``batch``: stacked ``tokens``, ``labels``, ``loss_mask`` ``[n, s]``. Returns, on
    every rank, ``loss`` (token-weighted mean), ``perplexity``, ``tokens``, and
    ``stderr``: the standard error of the mean over samples' mean losses (tokens
    within a sample are not independent, samples nearly are).
    ``vocab_size`` is unused here (padding is masked inside the model) and kept for
    a uniform evaluator signature.
    """
    model.eval()

    def collect(ce, mb):  # ce: [b, s] per-token cross entropy (vocab-parallel, padding masked)
        mask = mb["loss_mask"].to(ce.device).float()
        return torch.stack([(ce.float() * mask).sum(1).double(), mask.sum(1).double()], 1).cpu()

    rows, last = [], True
    for group in group_equal(microbatches(batch, micro_batch_size)):
        res = pipeline_forward(model, group, collect, with_labels=True)
        if res is None:
            last = False
        else:
            rows += res
        if progress is not None:
            progress.update(sum(int(mb["tokens"].shape[0]) for mb in group))
    per_sample = from_last_stage(torch.cat(rows) if last else None)  # [n, 2]: loss sum, tokens
    total, tokens = per_sample.sum(0).tolist()
    loss = total / tokens
    means = per_sample[:, 0] / per_sample[:, 1].clamp(min=1)
    n = means.numel()
    stderr = (means.std(unbiased=True) / math.sqrt(n)).item() if n > 1 else float("nan")
    return {
        "loss": loss,
        "perplexity": math.exp(loss),
        "tokens": int(tokens),
        "stderr": stderr,
        "samples": n,
    }
