"""Logit distillation losses: forward KL (the paper's), reverse KL, JSD and top-k KL.

Pure math on logits ``[n, v]`` (tokens x vocabulary) with analytic gradients. The
same code serves one rank and a vocabulary split over TP ranks: every reduction
over the vocabulary goes through ``reduce_max`` / ``reduce_sum`` callables, the
identity here and an all-reduce over the TP group in
``minitron.parallel.vocab.VocabParallelReducer`` (the only communication: per-token
scalars, never the vocabulary).

Notation: ``s`` student logits, ``t`` teacher logits, temperature ``T``,
``p = softmax(s / T)``, ``q`` the teacher's target distribution (``softmax(t / T)``,
or for top-k its ``k`` largest entries renormalised). Per token:

- forward KL  ``KL(q || p) = sum q (log q - log p)``,      d/ds = (p - q) / T
- reverse KL  ``KL(p || q) = sum p (log p - log q)``,      d/ds = p (log p - log q - KL) / T
- JSD_beta    ``beta KL(q || m) + (1 - beta) KL(p || m)``, ``m = beta q + (1 - beta) p``,
  d/ds = p (g - sum p g) / T with ``g = (1 - beta) log(p / m)``

Losses are multiplied by ``T^2`` (so gradients keep their scale as T changes) and
averaged over unmasked tokens. Long inputs are processed ``chunk_size`` tokens at a
time, so fp32 ``[n, v]`` intermediates never exist for the whole micro-batch.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

KINDS = ("forward_kl", "reverse_kl", "jsd", "topk_kl")
Reduce = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def log_softmax(x: torch.Tensor, reduce_max: Reduce, reduce_sum: Reduce) -> torch.Tensor:
    """``log softmax`` over the (possibly split) last dimension; -inf entries stay -inf."""
    peak = reduce_max(x.max(-1, keepdim=True).values)
    z = reduce_sum((x - peak).exp().sum(-1, keepdim=True))
    return x - peak - z.log()


def _topk_target(t: torch.Tensor, k: int, reduce_max: Reduce, reduce_sum: Reduce,
                 gather_topk: Optional[Callable[[torch.Tensor], torch.Tensor]]) -> torch.Tensor:
    """log q for the teacher's k largest logits renormalised (-inf elsewhere)."""
    local = t.topk(min(k, t.shape[-1]), dim=-1).values
    candidates = gather_topk(local) if gather_topk is not None else local
    threshold = candidates.topk(k, dim=-1).values[..., -1:]
    kept = t.masked_fill(t < threshold, float("-inf"))
    return log_softmax(kept, reduce_max, reduce_sum)


class _Divergence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s, t, kind, temperature, beta, topk, reduce_max, reduce_sum, gather_topk):
        with torch.no_grad():
            T = temperature
            work = torch.promote_types(s.dtype, torch.float32)  # fp32, or fp64 if given fp64
            log_p = log_softmax(s.to(work) / T, reduce_max, reduce_sum)
            if kind == "topk_kl":
                log_q = _topk_target(t.to(work) / T, topk, reduce_max, reduce_sum, gather_topk)
            else:
                log_q = log_softmax(t.to(work) / T, reduce_max, reduce_sum)
            p, q = log_p.exp(), log_q.exp()
            if kind in ("forward_kl", "topk_kl"):
                terms = torch.where(q > 0, q * (log_q - log_p), torch.zeros_like(q))
                loss = reduce_sum(terms.sum(-1))
                grad = (p - q) / T
            elif kind == "reverse_kl":
                diff = torch.where(p > 0, log_p - log_q, torch.zeros_like(p))
                loss = reduce_sum((p * diff).sum(-1))
                grad = p * (diff - loss.unsqueeze(-1)) / T
            else:  # jsd
                m = beta * q + (1 - beta) * p
                log_m = m.log()
                kl_qm = torch.where(q > 0, q * (log_q - log_m), torch.zeros_like(q))
                kl_pm = torch.where(p > 0, p * (log_p - log_m), torch.zeros_like(p))
                loss = reduce_sum(beta * kl_qm.sum(-1) + (1 - beta) * kl_pm.sum(-1))
                g = torch.where(p > 0, (1 - beta) * (log_p - log_m), torch.zeros_like(p))
                mean_g = reduce_sum((p * g).sum(-1, keepdim=True))
                grad = p * (g - mean_g) / T
        ctx.save_for_backward(grad.to(s.dtype))
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.unsqueeze(-1).to(grad.dtype), *([None] * 8)


def token_divergence(s: torch.Tensor, t: torch.Tensor, kind: str = "forward_kl",
                     temperature: float = 1.0, beta: float = 0.5, topk: int = 0,
                     reduce_max: Reduce = _identity, reduce_sum: Reduce = _identity,
                     gather_topk=None) -> torch.Tensor:
    """Per-token divergence ``[n]`` (times ``T^2``) between student ``s`` and teacher ``t``
    logits ``[n, v]`` (or this rank's ``[n, v/tp]`` with all-reduce reducers).
    Padding columns must already be -inf in both (``parallel.vocab.mask_padded_vocab``)."""
    if kind not in KINDS:
        raise ValueError(f"divergence {kind!r}: valid are {KINDS}")
    if kind == "topk_kl" and topk < 1:
        raise ValueError("topk_kl needs topk >= 1")
    out = _Divergence.apply(s, t.detach(), kind, float(temperature), float(beta), int(topk),
                            reduce_max, reduce_sum, gather_topk)
    return out * temperature ** 2


def distill_loss(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, kind: str = "forward_kl",
                 temperature: float = 1.0, beta: float = 0.5, topk: int = 0,
                 chunk_size: int = 4096, reduce_max: Reduce = _identity,
                 reduce_sum: Reduce = _identity, gather_topk=None) -> torch.Tensor:
    """Mean divergence over unmasked tokens of logits ``[..., v]``, ``chunk_size`` tokens at a
    time (each chunk's fp32 work is freed before the next; backward recomputes nothing: the
    per-chunk gradient is kept in the logits' own dtype)."""
    s2, t2 = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1])
    work = torch.promote_types(s.dtype, torch.float32)
    m = mask.reshape(-1).to(work)
    total = s2.new_zeros((), dtype=work)
    for i in range(0, s2.shape[0], chunk_size):
        d = token_divergence(s2[i:i + chunk_size], t2[i:i + chunk_size], kind, temperature, beta,
                             topk, reduce_max, reduce_sum, gather_topk)
        total = total + (d.to(work) * m[i:i + chunk_size]).sum()
    return total / m.sum().clamp(min=1)
