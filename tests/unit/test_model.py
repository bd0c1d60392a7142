"""megatron-core GPTModel built from HF configs equals transformers (TP=1, in process)."""

import pytest
import torch

from minitron.checkpoint.hf_io import HFReader
from minitron.eval.logits import full_logits
from minitron.models.arch import load_arch
from minitron.models.builder import build_model
from minitron.models.weights import load_hf_weights

from helpers import VARIANTS, hf_logits

TOKENS = torch.randint(0, 300, (2, 24), generator=torch.Generator().manual_seed(0))


def mcore_model(path):
    arch = load_arch(path)
    model = build_model(arch, init_weights=False)
    load_hf_weights(model, HFReader(path), arch)
    return model, arch


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_logits_equal_transformers(variant, tiny_models, world):
    model, arch = mcore_model(tiny_models[variant])
    ours = full_logits(model, TOKENS, arch.vocab_size)
    ref = hf_logits(tiny_models[variant], TOKENS)
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max().item() <= 1e-4


def test_padding_rows_get_no_probability(tiny_models, world):
    model, arch = mcore_model(tiny_models["llama-untied"])
    assert arch.padded_vocab_size > arch.vocab_size
    with torch.no_grad():
        out = model(TOKENS, position_ids=None, attention_mask=None)
    assert torch.isinf(out[..., arch.vocab_size :]).all()
    assert torch.isfinite(out[..., : arch.vocab_size]).all()


def test_sdpa_core_attention_equals_megatron_reference(tiny_models, world):
    from minitron.models.attention import SDPAttention

    model, arch = mcore_model(tiny_models["llama-untied"])
    attn = model.decoder.layers[0].self_attention.core_attention
    assert isinstance(attn, SDPAttention)
    s, b = 10, 2
    q = torch.randn(s, b, arch.num_attention_heads, arch.head_dim)
    k, v = (torch.randn(s, b, arch.num_query_groups, arch.head_dim) for _ in range(2))
    fused = attn(q, k, v, None)
    ref = super(SDPAttention, attn).forward(q, k, v, None)
    torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-5)
