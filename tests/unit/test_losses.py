"""Distillation losses: values and gradients against autograd references, chunking, limits."""

import pytest
import torch

from minitron.distill.losses import distill_loss, token_divergence

G = torch.Generator().manual_seed(0)


def topk_indices(t, k):
    """The k largest per row, ties to the lowest index (a stable sort; torch.topk's CPU
    kernel picks other tied indices)."""
    return t.sort(dim=-1, descending=True, stable=True).indices[..., :k]


def ref(s, t, kind, T=1.0, beta=0.5, k=0):
    lp, lq = (s / T).log_softmax(-1), (t / T).log_softmax(-1)
    if kind == "topk_kl":
        idx = topk_indices(t, k)
        lq = torch.full_like(t, float("-inf")).scatter(-1, idx, (t / T).gather(-1, idx))
        lq = lq.log_softmax(-1)
    p, q = lp.exp(), lq.exp()
    if kind in ("forward_kl", "topk_kl"):
        d = torch.where(q > 0, q * (lq - lp), 0).sum(-1)
    elif kind == "reverse_kl":
        d = (p * (lp - lq)).sum(-1)
    else:
        m = beta * q + (1 - beta) * p
        d = beta * (q * (lq - m.log())).sum(-1) + (1 - beta) * (p * (lp - m.log())).sum(-1)
    return d * T * T


@pytest.mark.parametrize(
    "kind,T,k",
    [
        ("forward_kl", 1.0, 0),
        ("forward_kl", 2.0, 0),
        ("reverse_kl", 1.0, 0),
        ("reverse_kl", 1.5, 0),
        ("jsd", 1.0, 0),
        ("topk_kl", 1.0, 5),
    ],
)
def test_value_and_gradient_match_autograd(kind, T, k):
    s = torch.randn(7, 50, generator=G, dtype=torch.float64, requires_grad=True)
    t = torch.randn(7, 50, generator=G, dtype=torch.float64)
    s2 = s.detach().clone().requires_grad_(True)
    want = ref(s2, t, kind, T, k=k)
    torch.testing.assert_close(token_divergence(s, t, kind, T, topk=k), want)
    w = torch.rand(7, generator=G, dtype=torch.float64) + 0.1  # per-token weights
    ours = distill_loss(s, t, w, kind, T, topk=k, chunk_size=3)
    want = (want * w).sum() / w.sum()
    torch.testing.assert_close(ours, want)
    (gs,) = torch.autograd.grad(ours * 0.7, s)
    (gw,) = torch.autograd.grad(want * 0.7, s2)
    torch.testing.assert_close(gs, gw)


def test_topk_keeps_exactly_k_with_tied_teacher_logits():
    """Logits on a grid of halves tie at the k-th value: k are kept, ties to the lowest index
    (the old rule kept every logit >= the k-th: 3 to 40 per row here, loss 2.456 not 3.412)."""
    from minitron.distill.losses import _identity, _topk_target

    g = torch.Generator().manual_seed(0)
    s = torch.randn(8, 40, generator=g, dtype=torch.float64, requires_grad=True)
    t = (torch.randn(8, 40, generator=g, dtype=torch.float64) * 2).round() / 2
    t[0] = 1.0  # a row of ties only
    k = 3
    kept = torch.isfinite(_topk_target(t, k, _identity, _identity, None, None))
    assert kept.sum(-1).tolist() == [k] * 8
    idx = topk_indices(t, k)
    assert torch.equal(kept, torch.zeros_like(kept).scatter(-1, idx, True))
    top = t.topk(k, -1)  # the same values as torch.topk; the same indices where nothing ties
    torch.testing.assert_close(t.gather(-1, idx), top.values, rtol=0, atol=0)
    untied = (t >= top.values[:, -1:]).sum(-1) == k  # no choice among ties to make
    assert untied.sum() == 1  # row 2; the other 7 rows have more than k candidates
    assert torch.equal(idx[untied].sort(-1).values, top.indices[untied].sort(-1).values)
    loss = distill_loss(s, t, torch.ones(8), "topk_kl", topk=k, chunk_size=3)
    lq = torch.full_like(t, float("-inf")).scatter(-1, idx, t.gather(-1, idx)).log_softmax(-1)
    lp = s.log_softmax(-1)
    want = torch.where(lq.exp() > 0, lq.exp() * (lq - lp), 0).sum(-1).mean()
    torch.testing.assert_close(loss, want)
    assert loss.item() == pytest.approx(3.41180325, abs=1e-7)
    (g1,) = torch.autograd.grad(loss, s)
    (g2,) = torch.autograd.grad(want, s)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd", "topk_kl"])
def test_divergence_of_a_distribution_with_itself_is_zero(kind):
    s = torch.randn(5, 40, generator=G)
    d = token_divergence(s, s.clone(), kind, topk=40)
    assert d.abs().max().item() < 1e-6


def test_chunked_equals_unchunked_and_mask():
    s = torch.randn(3, 11, 64, generator=G, requires_grad=True)
    t = torch.randn(3, 11, 64, generator=G)
    mask = (torch.rand(3, 11, generator=G) > 0.3).float()
    a = distill_loss(s, t, mask, chunk_size=4)
    (ga,) = torch.autograd.grad(a, s)
    b = distill_loss(s, t, mask, chunk_size=10_000)
    (gb,) = torch.autograd.grad(b, s)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)
    assert ga[mask == 0].abs().max() == 0  # masked tokens get no gradient
    want = (
        ref(s.detach().reshape(-1, 64), t.reshape(-1, 64), "forward_kl") * mask.reshape(-1)
    ).sum() / mask.sum()
    torch.testing.assert_close(a.detach(), want.float())


def test_padding_columns_are_ignored():
    s, t = torch.randn(4, 30, generator=G), torch.randn(4, 30, generator=G)
    pad = lambda x, n: torch.cat([x, torch.full((4, n), float("-inf"))], -1)  # noqa: E731
    base = distill_loss(s, t, torch.ones(4))
    padded = distill_loss(pad(s, 6), pad(t, 6), torch.ones(4))
    assert torch.isfinite(padded) and torch.allclose(base, padded)
    nan = s.clone()
    nan[1, 3] = float("nan")  # a broken student is not hidden by the padding handling
    assert distill_loss(pad(nan, 6), pad(t, 6), torch.ones(4)).isnan()
    for kind in ("reverse_kl", "jsd"):
        assert torch.allclose(
            distill_loss(s, t, torch.ones(4), kind),
            distill_loss(pad(s, 6), pad(t, 6), torch.ones(4), kind),
        )


def test_student_and_teacher_padded_differently_at_tp1(world):
    """Same tokenizer, different embedding padding: the extra rows are cut, not an error."""
    from types import SimpleNamespace

    from minitron.config.train import DistillLossConfig
    from minitron.train.steps import Distiller

    def fake(padded):
        cfg = SimpleNamespace(sequence_parallel=False, hidden_size=8, no_sync_func=None)
        return SimpleNamespace(minitron_arch=SimpleNamespace(padded_vocab_size=padded), config=cfg)

    d = Distiller(fake(64), fake(96), DistillLossConfig(chunk_size=3), vocab_size=50)
    s = torch.randn(2, 5, 64, generator=G)
    t = torch.randn(2, 5, 96, generator=G)
    s[..., 50:], t[..., 50:] = float("-inf"), float("-inf")
    mask = torch.ones(2, 5)
    loss, count, metrics = d._loss((s, t), {"loss_mask": mask, "labels": torch.zeros(2, 5).long()})
    want = distill_loss(s[..., :50], t[..., :50], mask, chunk_size=3)  # the mean
    torch.testing.assert_close(loss, want * 10)  # training sums over the 10 tokens
    assert count == 10 and metrics["kd"] == loss


@pytest.mark.parametrize("chunk", [4, 10_000])
def test_unmasked_gradient_matches_autograd(chunk):
    """No masked token: the gradient is scaled in backward (one chunk: no copy at all)."""
    s = torch.randn(2, 9, 32, generator=G, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 9, 32, generator=G, dtype=torch.float64)
    ones = torch.ones(2, 9)
    (g,) = torch.autograd.grad(distill_loss(s, t, ones, temperature=2.0, chunk_size=chunk) * 3, s)
    s2 = s.detach().clone().requires_grad_(True)
    want = ref(s2.reshape(-1, 32), t.reshape(-1, 32), "forward_kl", 2.0).mean()
    (gw,) = torch.autograd.grad(want * 3, s2)
    torch.testing.assert_close(g, gw)


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd", "topk_kl"])
def test_workspace_reuse_gives_identical_results(kind):
    """Buffers kept between calls (CPU) change nothing, across calls and chunk sizes."""
    from minitron.distill.losses import Workspace

    ws = Workspace()
    for n, chunk in ((12, 5), (7, 100), (12, 5)):
        s = torch.randn(n, 40, generator=G, requires_grad=True)
        t = torch.randn(n, 40, generator=G)
        mask = (torch.rand(n, generator=G) > 0.2).float()
        a = distill_loss(s, t, mask, kind, topk=6, chunk_size=chunk, workspace=ws)
        (ga,) = torch.autograd.grad(a, s)
        b = distill_loss(s, t, mask, kind, topk=6, chunk_size=chunk)
        (gb,) = torch.autograd.grad(b, s)
        assert torch.equal(a, b) and torch.equal(ga, gb)


def jsd_mixture_form(s, t, beta):
    """Generalised JSD written independently of ``ref``: the mixture in log space by
    log-sum-exp and both KL terms by ``torch.nn.functional.kl_div`` (the form of TRL's GKD
    loss): beta KL(teacher || m) + (1 - beta) KL(student || m), m = beta teacher + (1 - beta)
    student. Asymmetric in beta, so a swapped convention changes the value."""
    import math

    import torch.nn.functional as F

    ls, lt = s.log_softmax(-1), t.log_softmax(-1)
    lm = torch.logsumexp(torch.stack([ls + math.log(1 - beta), lt + math.log(beta)]), 0)
    kl_t = F.kl_div(lm, lt, reduction="none", log_target=True).sum(-1)
    kl_s = F.kl_div(lm, ls, reduction="none", log_target=True).sum(-1)
    return beta * kl_t + (1 - beta) * kl_s


@pytest.mark.parametrize("beta", [0.1, 0.9])
def test_jsd_beta_convention_against_the_mixture_form(beta):
    s = torch.randn(6, 40, generator=G, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 40, generator=G, dtype=torch.float64) * 2
    s2 = s.detach().clone().requires_grad_(True)
    want = jsd_mixture_form(s2, t, beta)
    torch.testing.assert_close(token_divergence(s, t, "jsd", beta=beta), want)
    swapped = jsd_mixture_form(s2.detach(), t, 1 - beta)
    assert (want.detach() - swapped).abs().max() > 1e-3  # the test can tell the conventions apart
    ours = distill_loss(s, t, torch.ones(6), "jsd", beta=beta, chunk_size=4)
    (gs,) = torch.autograd.grad(ours, s)
    (gw,) = torch.autograd.grad(want.mean(), s2)
    torch.testing.assert_close(gs, gw)
