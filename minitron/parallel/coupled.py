"""GPT models in one pipeline schedule: one or more trained models and their partner (the
teacher of distillation, the reference of preference optimisation), on the same TP/PP
stages.

For every micro-batch the partner's forward runs on each stage right beside the trained
models', so on the last stage every output is there when the loss needs it, and a PP
schedule carries all of a step's micro-batches for all of them (ModelOpt's distillation
wrapper does the same for one student). Several students share one teacher forward per
micro-batch: the teacher's cost is paid once, not once per student. Between stages the
hidden states travel as one tensor, concatenated along the hidden dimension:
``[s, b, h_1 + ... + h_n + h_partner]`` (``s / tp`` with sequence parallelism);
``adjust_tensor_shapes`` tells megatron-core's schedule.

A frozen partner runs without autograd; a trained one (parallel teacher correction)
gets its own gradients from the same backward.
"""

from __future__ import annotations

import contextlib
import copy
import itertools

import torch


def unwrap(model):
    """The GPTModel inside a megatron-core DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


class Coupled(torch.nn.Module):
    """``main`` (a trained model -- a DDP wrapper or a model -- or a list of them) and
    ``partner`` on the same stages.

    ``forward(tokens, attention_mask, labels, partner_labels)``: on the last stage the
    tuple ``(main outputs..., partner output)`` (logits, or per-token cross entropy where
    labels are given); elsewhere the concatenated hidden states."""

    def __init__(self, main, partner, partner_trained: bool = False):
        from megatron.core import parallel_state as ps
        from megatron.core.transformer.enums import ModelType

        super().__init__()
        mains = list(main) if isinstance(main, (list, tuple)) else [main]
        self.mains = mains  # registered as submodules main, main1, main2, ... below
        for i, m in enumerate(mains):
            setattr(self, f"main{i}" if i else "main", m)
        self.partner, self.partner_trained = partner, partner_trained
        cfgs = [unwrap(m).config for m in mains]
        p_cfg = unwrap(partner).config
        if len({c.sequence_parallel for c in cfgs + [p_cfg]}) > 1:
            raise ValueError(
                "the trained models and their partner must all use sequence parallelism or none"
            )
        self.widths = [c.hidden_size for c in cfgs] + [p_cfg.hidden_size]
        self.h_main, self.h_partner = self.widths[0], self.widths[-1]
        self.bounds = list(itertools.accumulate([0] + self.widths))
        # the schedule reads its options (dtype, sequence parallel, per-token loss, no_sync)
        # from this config: the first trained model's, with every trained model's no_sync
        self.config = copy.copy(cfgs[0])
        syncs = [
            c.no_sync_func
            for c in cfgs + ([p_cfg] if partner_trained else [])
            if c.no_sync_func is not None
        ]
        self.config.no_sync_func = _all_of(syncs) if syncs else None
        self.model_type = ModelType.encoder_or_decoder
        self.last_stage = ps.is_pipeline_last_stage()

    def _models(self) -> list:
        return list(self.mains) + [self.partner]

    def set_input_tensor(self, input_tensor) -> None:
        x = input_tensor[0] if isinstance(input_tensor, (list, tuple)) else input_tensor
        for i, m in enumerate(self._models()):
            unwrap(m).set_input_tensor(
                None if x is None else x[..., self.bounds[i] : self.bounds[i + 1]]
            )

    def forward(self, tokens, attention_mask=None, labels=None, partner_labels=None):
        outs = [m(tokens, None, attention_mask, labels=labels) for m in self.mains]
        grad = contextlib.nullcontext() if self.partner_trained else torch.no_grad()
        with grad:
            outs.append(self.partner(tokens, None, attention_mask, labels=partner_labels))
        if self.last_stage:
            return tuple(outs)
        return torch.cat(outs, dim=-1)

    def adjust_tensor_shapes(self, recv_shapes: list, send_shapes: list) -> tuple[list, list]:
        """megatron-core's ``adjust_tensor_shapes_fn``: ``[s, b, h]`` -> ``[s, b, sum of h]``."""

        def widen(shapes):
            return [(*shape[:-1], self.bounds[-1]) for shape in shapes]

        return widen(recv_shapes), widen(send_shapes)


def _all_of(context_fns):
    @contextlib.contextmanager
    def both():
        with contextlib.ExitStack() as stack:
            for fn in context_fns:
                stack.enter_context(fn())
            yield

    return both
