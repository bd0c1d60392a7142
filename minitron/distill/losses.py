"""Logit distillation losses: forward KL (the paper's), reverse KL, JSD and top-k KL.

Pure math on logits ``[n, v]`` (tokens x vocabulary) with analytic gradients. The
same code serves one rank and a vocabulary split over TP ranks: every reduction
over the vocabulary goes through ``reduce_max`` / ``reduce_sum`` callables, the
identity here and an all-reduce over the TP group in
``minitron.parallel.vocab.VocabParallelReducers`` (the only communication: per-token
scalars, and for top-k each rank's ``k`` largest teacher logits, never the vocabulary).

Notation: ``s`` student logits, ``t`` teacher logits, temperature ``T``,
``p = softmax(s / T)``, ``q`` the teacher's target distribution (``softmax(t / T)``,
or for top-k its ``k`` largest entries renormalised, exactly ``k``: ties at the k-th value
go to the lowest vocabulary indices). Per token:

- forward KL  ``KL(q || p) = sum q (log q - log p)``,      d/ds = (p - q) / T
- reverse KL  ``KL(p || q) = sum p (log p - log q)``,      d/ds = p (log p - log q - KL) / T
- JSD_beta    ``beta KL(q || m) + (1 - beta) KL(p || m)``, ``m = beta q + (1 - beta) p``,
  d/ds = p (g - sum p g) / T with ``g = (1 - beta) log(p / m)``

Losses are multiplied by ``T^2`` (so gradients keep their scale as T changes) and
averaged over unmasked tokens. Long inputs are processed ``chunk_size`` tokens at a
time, so fp32 ``[n, v]`` intermediates never exist for the whole micro-batch; the
gradient is written into one buffer of the logits' own shape and dtype during the
forward pass (``benchmarks/bench_kd_memory.py``).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from minitron.choices import DISTILL_LOSSES

KINDS = DISTILL_LOSSES
Reduce = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def log_softmax(
    x: torch.Tensor,
    reduce_max: Reduce = _identity,
    reduce_sum: Reduce = _identity,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``log softmax`` over the (possibly split) last dimension; -inf entries stay -inf.
    Into ``out`` when given, else a new tensor (``x`` is not modified)."""
    if reduce_max is _identity and reduce_sum is _identity:
        return torch.log_softmax(x, -1, out=out)  # one rank: the fused kernel
    peak = reduce_max(x.amax(-1, keepdim=True))
    shifted = torch.sub(x, peak, out=out)
    z = reduce_sum(shifted.exp().sum(-1, keepdim=True))
    return shifted.sub_(z.log())


def _topk_target(
    t: torch.Tensor,
    k: int,
    reduce_max: Reduce,
    reduce_sum: Reduce,
    gather_topk: Optional[Reduce],
    sum_lower_ranks: Optional[Reduce],
) -> torch.Tensor:
    """log q ``[n, v/tp]`` for the teacher's k largest logits renormalised (-inf elsewhere).

    Exactly ``k`` per token, whatever the TP split: every logit above the k-th largest
    value, then the logits equal to it in global vocabulary order (lowest index first)
    until ``k`` are kept; the set ``t.sort(dim=-1, descending=True, stable=True).indices[..., :k]``
    picks on the whole row. (``torch.topk`` leaves ties to its kernel: on CPU it does not
    take the lowest indices.) Communication: the per-rank top-k values (``gather_topk``) and
    a per-token count of tied logits on the lower vocabulary shards (``sum_lower_ranks``)."""
    if gather_topk is not None and sum_lower_ranks is None:
        raise ValueError("vocab-parallel top-k needs sum_lower_ranks as well as gather_topk")
    local = t.topk(min(k, t.shape[-1]), dim=-1).values  # [n, k]
    candidates = gather_topk(local) if gather_topk is not None else local  # [n, k * tp]
    threshold = candidates.topk(k, dim=-1).values[..., -1:]  # [n, 1]: the k-th largest
    # fewer than k logits exceed the threshold, so each rank's are all among its candidates
    room = k - (candidates > threshold).sum(-1, keepdim=True)  # [n, 1] tied logits to keep
    ties = t == threshold
    n_ties = ties.sum(-1, keepdim=True)
    if sum_lower_ranks is not None:
        room = room - sum_lower_ranks(n_ties)  # the lower shards' ties come first
    room = room.clamp(min=0)
    over = (n_ties > room).squeeze(-1)  # rows where some of this shard's ties are dropped
    if bool(over.any()):
        rows = ties[over]
        ties[over] = rows & (rows.cumsum(-1, dtype=torch.int32) <= room[over])
    keep = ties.logical_or_(t > threshold)
    return log_softmax(t.masked_fill(keep.logical_not_(), float("-inf")), reduce_max, reduce_sum)


def _scaled(x: torch.Tensor, work: torch.dtype, T: float) -> torch.Tensor:
    x = x.to(work)
    return x if T == 1.0 else x / T


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a * b).sum(-1)`` for ``[n, v]`` as a batched matrix-vector product: no temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def _has_neg_inf(x: torch.Tensor) -> bool:
    """Padding columns (-inf) sit at the end of the vocabulary: checking the last column
    is enough to know whether the 0 * -inf guard is needed."""
    return bool(torch.isneginf(x[..., -1]).any())


@torch.no_grad()
def divergence_and_grad(
    s: torch.Tensor,
    t: torch.Tensor,
    kind: str,
    T: float,
    beta: float,
    topk: int,
    reduce_max: Reduce = _identity,
    reduce_sum: Reduce = _identity,
    gather_topk=None,
    sum_lower_ranks=None,
    out: Optional[torch.Tensor] = None,
    workspace: Optional[Workspace] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token divergence ``[n]`` and its gradient d/ds ``[n, v]`` (fp32, or fp64 for fp64
    inputs; neither scaled by ``T^2``). Pure; the work is in place on the tensors it makes
    (for forward KL two ``[n, v]`` buffers besides the gradient, which is written into
    ``out`` when given: a buffer of the work dtype)."""
    work = torch.promote_types(s.dtype, torch.float32)
    log_p = log_softmax(_scaled(s, work, T), reduce_max, reduce_sum, out=out)
    if kind == "topk_kl":
        log_q = _topk_target(
            _scaled(t, work, T), topk, reduce_max, reduce_sum, gather_topk, sum_lower_ranks
        )
    else:
        log_q = log_softmax(
            _scaled(t, work, T),
            reduce_max,
            reduce_sum,
            out=workspace.get("log_q", t.shape, work, t.device) if workspace is not None else None,
        )
    q = torch.exp(
        log_q, out=workspace.get("q", t.shape, work, t.device) if workspace is not None else None
    )
    if kind in ("forward_kl", "topk_kl"):
        # sum q (log q - log p), with 0 log 0 = 0: where -inf can occur (top-k, padding) it is
        # clamped to the lowest finite value, so q = 0 entries add exactly 0.
        if kind == "topk_kl" or _has_neg_inf(t) or _has_neg_inf(s):
            low = torch.finfo(work).min
            log_p.clamp_(min=low)
            log_q.clamp_(min=low)
        loss = reduce_sum(_row_dot(q, log_q.sub_(log_p)))
        grad = log_p.exp_().sub_(q)
    else:
        p = log_p.exp()
        if kind == "reverse_kl":
            diff = torch.where(p > 0, log_p - log_q, torch.zeros_like(p))
            loss = reduce_sum((p * diff).sum(-1))
            grad = p * (diff - loss.unsqueeze(-1))
        else:  # jsd
            m = beta * q + (1 - beta) * p
            log_m = m.log()
            kl_qm = torch.where(q > 0, q * (log_q - log_m), torch.zeros_like(q))
            kl_pm = torch.where(p > 0, p * (log_p - log_m), torch.zeros_like(p))
            loss = reduce_sum(beta * kl_qm.sum(-1) + (1 - beta) * kl_pm.sum(-1))
            g = torch.where(p > 0, (1 - beta) * (log_p - log_m), torch.zeros_like(p))
            grad = p * (g - reduce_sum((p * g).sum(-1, keepdim=True)))
    return loss, grad if T == 1.0 else grad.div_(T)


class Workspace:
    """Reusable ``[chunk, vocab]`` buffers of the loss, kept between calls. For CPU: there
    every fresh tensor over 32 MB is a new mapping from the OS and its first touch costs
    page faults (an out-of-place ``exp`` of 1024 x 49,152 fp32 takes twice as long as the
    same in place). On GPU the caching allocator already reuses memory: pass none."""

    def __init__(self) -> None:
        self._bufs: dict[str, torch.Tensor] = {}
        self._tag = ""

    def own(self, tag: str) -> Workspace:
        """A view whose ``grad`` buffer is its own (a student's gradient lives until the step's
        backward, beside the other students'); every other buffer is scratch of one loss
        call and stays shared."""
        view = Workspace()
        view._bufs, view._tag = self._bufs, tag
        return view

    def get(self, name: str, shape: torch.Size, dtype: torch.dtype, device) -> torch.Tensor:
        if name == "grad":
            name = f"grad:{self._tag}"
        rows, rest = shape[0], tuple(shape[1:])
        b = self._bufs.get(name)
        if (
            b is None
            or b.shape[0] < rows
            or tuple(b.shape[1:]) != rest
            or b.dtype != dtype
            or b.device != torch.device(device)
        ):
            b = self._bufs[name] = torch.empty(shape, dtype=dtype, device=device)
        return b[:rows]


class _ChunkedDivergence(torch.autograd.Function):
    """Masked mean (or sum) divergence of ``[n, v]`` logits, ``chunk`` tokens at a time. The gradient
    is computed in the forward pass into one buffer of the logits' shape and dtype (the
    memory d/ds needs anyway) and scaled in place by backward: no ``[n, v]`` fp32 work
    outlives its chunk. Backward runs once (a second one fails autograd's version check)."""

    @staticmethod
    def forward(
        ctx,
        s,
        t,
        mask,
        chunk,
        kind,
        T,
        beta,
        topk,
        reduce_max,
        reduce_sum,
        gather_topk,
        sum_lower_ranks,
        workspace,
        mean,
    ):
        work = torch.promote_types(s.dtype, torch.float32)
        mask = mask.to(work)
        denom = mask.sum().clamp(min=1) if mean else 1.0
        weights = mask * (T * T) / denom  # d loss / d per-token divergence
        uniform = bool((mask == 1).all())  # no masked token: scale the gradient in backward
        n = s.shape[0]
        # the gradient buffer lives until backward; a workspace keeps it between steps, so no
        # step pays the first-touch page faults of a fresh [n, v] buffer again
        grad = (
            workspace.get("grad", s.shape, s.dtype, s.device)
            if workspace is not None
            else torch.empty_like(s)
        )
        direct = s.dtype == work and kind in ("forward_kl", "topk_kl")  # log p, then d/ds, in place
        total = s.new_zeros((), dtype=work)
        for i in range(0, n, chunk):
            d, g = divergence_and_grad(
                s[i : i + chunk],
                t[i : i + chunk],
                kind,
                T,
                beta,
                topk,
                reduce_max,
                reduce_sum,
                gather_topk,
                sum_lower_ranks,
                out=grad[i : i + chunk] if direct else None,
                workspace=workspace,
            )
            w = weights[i : i + chunk]
            total += (d * w).sum()
            if not uniform:
                g.mul_(w.unsqueeze(-1))
            if not direct:
                grad[i : i + chunk] = g
        ctx.save_for_backward(grad)
        ctx.scale = float(weights[0]) if uniform else 1.0
        return total

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_loss.to(grad.dtype) * ctx.scale), *([None] * 13)


def token_divergence(
    s: torch.Tensor,
    t: torch.Tensor,
    kind: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    topk: int = 0,
    reduce_max: Reduce = _identity,
    reduce_sum: Reduce = _identity,
    gather_topk=None,
    sum_lower_ranks=None,
) -> torch.Tensor:
    """Per-token divergence ``[n]`` (times ``T^2``, no gradient) between student ``s`` and
    teacher ``t`` logits ``[n, v]`` (or this rank's ``[n, v/tp]`` with all-reduce reducers).
    Padding columns (at the end of the vocabulary) must already be -inf in both
    (``parallel.vocab.mask_padded_vocab``)."""
    _check(kind, topk)
    d, _ = divergence_and_grad(
        s.detach(),
        t.detach(),
        kind,
        float(temperature),
        float(beta),
        int(topk),
        reduce_max,
        reduce_sum,
        gather_topk,
        sum_lower_ranks,
    )
    return d * temperature**2


def _check(kind: str, topk: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"divergence {kind!r}: valid are {KINDS}")
    if kind == "topk_kl" and topk < 1:
        raise ValueError("topk_kl needs topk >= 1")


def distill_loss(
    s: torch.Tensor,
    t: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    topk: int = 0,
    chunk_size: int = 4096,
    reduce_max: Reduce = _identity,
    reduce_sum: Reduce = _identity,
    gather_topk=None,
    sum_lower_ranks=None,
    workspace: Optional[Workspace] = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean (``reduction="sum"``: sum) divergence (times ``T^2``) over unmasked tokens of
    logits ``[..., v]``, ``chunk_size`` tokens at a time; differentiable in ``s`` (backward
    once). Training uses the sum: the step divides by its global token count."""
    _check(kind, topk)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction {reduction!r}: valid are mean, sum")
    s2, t2 = s.reshape(-1, s.shape[-1]), t.detach().reshape(-1, t.shape[-1])
    return _ChunkedDivergence.apply(
        s2,
        t2,
        mask.reshape(-1).to(s.device),
        int(chunk_size),
        kind,
        float(temperature),
        float(beta),
        int(topk),
        reduce_max,
        reduce_sum,
        gather_topk,
        sum_lower_ranks,
        workspace,
        reduction == "mean",
    )
