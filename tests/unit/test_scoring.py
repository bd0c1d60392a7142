"""Batched scoring equals one-at-a-time scoring and transformers; layer skipping is exact."""

import pytest
import torch

from minitron.checkpoint.hf_io import HFReader
from minitron.eval.layer_skip import skip_layers
from minitron.eval.logits import full_logits
from minitron.eval.scoring import Request, encode_pair, score_requests
from minitron.models.arch import load_arch
from minitron.models.builder import build_model
from minitron.models.weights import load_hf_weights
from minitron.parallel.vocab import target_logprobs

G = torch.Generator().manual_seed(3)
REQUESTS = [
    Request(
        tuple(torch.randint(1, 300, (n,), generator=G).tolist()),
        tuple(torch.randint(1, 300, (m,), generator=G).tolist()),
    )
    for n, m in [(5, 3), (17, 1), (2, 9), (30, 4), (1, 1), (11, 6)]
]


@pytest.fixture(scope="module")
def tiny(tiny_models, world):
    path = tiny_models["llama-untied"]
    arch = load_arch(path)
    model = build_model(arch, init_weights=False)
    load_hf_weights(model, HFReader(path), arch)
    return model, arch, path


def reference_ll(path, req):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = torch.tensor([req.context + req.continuation])
    with torch.no_grad():
        logp = hf(ids).logits.log_softmax(-1)[0]
    n = len(req.continuation)
    pos = torch.arange(ids.shape[1] - 1 - n, ids.shape[1] - 1)
    return logp[pos, ids[0, pos + 1]].sum().item()


def test_batched_equals_single_and_transformers(tiny):
    model, arch, path = tiny
    batched = score_requests(model, REQUESTS, arch.vocab_size, batch_size=4)
    for req, (ll, _) in zip(REQUESTS, batched):
        alone = score_requests(model, [req], arch.vocab_size, batch_size=1)[0][0]
        assert abs(ll - alone) < 1e-4
        assert abs(ll - reference_ll(path, req)) < 1e-4


def test_greedy_path_equals_loss_path(tiny):
    model, arch, _ = tiny
    a = score_requests(model, REQUESTS, arch.vocab_size, batch_size=3)
    b = score_requests(model, REQUESTS, arch.vocab_size, batch_size=3, greedy=True)
    for (la, _), (lb, _) in zip(a, b):
        assert abs(la - lb) < 1e-4
    # a continuation made of the model's own argmax tokens is greedy
    ctx = REQUESTS[3].context
    ids = list(ctx)
    for _ in range(3):
        ids.append(int(full_logits(model, torch.tensor([ids]), arch.vocab_size)[0, -1].argmax()))
    greedy = Request(ctx, tuple(ids[len(ctx) :]))
    assert score_requests(model, [greedy], arch.vocab_size, greedy=True)[0][1] is True


def test_target_logprobs_single_rank_equals_log_softmax():
    logits = torch.randn(2, 5, 16)
    logits[..., 12:] = 7.0  # padding rows, must be ignored
    targets = torch.randint(0, 12, (2, 5))
    lp, is_max = target_logprobs(logits, targets, 12, None)
    ref = logits[..., :12].log_softmax(-1).gather(-1, targets[..., None])[..., 0]
    torch.testing.assert_close(lp, ref)
    assert torch.equal(is_max, logits[..., :12].argmax(-1) == targets)


def test_truncation_keeps_the_continuation(tiny):
    model, arch, _ = tiny
    long = Request(tuple(range(1, 60)), (5, 6, 7))
    short = Request(tuple(range(60 - 20, 60)), (5, 6, 7))  # what survives max_length=22
    a = score_requests(model, [long], arch.vocab_size, max_length=22)[0][0]
    b = score_requests(model, [short], arch.vocab_size)[0][0]
    assert abs(a - b) < 1e-5
    with pytest.raises(ValueError, match="exceeds max_length"):
        score_requests(model, [Request((1,), tuple(range(1, 30)))], arch.vocab_size, max_length=8)


def test_encode_pair_moves_trailing_space(tiny_tokenizer):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    a = encode_pair(tok, "The fox ", "jumped", 0)
    b = encode_pair(tok, "The fox", " jumped", 0)
    assert a == b and b.continuation == tuple(tok(" jumped", add_special_tokens=False)["input_ids"])
    assert encode_pair(tok, "", "hello", 7).context == (7,)


def test_skip_layers_equals_a_model_built_without_them(tiny, tiny_models):
    model, arch, path = tiny
    drop, kept = {1, 2}, [0, 3]
    tokens = torch.randint(0, 300, (2, 12), generator=G)
    small = build_model(arch.replace(num_layers=2), init_weights=False)
    reader = HFReader(path)

    def renumbered(name):  # model.layers.j of the small model is layer kept[j] of the big one
        if name.startswith("model.layers."):
            j, rest = name[len("model.layers.") :].split(".", 1)
            name = f"model.layers.{kept[int(j)]}.{rest}"
        return reader(name)

    load_hf_weights(small, renumbered, arch.replace(num_layers=2))
    want = full_logits(small, tokens, arch.vocab_size)
    before = [id(m) for m in model.decoder.layers]
    with skip_layers(model, drop):
        got = full_logits(model, tokens, arch.vocab_size)
        assert len(model.decoder.layers) == 2
    assert torch.equal(got, want)
    assert [id(m) for m in model.decoder.layers] == before  # restored, same modules
    with pytest.raises(ValueError, match="must lie in 0..3"):
        with skip_layers(model, [4]):
            pass
