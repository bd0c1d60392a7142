"""Vocab-parallel distillation losses (TP=2, TP=4 on gloo) equal the single-process ones."""

from pathlib import Path

import pytest
import torch

from minitron.distill.losses import distill_loss

from helpers import torchrun

pytestmark = pytest.mark.distributed


def topk_reference(s, t, mask, k):
    """Masked mean top-k KL from a stable sort (ties to the lowest vocabulary index) and a
    scatter: independent of the loss code."""
    idx = t.sort(dim=-1, descending=True, stable=True).indices[..., :k]
    lq = torch.full_like(t, float("-inf")).scatter(-1, idx, t.gather(-1, idx)).log_softmax(-1)
    q, lp = lq.exp(), s.log_softmax(-1)
    d = torch.where(q > 0, q * (lq - lp), 0).sum(-1)
    return (d * mask).sum() / mask.sum()


@pytest.mark.parametrize("world", [2, 4])
def test_vocab_parallel_equals_single_process(world, tmp_path):
    torchrun(world, [str(Path(__file__).with_name("kl_worker.py")), str(tmp_path / "r.pt")])
    r = torch.load(tmp_path / "r.pt")
    assert (r["world"], r["slice"] * world) == (world, r["s"].shape[-1])
    assert len(r["out"]) == 6
    extras = {
        "topk_kl": {"topk": 7},
        "topk_kl_tied": {"topk": 3},
        "forward_kl_T2": {"temperature": 2.0},
    }
    for kind, (value, grad) in r["out"].items():
        s = r["s"].clone().requires_grad_(True)
        t = r["t_tied"] if kind.endswith("_tied") else r["t"]
        name = kind.replace("_T2", "").replace("_tied", "")
        want = distill_loss(s, t, r["mask"], name, chunk_size=1000, **extras.get(kind, {}))
        want.backward()
        assert abs(value.item() - want.item()) <= 1e-6, kind
        g = s.grad.clone()
        g[torch.isnan(g)] = 0
        assert (grad - g).abs().max().item() <= 1e-6, kind
        if name == "topk_kl":  # exactly k per token, also where the teacher ties
            k = extras[kind]["topk"]
            ref = topk_reference(r["s"], t, r["mask"], k)
            assert abs(value.item() - ref.item()) <= 1e-9, (kind, value.item(), ref.item())
