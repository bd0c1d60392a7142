"""Vocabulary padding under tensor parallelism (pure; no communication)."""

from __future__ import annotations

import torch


def vocab_range(shard_size: int, tp_rank: int) -> tuple[int, int]:
    """Global ``[start, end)`` rows of this rank's vocabulary shard."""
    return tp_rank * shard_size, (tp_rank + 1) * shard_size


def mask_padded_vocab(logits: torch.Tensor, vocab_size: int, tp_rank: int) -> torch.Tensor:
    """Logits of padding rows (global index >= ``vocab_size``) set to -inf.

    ``logits``: this rank's shard ``[..., v/tp]``. Rows past the tokenizer's
    vocabulary exist only so every TP size divides the embedding; they must not
    take probability mass from real tokens."""
    start, end = vocab_range(logits.shape[-1], tp_rank)
    if end <= vocab_size:
        return logits
    pad = torch.arange(start, end, device=logits.device) >= vocab_size
    return logits.masked_fill(pad, float("-inf"))
