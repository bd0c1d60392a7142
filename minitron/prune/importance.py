"""Activation-based importance (the Minitron paper's estimators), as pure tensor math.

Notation: activations arrive as ``[s, b, n]`` (megatron-core's sequence-first
layout). Each estimator turns one forward's activations into per-sample scores
``[b, n]`` (reduce over the sequence), and a :class:`BatchReducer` folds those
over every calibration sample (reduce over the batch), in fp32.

- heads: ``x`` = the attention output before the output projection, ``[s, b, heads * d]``;
  a head's per-token value is the L2 norm of its ``d`` channels.
- neurons: ``x`` = the input of the second MLP linear (``silu(gate) * up``), ``[s, b, f]``;
  per-token value ``|x|``.
- channels: ``x`` = a norm's output, ``[s, b, h]``; per-token value ``|x|``; the
  channel score is the sum over every norm of the model.
- layers (Block Influence): ``1 - cos(x_in, x_out)`` per token, averaged.

Aggregation (paper default: mean over the sequence, L2 over the batch) is
configurable: sequence ``mean | l2 | max``, batch ``l2 | mean | max``.
"""

from __future__ import annotations

from typing import Optional

import torch

from minitron.choices import BATCH_AGG, SEQ_AGG


def reduce_sequence(x: torch.Tensor, how: str) -> torch.Tensor:
    """``[s, b, n]`` non-negative per-token values -> ``[b, n]``."""
    x = x.float()
    if how == "mean":
        return x.mean(0)
    if how == "l2":
        return x.pow(2).sum(0).sqrt()
    if how == "max":
        return x.amax(0)
    raise ValueError(f"sequence aggregation {how!r}: valid are {SEQ_AGG}")


def head_values(x: torch.Tensor, head_dim: int) -> torch.Tensor:
    """``[s, b, heads * d]`` -> per-token head magnitudes ``[s, b, heads]``."""
    s, b, n = x.shape
    return x.float().reshape(s, b, n // head_dim, head_dim).norm(dim=-1)


class BatchReducer:
    """Folds per-sample scores ``[b, n]`` over batches: l2 (sqrt of sum of squares), mean, max."""

    def __init__(self, how: str):
        if how not in BATCH_AGG:
            raise ValueError(f"batch aggregation {how!r}: valid are {BATCH_AGG}")
        self.how, self.count = how, 0
        self.acc: Optional[torch.Tensor] = None

    def add(self, per_sample: torch.Tensor) -> None:
        x = per_sample.detach().float()
        part = {"l2": lambda: x.pow(2).sum(0), "mean": lambda: x.sum(0), "max": lambda: x.amax(0)}[
            self.how
        ]()
        if self.acc is None:
            self.acc = part
        elif self.how == "max":
            self.acc = torch.maximum(self.acc, part)
        else:
            self.acc = self.acc + part
        self.count += x.shape[0]

    def result(self) -> torch.Tensor:
        if self.acc is None:
            raise RuntimeError("no samples were added")
        if self.how == "l2":
            return self.acc.sqrt()
        if self.how == "mean":
            return self.acc / self.count
        return self.acc
