"""RoPE frequencies: the Llama 3.1 ``llama3`` scaling as a pure function.

megatron-core's RotaryEmbedding only takes a factor (low/high-frequency factors and
the original context are fixed at Llama 3.1's values); Llama 3.2 and others change
them, so minitron computes the scaled inverse frequencies itself and installs them.
"""

from __future__ import annotations

import math

import torch


def inv_freq(head_dim: int, theta: float) -> torch.Tensor:
    """Unscaled inverse frequencies ``1 / theta^(2i/d)``, shape ``(d/2,)``, fp32."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


def llama3_scaled(
    freqs: torch.Tensor,
    factor: float,
    low_freq_factor: float,
    high_freq_factor: float,
    original_max_position_embeddings: int,
) -> torch.Tensor:
    """Scale inverse frequencies as Llama 3.1 does (shape preserved).

    Wavelengths shorter than ``orig / high_freq_factor`` are kept, those longer than
    ``orig / low_freq_factor`` are divided by ``factor``, and the band between is a
    linear blend in ``orig / wavelength``.
    """
    wavelen = 2 * math.pi / freqs
    orig = original_max_position_embeddings
    keep = wavelen < orig / high_freq_factor
    divide = wavelen > orig / low_freq_factor
    blend = (orig / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    mid = (1 - blend) * freqs / factor + blend * freqs
    return torch.where(keep, freqs, torch.where(divide, freqs / factor, mid))


def model_inv_freq(head_dim: int, theta: float, scaling: dict | None) -> torch.Tensor:
    base = inv_freq(head_dim, theta)
    if not scaling:
        return base
    return llama3_scaled(
        base,
        scaling["factor"],
        scaling["low_freq_factor"],
        scaling["high_freq_factor"],
        scaling["original_max_position_embeddings"],
    )
