"""Which parameters a training stage updates: all, LoRA adapters, or the norms only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch

from minitron.models.weights import local_parameters

if TYPE_CHECKING:
    from minitron.parallel.lora import LoRA

NORM_SUFFIXES = (
    "input_layernorm.weight",
    "pre_mlp_layernorm.weight",
    "final_layernorm.weight",
    "layer_norm_weight",
)


def freeze(model) -> None:
    """No gradients for any parameter (a frozen teacher: no grads, no optimizer state)."""
    for p in model.parameters():
        p.requires_grad_(False)


def select(
    model, mode: str, lora_rank: int = 16, lora_alpha: float = 32.0, seed: int = 1234
) -> tuple[list[torch.nn.Parameter], Optional[LoRA]]:
    """(trainable parameters, the LoRA object or None) for mode full | lora | norm; every other
    parameter of ``model`` gets ``requires_grad=False``."""
    if mode == "full":
        params = [p for p in model.parameters()]
        for p in params:
            p.requires_grad_(True)
        return params, None
    freeze(model)
    if mode == "norm":
        params = [p for c, _, p in local_parameters(model) if c.endswith(NORM_SUFFIXES)]
        for p in params:
            p.requires_grad_(True)
        return params, None
    if mode == "lora":
        from minitron.parallel.lora import LoRA

        lora = LoRA(model, lora_rank, lora_alpha, seed)
        return lora.parameters(), lora
    raise ValueError(f"mode {mode!r}: valid are full, lora, norm")
