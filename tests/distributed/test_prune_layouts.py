"""Scores and pruned models at TP=2 and PP=2 equal those at TP=1 (tiny model, gloo)."""

import pytest
import torch
from safetensors.torch import load_file
from test_cli_torchrun import launch

from helpers import minitron, read_json

pytestmark = pytest.mark.distributed
# what a 2-rank run must report for each override (a dropped override would run DP=2)
LAYOUTS = {"tp=2": {"tp": 2, "pp": 1, "dp": 1}, "pp=2": {"tp": 1, "pp": 2, "dp": 1}}
TARGET = [
    "target.hidden_size=48",
    "target.ffn_hidden_size=64",
    "target.num_attention_heads=2",
    "target.num_query_groups=2",
]


@pytest.fixture(scope="module")
def tp1(tiny_models, calib, tmp_path_factory):
    root = tmp_path_factory.mktemp("prune_tp1")
    src = tiny_models["llama-untied"]
    minitron(
        [
            "score",
            "--model",
            str(src),
            "--out",
            str(root / "scores"),
            f"data.paths=[{calib}]",
            "data.seq_length=16",
            "num_samples=8",
            "progress=false",
        ]
    )
    minitron(
        [
            "prune",
            "--model",
            str(src),
            "--scores",
            str(root / "scores"),
            "--out",
            str(root / "pruned"),
            *TARGET,
        ]
    )
    minitron(["export", "--ckpt", str(root / "pruned"), "--out", str(root / "pruned_hf")])
    return src, root


@pytest.mark.parametrize("layout", ["tp=2", "pp=2"])
def test_scores_and_pruned_model_equal_tp1(layout, tp1, calib, tmp_path):
    src, root = tp1
    launch(
        2,
        [
            "score",
            "--model",
            str(src),
            "--out",
            str(tmp_path / "scores"),
            layout,
            f"data.paths=[{calib}]",
            "data.seq_length=16",
            "num_samples=8",
            "progress=false",
        ],
    )
    a = load_file(str(root / "scores" / "scores.safetensors"))
    b = load_file(str(tmp_path / "scores" / "scores.safetensors"))
    assert read_json(tmp_path / "scores" / "scores.json")["scored_layout"] == LAYOUTS[layout]
    assert sorted(a) == sorted(b) and len(a) > 10
    for k in a:
        if k == "blocks.block_influence":
            continue  # only the diagonal is measured without block_scores
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    # prune at this layout with the TP=1 scores: the exported tensors are the TP=1 ones, bit for bit
    launch(
        2,
        [
            "prune",
            "--model",
            str(src),
            "--scores",
            str(root / "scores"),
            "--out",
            str(tmp_path / "pruned"),
            layout,
            *TARGET,
        ],
    )
    saved = read_json(tmp_path / "pruned" / "manifest.json")["saved_layout"]
    assert {k: saved[k] for k in ("tp", "pp", "dp")} == LAYOUTS[layout]
    minitron(["export", "--ckpt", str(tmp_path / "pruned"), "--out", str(tmp_path / "hf")])
    want = load_file(str(root / "pruned_hf" / "model.safetensors"))
    got = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert sorted(got) == sorted(want) and all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("layout", ["tp=2", "pp=2"])
def test_width_and_depth_pruned_at_layout_exports_to_hf(layout, tp1, tmp_path, world):
    """Pruned at TP=2 / PP=2, exported: transformers' logits equal megatron-core's."""
    from transformers import AutoModelForCausalLM

    from minitron.checkpoint.load import load_model
    from minitron.eval.logits import full_logits

    src, root = tp1
    launch(
        2,
        [
            "prune",
            "--model",
            str(src),
            "--scores",
            str(root / "scores"),
            "--out",
            str(tmp_path / "p"),
            layout,
            *TARGET,
            "target.num_layers=2",
            "depth.criterion=block_influence",
            "depth.contiguous=false",
        ],
    )
    saved = read_json(tmp_path / "p" / "manifest.json")["saved_layout"]
    assert {k: saved[k] for k in ("tp", "pp", "dp")} == LAYOUTS[layout]
    minitron(["export", "--ckpt", str(tmp_path / "p"), "--out", str(tmp_path / "hf")])
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    assert (hf.config.hidden_size, hf.config.num_hidden_layers) == (48, 2)
    tokens = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(5))
    model, arch, _ = load_model(str(tmp_path / "p"))
    with torch.no_grad():
        ref = hf(tokens).logits
    assert (full_logits(model, tokens, arch.vocab_size) - ref).abs().max().item() <= 1e-4
