"""Forward/backward of the alignment losses over one step's micro-batches, at any TP/PP.

SFT: the masked NLL of response tokens (megatron-core's vocab-parallel cross entropy
from labels; packed rows carry their block-diagonal attention mask), summed over tokens.
Preferences: each micro-batch holds n pairs as 2n rows (chosen, then rejected); the
policy (trained) and the frozen reference run coupled in one schedule, and on the last
stage the preference loss is summed over the pairs (the step divides by its global
number of pairs).
"""

from __future__ import annotations

from typing import Optional

import torch

from minitron.align.losses import preference_loss, sft_nll
from minitron.parallel.coupled import Coupled
from minitron.parallel.schedule import model_device, pipeline_forward, pipeline_train_step
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
        self.pair = Coupled(policy, reference)

    def _reference_logps(self, mb: dict) -> Optional[torch.Tensor]:
        avg = self.cfg.average_log_probs
        res = pipeline_forward(
            self.reference,
            [mb],
            lambda ce, b: sequence_logps(ce, b["loss_mask"], avg).detach(),
            with_labels=True,
        )
        return None if res is None else res[0]

    def pair_loss(self, ce: torch.Tensor, ref: torch.Tensor, batch: dict):
        """(loss summed over the pairs, number of pairs, metric sums) from the policy's
        per-token cross entropy ``ce [2n, s]`` and the reference's sequence log-probs."""
        cfg = self.cfg
        logps = sequence_logps(ce, batch["loss_mask"], cfg.average_log_probs)
        n = logps.shape[0] // 2
        per_pair, metrics = preference_loss(
            cfg.loss_kind,
            logps[:n],
            logps[n:],
            ref[:n].to(logps.device),
            ref[n:].to(logps.device),
            cfg.beta,
            cfg.eta,
            cfg.gt_reward_scale,
            batch["reward_chosen"].to(logps.device),
            batch["reward_rejected"].to(logps.device),
        )
        loss = per_pair.sum()
        metrics = {k: v.detach() * n for k, v in metrics.items()}  # means -> sums over pairs
        metrics["preference_loss"] = loss.detach()
        if cfg.sft_loss_weight:
            # a sum over the pairs too (sft_reduction says of what), so it weighs like the
            # preference loss once the step divides by its global number of pairs
            nll = sft_nll(ce[:n], batch["loss_mask"][:n], cfg.sft_reduction)
            loss = loss + cfg.sft_loss_weight * nll
            metrics["sft_loss"] = nll.detach()
        metrics["loss"] = loss.detach()
        return loss, n, metrics

    def step(self, batches: list[dict]) -> Optional[list[dict]]:
        avg = self.cfg.average_log_probs
        device = model_device(self.pair)

        def forward(m, b):
            labels = b["labels"].to(device)
            return m(
                b["tokens"].to(device),
                None if b.get("attention_mask") is None else b["attention_mask"].to(device),
                labels=labels,
                partner_labels=labels,
            )

        def loss_fn(outputs, b):
            ce, ref_ce = outputs
            ref = sequence_logps(ref_ce, b["loss_mask"], avg).detach()
            return self.pair_loss(ce, ref, b)

        return pipeline_train_step(self.pair, batches, loss_fn, forward=forward)

    @torch.no_grad()
    def evaluate(self, batches: list[dict]) -> Optional[dict]:
        """Preference metrics on held-out pairs (no update); last stage only."""
        rows = []
        for mb in batches:
            ref = self._reference_logps(mb)

            def collect(ce, b, ref=ref):
                return self.pair_loss(ce, ref, b)

            res = pipeline_forward(self.policy, [mb], collect, with_labels=True)
            if res is not None:
                rows.append(res[0])
        if not rows:
            return None
        pairs = sum(r[1] for r in rows)
        return {k: float(sum(float(r[2][k]) for r in rows)) / pairs for k in rows[0][2]}
