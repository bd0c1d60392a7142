"""Token-weighted LM loss of a megatron-core model on fixed samples, at any TP/PP."""

from __future__ import annotations

import math

import torch

from minitron.data.datasets import group_equal, microbatches
from minitron.parallel.schedule import from_last_stage, pipeline_forward


def lm_loss(model, batch: dict[str, torch.Tensor], vocab_size: int, micro_batch_size: int) -> dict:
    """Mean cross entropy over every unmasked label token of ``batch``.

    ``batch``: stacked ``tokens``, ``labels``, ``loss_mask`` ``[n, s]``. Returns
    ``{"loss", "perplexity", "tokens"}`` on every rank.
    """
    model.eval()

    def collect(ce, mb):  # ce: [b, s] per-token cross entropy (vocab-parallel, padding masked)
        mask = mb["loss_mask"].to(ce.device).float()
        return torch.stack([(ce.float() * mask).sum().double(), mask.sum().double()]).cpu()

    total = torch.zeros(2, dtype=torch.float64)
    last = True
    for group in group_equal(microbatches(batch, micro_batch_size)):
        res = pipeline_forward(model, group, collect, with_labels=True)
        if res is None:
            last = False
        else:
            total += torch.stack(res).sum(0)
    total = from_last_stage(total if last else None)
    loss = (total[0] / total[1]).item()
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": int(total[1].item())}
