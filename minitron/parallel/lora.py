"""LoRA adapters on megatron-core's tensor-parallel linears, attached by forward hooks.

``y = W x + (alpha / r) * B A x``, with ``B`` zero-initialised (training starts from
the unchanged model). The adapters are a submodule of the model (``model.lora``) while
they train, because megatron-core's DDP and optimizer see only the model's parameters;
they have sharded-checkpoint entries of their own (split where TP splits them).
:meth:`LoRA.merge` folds ``B A`` into the weights and removes them, so the final
checkpoint has exactly the model's own tensors.

Tensor parallelism:
- column-parallel (``linear_qkv``, ``linear_fc1``; input replicated, output split):
  ``A [r, in]`` replicated, ``B [out/tp, r]`` split. ``A x`` passes through
  ``copy_to_tensor_model_parallel_region`` (identity forward, all-reduce of the
  gradient backward), so every rank's ``A`` gets the same, complete gradient.
- row-parallel (``linear_proj``, ``linear_fc2``; input split, output replicated):
  ``A [r, in/tp]`` split, ``B [out, r]`` replicated; the partial ``A x`` is summed
  with ``reduce_from_tensor_model_parallel_region`` (all-reduce forward, identity
  backward).
Both draw the full ``A`` from one seed and keep their slice, so any TP layout
starts from the same adapters as TP = 1.
"""

from __future__ import annotations

import math
from typing import cast

import torch

TARGETS = (
    "self_attention.linear_qkv",
    "self_attention.linear_proj",
    "mlp.linear_fc1",
    "mlp.linear_fc2",
)
ROW_PARALLEL = ("linear_proj", "linear_fc2")


class Adapters(torch.nn.ModuleDict):
    """The adapters of a model, keyed ``<global layer>_<path>``, with megatron-core sharded
    checkpoint entries: the TP-split factor of each adapter is sharded along its split axis."""

    def sharded_state_dict(
        self, prefix: str = "", sharded_offsets: tuple = (), metadata=None
    ) -> dict:
        from megatron.core.utils import (
            make_sharded_tensor_for_checkpoint,
            make_tp_sharded_tensor_for_checkpoint,
        )

        out = {}
        for key, ad in self.items():
            for name, p in (("A", ad.A), ("B", ad.B)):
                k = f"{prefix}{key}.{name}"
                if getattr(p, "tensor_model_parallel", False):
                    # partition_dim: set with tensor_model_parallel (megatron-core's attributes)
                    out[k] = make_tp_sharded_tensor_for_checkpoint(p, k, tp_axis=p.partition_dim)  # type: ignore[union-attr]
                else:
                    out[k] = make_sharded_tensor_for_checkpoint(p, k)
        return out


class LoRA:
    def __init__(
        self, model, rank: int = 16, alpha: float = 32.0, seed: int = 1234, targets: tuple = TARGETS
    ):
        from megatron.core import parallel_state as ps

        self.model, self.rank, self.scale = model, rank, alpha / rank
        self.tp, self.tp_rank = (
            ps.get_tensor_model_parallel_world_size(),
            ps.get_tensor_model_parallel_rank(),
        )
        self.adapters = Adapters()
        self.handles = []
        for layer in model.decoder.layers:  # layer_number: megatron-core's global, 1-based
            for path in targets:
                module = layer.get_submodule(path)
                key = f"{layer.layer_number - 1}.{path}".replace(".", "_")
                row = path.endswith(ROW_PARALLEL)
                self.adapters[key] = self._make(
                    module.weight, row, seed + 1000 * (layer.layer_number - 1) + TARGETS.index(path)
                )
                self.handles.append(module.register_forward_hook(self._hook(key, row)))
        model.lora = self.adapters

    def _make(self, w: torch.Tensor, row: bool, seed: int) -> torch.nn.Module:
        out_local, in_local = w.shape
        full_in = in_local * self.tp if row else in_local
        g = torch.Generator().manual_seed(seed)
        a_full = torch.randn(self.rank, full_in, generator=g) / math.sqrt(full_in)
        if row:
            a = a_full[:, self.tp_rank * in_local : (self.tp_rank + 1) * in_local]
            b = torch.zeros(out_local, self.rank)
        else:
            a, b = a_full, torch.zeros(out_local, self.rank)
        m = torch.nn.Module()
        m.A = torch.nn.Parameter(a.to(w.dtype).to(w.device).contiguous())
        m.B = torch.nn.Parameter(b.to(w.dtype).to(w.device))
        split = m.A if row else m.B  # split across TP ranks
        # megatron-core's TP attributes on a Parameter (read by its checkpointing and optimizer)
        split.tensor_model_parallel, split.partition_dim = self.tp > 1, 1 if row else 0  # type: ignore[attr-defined]
        return m

    def _hook(self, key: str, row: bool):
        from megatron.core.tensor_parallel.mappings import (
            copy_to_tensor_model_parallel_region,
            reduce_from_tensor_model_parallel_region,
        )

        def hook(module, inputs, output):
            x = inputs[0]
            ad = self.adapters[key]
            h = torch.nn.functional.linear(x, ad.A)
            h = (
                reduce_from_tensor_model_parallel_region(h)
                if row
                else copy_to_tensor_model_parallel_region(h)
            )
            delta = torch.nn.functional.linear(h, ad.B) * self.scale
            out, bias = output
            return out + delta.to(out.dtype), bias

        return hook

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.adapters.parameters())

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapters into the weights (``W += scale * B A``) and detach the hooks."""
        for layer in self.model.decoder.layers:
            for path in TARGETS:
                key = f"{layer.layer_number - 1}.{path}".replace(".", "_")
                if key in self.adapters:
                    ad = self.adapters[key]
                    a, b = cast(torch.Tensor, ad.A), cast(torch.Tensor, ad.B)  # made by _make
                    w = layer.get_submodule(path).weight
                    w.add_((b.float() @ a.float()).mul_(self.scale).to(w.dtype))
        for h in self.handles:
            h.remove()
        self.handles.clear()
        if getattr(self.model, "lora", None) is self.adapters:
            del self.model.lora
