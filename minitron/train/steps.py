"""The per-micro-batch losses of the training stages, run through the pipeline schedule.

Each returns ``(loss, metrics)`` on the last PP stage, as megatron-core's schedule
expects; the scale (1 / micro-batches per step) is applied by the caller.
"""

from __future__ import annotations

from typing import Optional

import torch

from minitron.config.train import DistillLossConfig
from minitron.distill.losses import Workspace, distill_loss
from minitron.parallel.schedule import pipeline_forward, pipeline_train_step
from minitron.parallel.vocab import VocabParallelReducers


def masked_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(per_token.device).float()
    return (per_token.float() * mask).sum() / mask.sum().clamp(min=1)


def lm_loss_from_ce(ce: torch.Tensor, batch: dict):
    """``ce``: per-token cross entropy ``[b, s]`` (megatron-core's labels path)."""
    loss = masked_mean(ce, batch["loss_mask"])
    return loss, {"loss": loss.detach().clone()}


def lm_loss_from_logits(logits: torch.Tensor, batch: dict):
    """Cross entropy from vocab-parallel logits ``[b, s, v/tp]`` (padding rows are -inf).

    megatron-core's vocab-parallel cross entropy works in place on its input, so it gets a
    copy (``.float()`` of fp32 logits would be the logits themselves)."""
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    x = logits.float() if logits.dtype != torch.float32 else logits.clone()
    ce = vocab_parallel_cross_entropy(x, batch["labels"].to(logits.device))
    return lm_loss_from_ce(ce, batch)


def lm_step(model, batches: list[dict]) -> Optional[list[dict]]:
    """Forward/backward of the LM loss over a step's micro-batches (teacher correction)."""
    out = []
    for mb in batches:
        res = pipeline_train_step(model, [mb], lm_loss_from_ce, with_labels=True,
                                  scale=1.0 / len(batches))
        if res is not None:
            out += res
    return out or None


class Distiller:
    """One distillation step: per micro-batch, the teacher's logits (a frozen forward, or
    with parallel correction a forward/backward of its LM loss), then the student's
    forward/backward of the divergence from them."""

    def __init__(self, student, teacher, cfg: DistillLossConfig, vocab_size: int,
                 train_teacher: bool = False):
        from megatron.core import parallel_state as ps

        self.student, self.teacher, self.cfg = student, teacher, cfg
        self.vocab_size, self.train_teacher = vocab_size, train_teacher
        self.tp = ps.get_tensor_model_parallel_world_size()
        self.reducers = VocabParallelReducers(ps.get_tensor_model_parallel_group())
        # CPU runs (no CUDA) reuse the loss buffers: see Workspace
        self.workspace = None if torch.cuda.is_available() else Workspace()
        s_pad = student.minitron_arch.padded_vocab_size
        t_pad = teacher.minitron_arch.padded_vocab_size
        if s_pad != t_pad and self.tp > 1:
            raise ValueError(f"student and teacher pad their vocabularies differently ({s_pad} vs "
                             f"{t_pad}); at tp > 1 their shards would not line up: import both "
                             "with the same vocab_pad_multiple (at tp = 1 this is handled)")

    def _teacher_logits(self, mb: dict) -> Optional[torch.Tensor]:
        if not self.train_teacher:
            res = pipeline_forward(self.teacher, [mb], lambda out, b: out.detach())
            return None if res is None else res[0]
        held = {}

        def loss_fn(logits, batch):
            held["logits"] = logits.detach()
            loss, metrics = lm_loss_from_logits(logits, batch)
            return loss, {"teacher_loss": metrics["loss"]}

        res = pipeline_train_step(self.teacher, [mb], loss_fn, scale=1.0 / self.n_micro)
        if res is not None:
            self.teacher_metrics.append(res[0])
        return held.get("logits")

    def _student_loss(self, teacher_logits: torch.Tensor):
        cfg = self.cfg

        def loss_fn(logits, batch):
            s, t = logits, teacher_logits
            if s.shape[-1] != t.shape[-1]:  # tp == 1: different padding, same tokenizer
                s, t = s[..., : self.vocab_size], t[..., : self.vocab_size]
            kd = distill_loss(s, t, batch["loss_mask"].to(s.device), cfg.kind, cfg.temperature,
                              cfg.beta, cfg.topk, cfg.chunk_size, **self.reducers.kwargs(),
                              workspace=self.workspace)
            loss, metrics = kd, {"kd": kd.detach().clone()}
            if cfg.ce_weight:
                ce, _ = lm_loss_from_logits(logits, batch)
                loss = loss + cfg.ce_weight * ce
                metrics["ce"] = ce.detach().clone()
            metrics["loss"] = loss.detach().clone()
            return loss, metrics

        return loss_fn

    def step(self, batches: list[dict]) -> Optional[list[dict]]:
        self.n_micro, self.teacher_metrics = len(batches), []
        out = []
        for mb in batches:
            t_logits = self._teacher_logits(mb)
            res = pipeline_train_step(self.student, [mb], self._student_loss(t_logits),
                                      scale=1.0 / len(batches))
            if res is not None:
                out += res
        for m, tm in zip(out, self.teacher_metrics):
            m.update(tm)
        return out or None
