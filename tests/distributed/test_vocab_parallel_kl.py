"""Vocab-parallel distillation losses (TP=2, TP=4 on gloo) equal the single-process ones."""

from pathlib import Path

import pytest
import torch

from helpers import torchrun
from minitron.distill.losses import distill_loss

pytestmark = pytest.mark.distributed


@pytest.mark.parametrize("world", [2, 4])
def test_vocab_parallel_equals_single_process(world, tmp_path):
    torchrun(world, [str(Path(__file__).with_name("kl_worker.py")), str(tmp_path / "r.pt")])
    r = torch.load(tmp_path / "r.pt")
    for kind, (value, grad) in r["out"].items():
        s = r["s"].clone().requires_grad_(True)
        extra = {"topk": 7} if kind == "topk_kl" else {"temperature": 2.0} if kind.endswith("T2") else {}
        want = distill_loss(s, r["t"], r["mask"], kind.replace("_T2", ""), chunk_size=1000, **extra)
        want.backward()
        assert abs(value.item() - want.item()) <= 1e-6, kind
        g = s.grad.clone()
        g[torch.isnan(g)] = 0
        assert (grad - g).abs().max().item() <= 1e-6, kind
