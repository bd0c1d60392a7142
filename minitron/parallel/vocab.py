"""Vocabulary padding and vocab-parallel log-probabilities under tensor parallelism.

Logits stay sharded ``[..., v/tp]`` over the TP group; reductions are all-reduces
of per-token scalars (max, target logit, sum of exponentials), never a gather of
the vocabulary.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from minitron.parallel.collectives import all_reduce_sum


def vocab_range(shard_size: int, tp_rank: int) -> tuple[int, int]:
    """Global ``[start, end)`` rows of this rank's vocabulary shard."""
    return tp_rank * shard_size, (tp_rank + 1) * shard_size


def mask_padded_vocab(logits: torch.Tensor, vocab_size: int, tp_rank: int) -> torch.Tensor:
    """Logits of padding rows (global index >= ``vocab_size``) set to -inf. Pure.

    ``logits``: this rank's shard ``[..., v/tp]``. Rows past the tokenizer's
    vocabulary exist only so every TP size divides the embedding; they must not
    take probability mass from real tokens."""
    start, end = vocab_range(logits.shape[-1], tp_rank)
    if end <= vocab_size:
        return logits
    pad = torch.arange(start, end, device=logits.device) >= vocab_size
    return logits.masked_fill(pad, float("-inf"))


@torch.no_grad()
def target_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, vocab_size: int, group
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(target), target is the argmax)`` per position, from vocab shards.

    ``logits``: ``[b, s, v/tp]`` on each rank of ``group``; ``targets``: ``[b, s]``
    global token ids. Returns fp32 ``[b, s]`` log-probabilities and a bool ``[b, s]``.
    """
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    rank = dist.get_rank(group) if world > 1 else 0
    x = mask_padded_vocab(logits.float(), vocab_size, rank)
    start, end = vocab_range(x.shape[-1], rank)
    peak = x.max(-1).values
    if world > 1:
        dist.all_reduce(peak, op=dist.ReduceOp.MAX, group=group)
    local = targets - start
    mine = (local >= 0) & (local < end - start)
    picked = x.gather(-1, local.clamp(0, end - start - 1).unsqueeze(-1)).squeeze(-1)
    picked = all_reduce_sum(torch.where(mine, picked, torch.zeros_like(picked)), group)
    sumexp = all_reduce_sum((x - peak.unsqueeze(-1)).exp().sum(-1), group)
    return picked - peak - sumexp.log(), picked >= peak


class VocabParallelReducers:
    """The vocabulary reductions of ``minitron.distill.losses`` over a TP group:
    all-reduce of per-token maxima and sums, an all-gather of per-rank top-k candidates
    (``k`` values per token, not the vocabulary) and the sum of a per-token count over
    the lower ranks (top-k's ties). Rank ``r`` of ``group`` holds vocabulary shard ``r``
    (``vocab_range``)."""

    def __init__(self, group):
        self.group = group
        self.world = dist.get_world_size(group) if dist.is_initialized() else 1
        self.rank = dist.get_rank(group) if self.world > 1 else 0

    def reduce_max(self, x: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            x = x.contiguous()
            dist.all_reduce(x, op=dist.ReduceOp.MAX, group=self.group)
        return x

    def reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(x.contiguous(), self.group) if self.world > 1 else x

    def gather_topk(self, x: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=-1)

    def sum_lower_ranks(self, x: torch.Tensor) -> torch.Tensor:
        """Sum of ``x [n, 1]`` over the ranks before this one, i.e. over the shards of lower
        vocabulary indices (zeros on rank 0): an all-gather of per-token scalars."""
        if self.world == 1:
            return torch.zeros_like(x)
        parts = [torch.empty_like(x) for _ in range(self.world)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return sum(parts[: self.rank], torch.zeros_like(x))

    def kwargs(self) -> dict:
        """The reducer keyword arguments of the loss functions; none on one rank (the loss
        then uses fused single-rank kernels)."""
        if self.world == 1:
            return {}
        return {
            "reduce_max": self.reduce_max,
            "reduce_sum": self.reduce_sum,
            "gather_topk": self.gather_topk,
            "sum_lower_ranks": self.sum_lower_ranks,
        }
