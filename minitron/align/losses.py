"""Preference losses of the DPO family (DPO, IPO, RPO), and their optional SFT term:
pure math on sequence log-probs (and, for the SFT term, per-token NLL).

Inputs per pair: the policy's and the frozen reference's log-probabilities of the
chosen and rejected responses (summed, or averaged, over response tokens), and
for RPO the ground-truth rewards of both responses. Notation (docs/alignment.md
derives each formula):

    h      = (log pi(y_c) - log ref(y_c)) - (log pi(y_l) - log ref(y_l))   log-ratio margin
    r_hat  = beta * h                                                      implicit reward gap
    r_star = eta * gt_reward_scale * (reward_c - reward_l)                 target reward gap

    dpo          -log sigmoid(r_hat)
    ipo          (h - 1 / (2 beta))^2
    rpo_sq       (r_hat - r_star)^2
    rpo_bwd_kl   KL(Bern(sigmoid(r_star)) || Bern(sigmoid(r_hat)))   (NeMo-Aligner's name)
    rpo_fwd_kl   KL(Bern(sigmoid(r_hat)) || Bern(sigmoid(r_star)))

With policy == reference (h = 0): dpo = log 2, ipo = 1 / (4 beta^2),
rpo_sq = r_star^2, rpo_bwd_kl = log 2 - H(sigmoid(r_star)), where H is the
binary entropy, rpo_fwd_kl = -log 2 - (log sigmoid(r_star) + log sigmoid(-r_star)) / 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("dpo", "ipo", "rpo_sq", "rpo_fwd_kl", "rpo_bwd_kl")
SFT_REDUCTIONS = ("sequence_mean", "sequence_sum", "token_mean")


def _bernoulli_kl(
    log_p: torch.Tensor, log_q: torch.Tensor, log_1mp: torch.Tensor, log_1mq: torch.Tensor
) -> torch.Tensor:
    """KL(Bern(p) || Bern(q)) from log-probabilities (stable for saturated sigmoids)."""
    return log_p.exp() * (log_p - log_q) + log_1mp.exp() * (log_1mp - log_1mq)


def preference_loss(
    kind: str,
    pi_c: torch.Tensor,
    pi_l: torch.Tensor,
    ref_c: torch.Tensor,
    ref_l: torch.Tensor,
    beta: float,
    eta: float = 1.0,
    gt_reward_scale: float = 1.0,
    reward_c: torch.Tensor | None = None,
    reward_l: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict]:
    """Per-pair loss ``[n]`` and detached metrics (reward accuracy, margins, KL estimate)."""
    if kind not in LOSSES:
        raise ValueError(f"preference loss {kind!r}: valid are {LOSSES}")
    h = (pi_c - ref_c) - (pi_l - ref_l)
    r_hat = beta * h
    if kind == "dpo":
        loss = -F.logsigmoid(r_hat)
    elif kind == "ipo":
        loss = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        if reward_c is None or reward_l is None:
            raise ValueError(f"{kind} needs chosen and rejected rewards")
        r_star = (eta * gt_reward_scale * (reward_c - reward_l)).to(r_hat.dtype)
        if kind == "rpo_sq":
            loss = (r_hat - r_star) ** 2
        elif kind == "rpo_bwd_kl":
            loss = _bernoulli_kl(
                F.logsigmoid(r_star),
                F.logsigmoid(r_hat),
                F.logsigmoid(-r_star),
                F.logsigmoid(-r_hat),
            )
        else:
            loss = _bernoulli_kl(
                F.logsigmoid(r_hat),
                F.logsigmoid(r_star),
                F.logsigmoid(-r_hat),
                F.logsigmoid(-r_star),
            )
    with torch.no_grad():
        reward_chosen, reward_rejected = beta * (pi_c - ref_c), beta * (pi_l - ref_l)
        metrics = {
            "reward_accuracy": (r_hat > 0).float().mean(),
            # the policy's own ranking, meaningful before training too
            "logp_accuracy": (pi_c > pi_l).float().mean(),
            "reward_margin": r_hat.mean(),
            "reward_chosen": reward_chosen.mean(),
            "reward_rejected": reward_rejected.mean(),
            # E_chosen[log pi - log ref]: a sample estimate of KL(pi || ref) on the data
            "kl_to_reference": ((pi_c - ref_c) + (pi_l - ref_l)).mean() / 2,
        }
    return loss, metrics


def sft_nll(ce: torch.Tensor, mask: torch.Tensor, reduction: str) -> torch.Tensor:
    """The SFT term of a micro-batch of ``n`` pairs, as a *sum over its pairs* (the step
    divides by its global number of pairs, as for the preference loss).

    ``ce``: the chosen responses' per-token NLL ``[n, s]``; ``mask``: their loss mask
    ``[n, s]``. With ``m_i = sum_t mask_it`` and ``l_i = sum_t mask_it ce_it``:

        sequence_mean  sum_i l_i / m_i             per pair the mean NLL of its response
                                                   (NeMo-Aligner with sft_average_log_probs)
        sequence_sum   sum_i l_i                   per pair the response's summed NLL
                                                   (NeMo-Aligner's default)
        token_mean     n * sum_i l_i / sum_i m_i   the mean over the micro-batch's chosen
                                                   tokens, weighted by its n pairs (TRL)
    """
    if reduction not in SFT_REDUCTIONS:
        raise ValueError(f"sft reduction {reduction!r}: valid are {SFT_REDUCTIONS}")
    mask = mask.to(ce.device).float()
    per_pair = (ce.float() * mask).sum(1)  # [n]
    if reduction == "sequence_sum":
        return per_pair.sum()
    if reduction == "sequence_mean":
        return (per_pair / mask.sum(1).clamp(min=1)).sum()
    return per_pair.sum() / mask.sum().clamp(min=1) * ce.shape[0]
