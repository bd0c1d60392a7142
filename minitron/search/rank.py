"""Ranking search candidates, and how well one ranking predicts another (pure functions).

A candidate's scores are losses (lower is better). :func:`spearman` is the rank correlation
with average ranks for ties, the definition scipy's ``spearmanr`` uses; the benchmark asks
whether the ranking right after pruning (zero-shot) or after a short distillation predicts
the ranking after a long one.
"""

from __future__ import annotations

import math
from typing import Sequence


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ascending (the lowest loss ranks 1); ties share their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation of two equally long score lists (NaN if either is constant
    or there are fewer than two)."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} vs {len(b)} scores")
    if len(a) < 2:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    if va == 0 or vb == 0:
        return float("nan")
    return cov / math.sqrt(va * vb)


def top_k(scores: dict[str, float], k: int | None) -> list[str]:
    """The ``k`` names with the lowest scores (all when ``k`` is None), best first; ties are
    broken by name so every shard and rerun agrees."""
    best = sorted(scores, key=lambda n: (scores[n], n))
    return best if k is None else best[:k]
