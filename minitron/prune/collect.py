"""Collect activation importance with forward hooks on megatron-core modules, at any TP/PP.

Hooks (per layer of this PP stage):
- heads: input of ``self_attention.linear_proj`` (``[s, b, heads/tp * d]``, this rank's heads);
- neurons: input of ``mlp.linear_fc2`` (``[s, b, f/tp]``, this rank's neurons);
- channels: output of ``input_layernorm`` and ``pre_mlp_layernorm`` (local spec), or the
  RMSNorm recomputed from the input of the fused ``linear_qkv``/``linear_fc1`` (TE spec),
  and the final norm on the last stage; replicated across TP ranks;
- layers: Block Influence, ``1 - cos`` between each layer's input and output hidden
  states, and with ``blocks=True`` of every contiguous block of layers within this
  stage (that keeps every layer's input of a forward in memory).

After the calibration forwards, :meth:`Collector.results` reduces over data
parallel ranks, concatenates TP slices and merges PP stages, giving full-size
named tensors on every rank (see ``minitron/prune/scores.py``).
"""

from __future__ import annotations

import torch

from minitron.prune.importance import BatchReducer, head_values, reduce_sequence


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.float()


class Collector:
    def __init__(self, model, seq_agg: str = "mean", batch_agg: str = "l2", blocks: bool = False):
        from minitron.models.weights import layer_offset

        self.model, self.arch = model, model.minitron_arch
        self.seq_agg, self.batch_agg = seq_agg, batch_agg
        self.reducers: dict[str, BatchReducer] = {}
        self.bi_sum: dict[int, torch.Tensor] = {}
        self.bi_count: dict[int, int] = {}
        self.block_sum: dict[tuple[int, int], torch.Tensor] = {}
        self.block_count: dict[tuple[int, int], int] = {}
        self.blocks = blocks
        self.inputs: dict[int, torch.Tensor] = {}  # layer -> its normalised input, this forward
        self.handles = []
        self.offset = layer_offset(model)
        self.layers = [self.offset + i for i in range(len(model.decoder.layers))]
        for i, layer in enumerate(model.decoder.layers):
            self._hook_layer(self.offset + i, layer)
        if model.post_process and getattr(model.decoder, "final_layernorm", None) is not None:
            self.handles.append(
                model.decoder.final_layernorm.register_forward_hook(
                    lambda m, a, out: self._add("channels.final", out)
                )
            )

    # -------------------------------------------------------------- hooks
    def _add(self, key: str, per_token: torch.Tensor, heads: bool = False) -> None:
        x = head_values(per_token, self.arch.head_dim) if heads else per_token.detach().abs()
        if key not in self.reducers:
            self.reducers[key] = BatchReducer(self.batch_agg)
        self.reducers[key].add(reduce_sequence(x, self.seq_agg))

    def _hook_layer(self, g: int, layer) -> None:
        attn, mlp = layer.self_attention, layer.mlp
        self.handles.append(
            attn.linear_proj.register_forward_pre_hook(
                lambda m, a: self._add(f"layers.{g}.heads", a[0].detach(), heads=True)
            )
        )
        self.handles.append(
            mlp.linear_fc2.register_forward_pre_hook(
                lambda m, a: self._add(f"layers.{g}.neurons", a[0])
            )
        )
        for which, norm, fused in (
            ("attn", "input_layernorm", attn.linear_qkv),
            ("mlp", "pre_mlp_layernorm", mlp.linear_fc1),
        ):
            module = getattr(layer, norm)
            if isinstance(module, torch.nn.Identity):  # TE spec: norm fused into the linear
                self.handles.append(
                    fused.register_forward_pre_hook(
                        lambda m, a, key=f"channels.{g}.{which}": self._add(
                            key, _rms_norm(a[0].detach(), m.layer_norm_weight, self.arch.norm_eps)
                        )
                    )
                )
            else:
                self.handles.append(
                    module.register_forward_hook(
                        lambda m, a, out, key=f"channels.{g}.{which}": self._add(key, out)
                    )
                )
        self.handles.append(
            layer.register_forward_pre_hook(
                lambda m, a, kw: self._layer_in(g, kw.get("hidden_states", a[0] if a else None)),
                with_kwargs=True,
            )
        )
        self.handles.append(
            layer.register_forward_hook(
                lambda m, a, out: self._layer_out(g, out[0] if isinstance(out, tuple) else out)
            )
        )

    def _layer_in(self, g: int, hidden: torch.Tensor) -> None:
        self.inputs[g] = torch.nn.functional.normalize(hidden.detach().float(), dim=-1)

    def _layer_out(self, g: int, hidden: torch.Tensor) -> None:
        """Block Influence of every block ending at layer ``g`` that started on this stage
        (only the single layer ``g`` unless ``blocks``): ``1 - cos(block input, output)``."""
        out = torch.nn.functional.normalize(hidden.detach().float(), dim=-1)
        for start, h_in in self.inputs.items():
            cos = (out * h_in).sum(-1)
            key = (start, g)
            self.block_sum[key] = self.block_sum.get(key, 0.0) + (1 - cos).double().sum()
            self.block_count[key] = self.block_count.get(key, 0) + cos.numel()
        if not self.blocks or g == self.layers[-1]:
            self.inputs.clear()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    # -------------------------------------------------------------- results
    def results(self) -> dict[str, torch.Tensor]:
        """Full-size named scores on every rank (collective over the model's ranks)."""
        from megatron.core import parallel_state as ps

        from minitron.parallel.gather import gather_tp_vector, merge_over_pp, reduce_over_dp

        dp_group = ps.get_data_parallel_group()
        tp_group = ps.get_tensor_model_parallel_group()

        def final(r: BatchReducer) -> torch.Tensor:
            assert r.acc is not None  # a reducer is made by its first add
            if r.how == "max":
                return reduce_over_dp(r.acc, "max", dp_group)
            acc = reduce_over_dp(r.acc, "sum", dp_group)
            n = reduce_over_dp(torch.tensor(float(r.count)), "sum", dp_group)
            return acc.sqrt() if r.how == "l2" else acc / n

        out: dict[str, torch.Tensor] = {}
        channels = None
        for key in sorted(self.reducers):
            value = final(self.reducers[key]).cpu()
            if key.startswith("channels."):
                channels = value if channels is None else channels + value
            else:  # heads and neurons are split over TP ranks
                out[key] = gather_tp_vector(value, tp_group)
        if channels is not None:
            out["partial.channels"] = channels
        L = self.arch.num_layers
        blocks = torch.full((L, L), float("nan"))
        for (s, e), total in self.block_sum.items():
            t = reduce_over_dp(torch.as_tensor(total, dtype=torch.float64), "sum", dp_group)
            n = reduce_over_dp(
                torch.tensor(float(self.block_count[(s, e)]), dtype=torch.float64), "sum", dp_group
            )
            blocks[s, e] = (t / n).float()
        out[f"partial.blocks.{ps.get_pipeline_model_parallel_rank()}"] = blocks
        merged = merge_over_pp(out, ps.get_pipeline_model_parallel_group())
        result = {k: v for k, v in merged.items() if not k.startswith("partial.")}
        result["channels"] = merged["partial.channels"]
        stage_blocks = [v for k, v in merged.items() if k.startswith("partial.blocks.")]
        bi = torch.stack(stage_blocks).nan_to_num(0).sum(0)
        seen = torch.stack([~v.isnan() for v in stage_blocks]).any(0)
        result["blocks.block_influence"] = torch.where(seen, bi, torch.full_like(bi, float("nan")))
        result["layers.block_influence"] = result["blocks.block_influence"].diagonal().clone()
        return result
