"""Two GPT models in one pipeline schedule: a trained model and its partner (the teacher of
distillation, the reference of preference optimisation), on the same TP/PP stages.

For every micro-batch the partner's forward runs on each stage right beside the trained
model's, so on the last stage both outputs are there when the loss needs them, and a
PP schedule carries all of a step's micro-batches for both (ModelOpt's distillation
wrapper does the same). Between stages the two hidden states travel as one tensor,
concatenated along the hidden dimension: ``[s, b, h_main + h_partner]`` (``s / tp`` with
sequence parallelism); ``adjust_tensor_shapes`` tells megatron-core's schedule.

A frozen partner runs without autograd; a trained one (parallel teacher correction)
gets its own gradients from the same backward.
"""

from __future__ import annotations

import contextlib
import copy

import torch


def unwrap(model):
    """The GPTModel inside a megatron-core DDP wrapper (or the model itself)."""
    return getattr(model, "module", model)


class Coupled(torch.nn.Module):
    """``main`` (trained; a DDP wrapper or a model) and ``partner`` on the same stages.

    ``forward(tokens, attention_mask, labels, partner_labels)``: on the last stage the
    pair ``(main output, partner output)`` (logits, or per-token cross entropy where labels
    are given); elsewhere the concatenated hidden states."""

    def __init__(self, main, partner, partner_trained: bool = False):
        from megatron.core import parallel_state as ps
        from megatron.core.transformer.enums import ModelType

        super().__init__()
        self.main, self.partner, self.partner_trained = main, partner, partner_trained
        m_cfg, p_cfg = unwrap(main).config, unwrap(partner).config
        if m_cfg.sequence_parallel != p_cfg.sequence_parallel:
            raise ValueError("the trained model and its partner must both use sequence "
                             "parallelism or neither")
        self.h_main, self.h_partner = m_cfg.hidden_size, p_cfg.hidden_size
        # the schedule reads its options (dtype, sequence parallel, per-token loss, no_sync)
        # from this config: the trained model's, with both models' no_sync combined
        self.config = copy.copy(m_cfg)
        syncs = [c.no_sync_func for c in ((m_cfg, p_cfg) if partner_trained else (m_cfg,))
                 if c.no_sync_func is not None]
        self.config.no_sync_func = _all_of(syncs) if syncs else None
        self.model_type = ModelType.encoder_or_decoder
        self.last_stage = ps.is_pipeline_last_stage()

    def set_input_tensor(self, input_tensor) -> None:
        x = input_tensor[0] if isinstance(input_tensor, (list, tuple)) else input_tensor
        if x is None:
            unwrap(self.main).set_input_tensor(None)
            unwrap(self.partner).set_input_tensor(None)
            return
        unwrap(self.main).set_input_tensor(x[..., :self.h_main])
        unwrap(self.partner).set_input_tensor(x[..., self.h_main:])

    def forward(self, tokens, attention_mask=None, labels=None, partner_labels=None):
        a = self.main(tokens, None, attention_mask, labels=labels)
        grad = contextlib.nullcontext() if self.partner_trained else torch.no_grad()
        with grad:
            b = self.partner(tokens, None, attention_mask, labels=partner_labels)
        if self.last_stage:
            return a, b
        return torch.cat([a, b], dim=-1)

    def adjust_tensor_shapes(self, recv_shapes: list, send_shapes: list) -> tuple[list, list]:
        """megatron-core's ``adjust_tensor_shapes_fn``: ``[s, b, h]`` -> ``[s, b, h + h']``."""
        def widen(shapes):
            return [(*shape[:-1], self.h_main + self.h_partner) for shape in shapes]

        return widen(recv_shapes), widen(send_shapes)


def _all_of(context_fns):
    @contextlib.contextmanager
    def both():
        with contextlib.ExitStack() as stack:
            for fn in context_fns:
                stack.enter_context(fn())
            yield

    return both
