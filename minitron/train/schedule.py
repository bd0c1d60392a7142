"""Learning-rate schedule: linear warm-up, then cosine decay to a floor (the paper's Table 4)."""

from __future__ import annotations

import math


def lr_at(step: int, peak: float, min_lr: float, warmup: int, total: int) -> float:
    """LR for 0-based ``step``: ``peak * (step + 1) / warmup`` during warm-up, then a cosine
    from ``peak`` at the end of warm-up to ``min_lr`` at ``total`` (and ``min_lr`` after)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if total <= warmup:
        return peak
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (peak - min_lr) * (1 + math.cos(math.pi * progress))
