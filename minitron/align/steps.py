"""Forward/backward of the alignment losses on one step's micro-batches, at any TP/PP.

SFT: the masked NLL of response tokens (megatron-core's vocab-parallel cross entropy
from labels; packed rows carry their block-diagonal attention mask). Preferences:
each micro-batch holds n pairs as 2n rows (chosen, then rejected); the frozen
reference's sequence log-probs come from a forward without gradients, the
policy's from a forward/backward whose loss is the preference loss.
"""

from __future__ import annotations

from typing import Optional

import torch

from minitron.align.losses import preference_loss
from minitron.parallel.schedule import pipeline_forward, pipeline_train_step
from minitron.train.steps import lm_step


def sequence_logps(ce: torch.Tensor, mask: torch.Tensor, average: bool) -> torch.Tensor:
    """Per-row log-probability of the masked tokens from per-token cross entropy ``[r, s]``."""
    mask = mask.to(ce.device).float()
    total = -(ce.float() * mask).sum(1)
    return total / mask.sum(1).clamp(min=1) if average else total


sft_step = lm_step  # SFT is the LM loss on response tokens (the loss mask) of packed rows


class PreferenceStep:
    def __init__(self, policy, reference, cfg):
        self.policy, self.reference, self.cfg = policy, reference, cfg

    def _reference_logps(self, mb: dict) -> Optional[torch.Tensor]:
        avg = self.cfg.average_log_probs
        res = pipeline_forward(self.reference, [mb],
                               lambda ce, b: sequence_logps(ce, b["loss_mask"], avg).detach(),
                               with_labels=True)
        return None if res is None else res[0]

    def loss_fn(self, ref: torch.Tensor):
        cfg = self.cfg

        def fn(ce, batch):
            logps = sequence_logps(ce, batch["loss_mask"], cfg.average_log_probs)
            n = logps.shape[0] // 2
            per_pair, metrics = preference_loss(
                cfg.loss_kind, logps[:n], logps[n:], ref[:n].to(logps.device),
                ref[n:].to(logps.device), cfg.beta, cfg.eta, cfg.gt_reward_scale,
                batch["reward_chosen"].to(logps.device), batch["reward_rejected"].to(logps.device))
            loss = per_pair.mean()
            metrics = {k: v.detach().clone() for k, v in metrics.items()}
            metrics["preference_loss"] = loss.detach().clone()
            if cfg.sft_loss_weight:
                mask = batch["loss_mask"][:n].to(ce.device).float()
                nll = (ce[:n].float() * mask).sum() / mask.sum().clamp(min=1)
                loss = loss + cfg.sft_loss_weight * nll
                metrics["sft_loss"] = nll.detach().clone()
            metrics["loss"] = loss.detach().clone()
            return loss, metrics

        return fn

    def step(self, batches: list[dict]) -> Optional[list[dict]]:
        out = []
        for mb in batches:
            ref = self._reference_logps(mb)
            res = pipeline_train_step(self.policy, [mb], self.loss_fn(ref), with_labels=True,
                                      scale=1.0 / len(batches))
            if res is not None:
                out += res
        return out or None

    @torch.no_grad()
    def evaluate(self, batches: list[dict]) -> Optional[dict]:
        """Preference metrics on held-out pairs (no update); last stage only."""
        rows = []
        for mb in batches:
            ref = self._reference_logps(mb)
            res = pipeline_forward(self.policy, [mb],
                                   lambda ce, b: self.loss_fn(ref)(ce, b)[1], with_labels=True)
            if res is not None:
                rows.append(res[0])
        if not rows:
            return None
        return {k: float(sum(float(r[k]) for r in rows) / len(rows)) for k in rows[0]}
