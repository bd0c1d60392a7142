"""Full-vocabulary logits of a TP/PP-split model, for checks against other implementations.

Gathers the vocabulary over TP and sends the result from the last PP stage to
every rank: fine for a few sequences, never used in training or loss paths.
"""

from __future__ import annotations

import torch

from minitron.parallel.collectives import gather_vocab
from minitron.parallel.schedule import from_last_stage, pipeline_forward


def full_logits(model, tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``[b, s, vocab_size]`` fp32 logits (padding rows dropped) on every rank."""
    from megatron.core import parallel_state as ps

    model.eval()
    group = ps.get_tensor_model_parallel_group()

    def collect(output, _batch):
        return gather_vocab(output, group)[..., :vocab_size].float().cpu()

    res = pipeline_forward(model, [{"tokens": tokens}], collect)
    return from_last_stage(res[0] if res is not None else None)
