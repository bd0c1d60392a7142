"""The losses of the training stages, each run over all of a step's micro-batches in one
call of megatron-core's pipeline schedule.

Every loss function returns ``(loss_sum, count, metric_sums)`` on the last PP stage: the
sum of per-token losses over the micro-batch's ``count`` loss tokens, and metrics as sums
over the same tokens. The engine divides the step's gradient by the global count
(summed over micro-batches and data-parallel ranks), and ``reduce_metrics`` does the same
for the logged values, so neither depends on how a step is split.
"""

from __future__ import annotations

from typing import Optional

import torch

from minitron.config.train import DistillLossConfig
from minitron.distill.losses import Workspace, distill_loss
from minitron.parallel.coupled import Coupled, unwrap
from minitron.parallel.schedule import model_device, pipeline_train_step
from minitron.parallel.vocab import VocabParallelReducers
from minitron.train.metrics import student_tags


def masked_sum(per_token: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of ``per_token`` over the mask, number of masked-in tokens)."""
    mask = mask.to(per_token.device).float()
    return (per_token.float() * mask).sum(), mask.sum()


def lm_loss_from_ce(ce: torch.Tensor, batch: dict):
    """``ce``: per-token cross entropy ``[b, s]`` (megatron-core's labels path)."""
    total, n = masked_sum(ce, batch["loss_mask"])
    return total, n, {"loss": total.detach()}


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token cross entropy ``[b, s]`` from vocab-parallel logits ``[b, s, v/tp]`` (padding
    rows are -inf). megatron-core's vocab-parallel cross entropy works in place on its input,
    so it gets a copy (``.float()`` of fp32 logits would be the logits themselves)."""
    from megatron.core.tensor_parallel import vocab_parallel_cross_entropy

    x = logits.float() if logits.dtype != torch.float32 else logits.clone()
    return vocab_parallel_cross_entropy(x, labels.to(logits.device))


def lm_step(model, batches: list[dict]) -> Optional[list[dict]]:
    """Forward/backward of the LM loss over a step's micro-batches (teacher correction, SFT)."""
    return pipeline_train_step(model, batches, lm_loss_from_ce, with_labels=True)


class Distiller:
    """One distillation step: the students (trained) and the teacher (frozen, or trained on its
    LM loss with parallel correction) coupled in one schedule; on the last stage each
    student's loss is the divergence of its logits from the teacher's (plus the teacher's LM
    loss when it is trained). Several students share the teacher's forward: its logits are
    computed once per micro-batch and each student's loss reads them; the step's loss is the
    sum of the students' losses, so each student's gradient is exactly its own loss's.

    ``students``: one model or a list; ``names`` tags their metrics (``kd_<name>``) when
    there are several (one student logs ``kd``, ``loss`` as before)."""

    def __init__(
        self,
        students,
        teacher,
        cfg: DistillLossConfig,
        vocab_size: int,
        train_teacher: bool = False,
        names: Optional[list[str]] = None,
    ):
        from megatron.core import parallel_state as ps

        students = list(students) if isinstance(students, (list, tuple)) else [students]
        self.cfg, self.vocab_size, self.train_teacher = cfg, vocab_size, train_teacher
        if len(students) > 1 and names is None:
            raise ValueError("several students need names (their metrics' suffixes)")
        self.tags = student_tags(list(names)) if names is not None else [""]
        self.tp = ps.get_tensor_model_parallel_world_size()
        self.reducers = VocabParallelReducers(ps.get_tensor_model_parallel_group())
        # CPU runs (no CUDA) reuse the loss buffers: see Workspace. Each student's gradient
        # buffer is its own (it lives until the step's backward); the scratch is shared
        shared = None if torch.cuda.is_available() else Workspace()
        self.workspaces = [shared and shared.own(str(i)) for i in range(len(students))]
        t_pad = unwrap(teacher).minitron_arch.padded_vocab_size
        for s in students:
            s_pad = unwrap(s).minitron_arch.padded_vocab_size
            if s_pad != t_pad and self.tp > 1:
                raise ValueError(
                    f"student and teacher pad their vocabularies differently ({s_pad} "
                    f"vs {t_pad}); at tp > 1 their shards would not line up: import "
                    "both with the same vocab_pad_multiple (at tp = 1 this is handled)"
                )
        self.pair = Coupled(students, teacher, partner_trained=train_teacher)

    def _student_loss(self, logits, t_logits, batch, mask, tag: str, metrics: dict, workspace):
        cfg = self.cfg
        s, t = logits, t_logits.detach()
        if s.shape[-1] != t.shape[-1]:  # tp == 1: different padding, same tokenizer
            s, t = s[..., : self.vocab_size], t[..., : self.vocab_size]
        kd = distill_loss(
            s,
            t,
            mask,
            cfg.kind,
            cfg.temperature,
            cfg.beta,
            cfg.topk,
            cfg.chunk_size,
            **self.reducers.kwargs(),
            workspace=workspace,
            reduction="sum",
        )
        loss = kd
        metrics[f"kd{tag}"] = kd.detach()
        if cfg.ce_weight:
            ce, _ = masked_sum(cross_entropy(logits, batch["labels"]), mask)
            loss = loss + cfg.ce_weight * ce
            metrics[f"ce{tag}"] = ce.detach()
        metrics[f"loss{tag}"] = loss.detach()
        return loss

    def _loss(self, outputs, batch):
        *students, t_logits = outputs
        mask = batch["loss_mask"].to(t_logits.device)
        metrics: dict = {}
        loss = sum(
            self._student_loss(s, t_logits, batch, mask, tag, metrics, ws)
            for s, tag, ws in zip(students, self.tags, self.workspaces)
        )
        if len(students) > 1:
            metrics["loss"] = loss.detach()
        if self.train_teacher:  # parallel correction: the teacher's LM loss, same tokens
            t_ce, _ = masked_sum(cross_entropy(t_logits, batch["labels"]), mask)
            loss = loss + t_ce
            metrics["teacher_loss"] = t_ce.detach()
        return loss, mask.float().sum(), metrics

    def step(self, batches: list[dict]) -> Optional[list[dict]]:
        device = model_device(self.pair)

        def forward(m, b):
            return m(b["tokens"].to(device))

        return pipeline_train_step(self.pair, batches, self._loss, forward=forward)
