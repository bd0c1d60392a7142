"""Pure tensor functions: RoPE scaling, QKV layout, TP sharding."""

import pytest
import torch

from minitron.models.arch import ModelArch
from minitron.models.convert import qkv_from_hf, qkv_to_hf
from minitron.models.rope import inv_freq, llama3_scaled
from minitron.parallel.shard import split_dim, tp_shard, tp_unshard


def test_llama3_scaling_matches_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    scaling = dict(
        rope_type="llama3",
        factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_position_embeddings=8192,
    )
    cfg = LlamaConfig(
        hidden_size=4096,
        num_attention_heads=32,
        rope_theta=500000.0,
        rope_scaling=scaling,
        max_position_embeddings=131072,
    )
    ref, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    ours = llama3_scaled(inv_freq(128, 500000.0), 8.0, 1.0, 4.0, 8192)
    torch.testing.assert_close(ours, ref.float(), rtol=1e-6, atol=0)


def test_qkv_round_trip_and_group_layout():
    a = ModelArch("llama", 16, 32, 1, 4, 2, 4, 10, 16, 64, 1e4)
    q, k, v = (torch.randn(n, 16) for n in (16, 8, 8))
    qkv = qkv_from_hf(q, k, v, a)
    assert qkv.shape == (32, 16)
    # group 0: its two query heads, then its K head, then its V head
    torch.testing.assert_close(qkv[:8], q[:8])
    torch.testing.assert_close(qkv[8:12], k[:4])
    torch.testing.assert_close(qkv[12:16], v[:4])
    for x, y in zip(qkv_to_hf(qkv, a), (q, k, v)):
        assert torch.equal(x, y)


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("tp", [1, 2, 4])
def test_tp_shard_round_trip(tp, gated):
    full = torch.randn(16, 6)
    shards = [tp_shard(full, (16 // tp, 6), r, tp, gated) for r in range(tp)]
    assert torch.equal(tp_unshard(shards, 0 if tp > 1 else None, gated), full)
    if gated and tp == 2:  # rank 0 holds [gate_0; up_0]
        assert torch.equal(shards[0], torch.cat([full[0:4], full[8:12]]))


def test_split_dim():
    assert split_dim((8, 4), (8, 4), 2) is None
    assert split_dim((8, 4), (8, 2), 2) == 1
    with pytest.raises(ValueError):
        split_dim((8, 4), (3, 4), 2)
