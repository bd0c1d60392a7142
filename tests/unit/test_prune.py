"""Pruning: identity, exact survivors for hand-made scores, depth choices, score estimators."""

import pytest
import torch
from safetensors.torch import load_file

from minitron.config import loader, schema
from minitron.config import prune as prune_schema
from minitron.errors import ConfigError
from minitron.prune.depth import search
from minitron.prune.scores import save_scores
from minitron.prune.width import select_heads, select_topk

from helpers import minitron, read_json


def test_selection_is_topk_in_original_order():
    assert select_topk(torch.tensor([0.1, 0.9, 0.5, 0.7]), 2).tolist() == [1, 3]
    assert select_topk(torch.tensor([1.0, 1.0, 1.0]), 2).tolist() == [0, 1]  # ties: lower index
    # 2 groups x 3 heads; group 1 scores higher in total, keep its 2 best heads
    groups, slots = select_heads(torch.tensor([1.0, 1.0, 1.0, 5.0, 0.0, 4.0]), 2, 1, 2)
    assert groups.tolist() == [1] and slots.tolist() == [[0, 2]]


def test_depth_search_contiguous_and_not():
    acc = {0: 0.50, 1: 0.60, 2: 0.55, 3: 0.52}
    r = search(4, 2, "task", True, evaluate=lambda layers: acc[layers[0]])
    assert r["drop"] == [1, 2] and len(r["candidates"]) == 3
    loss = {0: 3.0, 1: 1.0, 2: 2.0, 3: 1.5}
    r = search(4, 2, "lm_loss", False, evaluate=lambda layers: loss[layers[0]])
    assert r["drop"] == [1, 3] and r["keep"] == [0, 2]
    bi = {
        "layers.block_influence": torch.tensor([0.3, 0.1, 0.2, 0.05]),
        "blocks.block_influence": torch.tensor(
            [[0.3, 0.5, 0.9, 1.0], [0, 0.1, 0.25, 0.4], [0, 0, 0.2, 0.22], [0, 0, 0, 0.05]]
        ),
    }
    assert search(4, 2, "block_influence", True, influence=bi)["drop"] == [2, 3]
    assert search(4, 2, "block_influence", False, influence=bi)["drop"] == [1, 3]


def _prune(model, out, *overrides):
    minitron(["prune", "--model", str(model), "--out", str(out), *overrides])
    minitron(["export", "--ckpt", str(out), "--out", str(out) + "_hf"])
    return load_file(str(out) + "_hf/model.safetensors")


def test_identity_target_changes_nothing(tiny_models, tmp_path):
    src = tiny_models["llama-tied"]
    got = _prune(src, tmp_path / "p", "target.hidden_size=64", "width_method=random")
    want = load_file(str(src / "model.safetensors"))
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_hand_made_scores_keep_exactly_the_expected_units(tiny_models, tmp_path, world):
    from minitron.models.arch import load_arch

    src = tiny_models["llama-untied"]
    arch = load_arch(src)  # hidden 64, ffn 128, 4 heads in 2 groups, head_dim 16, 4 layers
    chans = [3, 10, 17, 40, 41, 63] + list(range(20, 30))  # 16 channels to keep
    scores = {"channels": torch.zeros(64)}
    scores["channels"][chans] = 1 + torch.arange(len(chans), dtype=torch.float)
    keep_neurons = {
        i: sorted(torch.randperm(128, generator=torch.Generator().manual_seed(i))[:32].tolist())
        for i in range(4)
    }
    for i in range(4):
        heads = torch.tensor([0.1, 0.2, 0.9, 0.3])  # group 1 wins; within it head slot 0 (id 2)
        scores[f"layers.{i}.heads"] = heads
        neurons = torch.zeros(128)
        neurons[keep_neurons[i]] = 1.0
        scores[f"layers.{i}.neurons"] = neurons
    save_scores(tmp_path / "s", scores, arch, {"method": "hand-made"})
    got = _prune(
        src,
        tmp_path / "p",
        f"scores={tmp_path / 's'}",
        "target.hidden_size=16",
        "target.ffn_hidden_size=32",
        "target.num_attention_heads=1",
        "target.num_query_groups=1",
    )
    want = load_file(str(src / "model.safetensors"))
    ch = torch.tensor(sorted(chans))
    assert torch.equal(got["model.embed_tokens.weight"], want["model.embed_tokens.weight"][:, ch])
    assert torch.equal(got["lm_head.weight"], want["lm_head.weight"][:, ch])
    assert torch.equal(got["model.norm.weight"], want["model.norm.weight"][ch])
    for i in range(4):
        p = f"model.layers.{i}."
        n = torch.tensor(keep_neurons[i])
        q = want[p + "self_attn.q_proj.weight"]
        assert torch.equal(got[p + "self_attn.q_proj.weight"], q[32:48][:, ch])  # head 2 only
        assert torch.equal(
            got[p + "self_attn.k_proj.weight"], want[p + "self_attn.k_proj.weight"][16:32][:, ch]
        )  # group 1's K
        assert torch.equal(
            got[p + "self_attn.o_proj.weight"], want[p + "self_attn.o_proj.weight"][ch][:, 32:48]
        )
        assert torch.equal(
            got[p + "mlp.gate_proj.weight"], want[p + "mlp.gate_proj.weight"][n][:, ch]
        )
        assert torch.equal(got[p + "mlp.up_proj.weight"], want[p + "mlp.up_proj.weight"][n][:, ch])
        assert torch.equal(
            got[p + "mlp.down_proj.weight"], want[p + "mlp.down_proj.weight"][ch][:, n]
        )
        assert torch.equal(
            got[p + "input_layernorm.weight"], want[p + "input_layernorm.weight"][ch]
        )


def test_depth_prune_renumbers_layers(tiny_models, tmp_path, calib):
    src = tiny_models["llama-untied"]
    out = tmp_path / "d"
    got = _prune(
        src,
        out,
        "target.num_layers=2",
        "depth.criterion=lm_loss",
        "depth.loss={name: c, data: {paths: [" + str(calib) + "], seq_length: 16, "
        "split: '80,20,0'}, num_samples: 4}",
    )
    depth = read_json(out / "manifest.json")["extra"]["depth"]
    assert len(depth["candidates"]) == 3 and len(depth["keep"]) == 2
    best = min(depth["candidates"], key=lambda c: c["lm_loss"])
    assert depth["drop"] == best["layers"]
    want = load_file(str(src / "model.safetensors"))
    for new, old in enumerate(depth["keep"]):
        assert torch.equal(
            got[f"model.layers.{new}.mlp.down_proj.weight"],
            want[f"model.layers.{old}.mlp.down_proj.weight"],
        )


@pytest.mark.parametrize(
    "bad,field,text",
    [
        (
            ["target.num_attention_heads=3"],
            "target.num_attention_heads",
            "multiple of num_query_groups=2",
        ),
        (["target.hidden_size=128"], "target.hidden_size", "between 1 and the current 64"),
        (["target.num_layers=3", "pp=2"], "pp", "must divide num_layers=3"),
        (["target.ffn_hidden_size=64"], "scores", "needs scores"),
    ],
)
def test_bad_targets_fail_before_work(tiny_models, tmp_path, bad, field, text):
    res = minitron(
        ["prune", "--model", str(tiny_models["llama-untied"]), "--out", str(tmp_path / "x"), *bad],
        check=False,
    )
    assert res.returncode == 2 and f"error: {field}: " in res.stderr and text in res.stderr, (
        res.stderr
    )


def test_activation_scores_equal_an_independent_computation(tiny_models, calib, tmp_path, world):
    """Neurons, heads and channels from transformers hooks, aggregated by hand."""
    from transformers import AutoModelForCausalLM

    from minitron.data.datasets import samples

    src = tiny_models["llama-untied"]
    minitron(
        [
            "score",
            "--model",
            str(src),
            "--out",
            str(tmp_path / "s"),
            f"data.paths=[{calib}]",
            "data.seq_length=16",
            "num_samples=8",
            "progress=false",
        ]
    )
    ours = load_file(str(tmp_path / "s" / "scores.safetensors"))
    dc = loader.load(schema.DataConfig, values={"paths": [str(calib)], "seq_length": 16})
    tokens = samples(dc, "train", 8, 300)["tokens"]
    hf = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    seen = {}
    hooks = []
    for i, layer in enumerate(hf.model.layers):
        hooks.append(
            layer.mlp.down_proj.register_forward_pre_hook(
                lambda m, a, i=i: seen.__setitem__(f"n{i}", a[0])
            )
        )
        hooks.append(
            layer.self_attn.o_proj.register_forward_pre_hook(
                lambda m, a, i=i: seen.__setitem__(f"h{i}", a[0])
            )
        )
        for j, norm in enumerate((layer.input_layernorm, layer.post_attention_layernorm)):
            hooks.append(
                norm.register_forward_hook(lambda m, a, o, k=f"c{i}{j}": seen.__setitem__(k, o))
            )
    hooks.append(hf.model.norm.register_forward_hook(lambda m, a, o: seen.__setitem__("cf", o)))
    with torch.no_grad():
        hf(tokens)

    def agg(x):  # [b, s, n] magnitudes: mean over the sequence, L2 over the batch
        return x.mean(1).pow(2).sum(0).sqrt()

    channels = sum(agg(v.abs()) for k, v in seen.items() if k.startswith("c"))
    torch.testing.assert_close(ours["channels"], channels, rtol=1e-4, atol=1e-5)
    for i in range(4):
        torch.testing.assert_close(
            ours[f"layers.{i}.neurons"], agg(seen[f"n{i}"].abs()), rtol=1e-4, atol=1e-6
        )
        b, s, _ = seen[f"h{i}"].shape
        heads = seen[f"h{i}"].reshape(b, s, 4, 16).norm(dim=-1)
        torch.testing.assert_close(ours[f"layers.{i}.heads"], agg(heads), rtol=1e-4, atol=1e-6)


def test_block_influence_equals_an_independent_computation(tiny_models, calib, tmp_path, world):
    """Block Influence of every layer and every contiguous block, ``1 - cos`` between the
    block's input and output hidden states taken from transformers, averaged over tokens."""
    from transformers import AutoModelForCausalLM

    from minitron.data.datasets import samples

    src = tiny_models["llama-untied"]
    minitron(
        [
            "score",
            "--model",
            str(src),
            "--out",
            str(tmp_path / "s"),
            "block_scores=true",
            f"data.paths=[{calib}]",
            "data.seq_length=16",
            "num_samples=8",
            "progress=false",
        ]
    )
    ours = load_file(str(tmp_path / "s" / "scores.safetensors"))
    dc = loader.load(schema.DataConfig, values={"paths": [str(calib)], "seq_length": 16})
    tokens = samples(dc, "train", 8, 300)["tokens"]
    hf = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    outs = {}
    hooks = [
        layer.register_forward_hook(
            lambda m, a, o, i=i: outs.__setitem__(i, o[0] if isinstance(o, tuple) else o)
        )
        for i, layer in enumerate(hf.model.layers)
    ]
    with torch.no_grad():
        hidden = hf(tokens, output_hidden_states=True).hidden_states  # [i]: layer i's input
    for h in hooks:
        h.remove()
    L = len(hf.model.layers)
    want = torch.full((L, L), float("nan"))
    for s in range(L):
        for e in range(s, L):
            cos = torch.nn.functional.cosine_similarity(
                hidden[s].double(), outs[e].double(), dim=-1
            )
            want[s, e] = (1 - cos).mean().float()
    torch.testing.assert_close(
        ours["blocks.block_influence"], want, rtol=1e-4, atol=1e-6, equal_nan=True
    )
    torch.testing.assert_close(
        ours["layers.block_influence"], want.diagonal(), rtol=1e-4, atol=1e-6
    )
    assert ours["blocks.block_influence"].isnan().sum() == L * (L - 1) // 2  # e < s: no block


def test_magnitude_scores_match_weights(tiny_models, tmp_path):
    src = tiny_models["llama-untied"]
    minitron(["score", "--model", str(src), "--out", str(tmp_path / "m"), "method=magnitude"])
    s = load_file(str(tmp_path / "m" / "scores.safetensors"))
    w = load_file(str(src / "model.safetensors"))
    p = "model.layers.1."
    neuron5 = (
        w[p + "mlp.gate_proj.weight"][5].pow(2).sum()
        + w[p + "mlp.up_proj.weight"][5].pow(2).sum()
        + w[p + "mlp.down_proj.weight"][:, 5].pow(2).sum()
    ).sqrt()
    assert s["layers.1.neurons"][5].item() == pytest.approx(neuron5.item(), rel=1e-5)
    head3 = (
        w[p + "self_attn.q_proj.weight"][48:64].pow(2).sum()
        + w[p + "self_attn.o_proj.weight"][:, 48:64].pow(2).sum()
    ).sqrt()
    assert s["layers.1.heads"][3].item() == pytest.approx(head3.item(), rel=1e-5)


def test_target_config_requires_something():
    with pytest.raises(ConfigError, match="set at least one"):
        loader.load(prune_schema.PruneConfig, values={"model": "m", "out": "/nonexistent/x"})
