"""The embedded real model: SmolLM2-135M through the real CLI, at TP=1 and resharded to PP=2."""

from pathlib import Path

import pytest
import torch

from helpers import hf_logits, minitron, torchrun

pytestmark = pytest.mark.slow
WORKER = str(Path(__file__).parents[1] / "distributed" / "worker.py")
TEXT = (
    "Hundreds of people have been forced to vacate their homes in the Southern Highlands of "
    "New South Wales as strong winds today pushed a huge bushfire towards the town of Hill Top."
)


@pytest.fixture(scope="module")
def smol_ckpt(smollm2_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("smol") / "ckpt"
    res = minitron(["import", "--hf", "smollm2-135m", "--out", str(out)])
    assert "wrote" in res.stdout
    return out


@pytest.fixture(scope="module")
def tokens(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)(TEXT, return_tensors="pt").input_ids


def test_tp1_logits_equal_transformers_on_real_text(smol_ckpt, smollm2_dir, tokens, world):
    from minitron.checkpoint.load import load_model
    from minitron.eval.logits import full_logits

    model, arch, _ = load_model(str(smol_ckpt))
    ours = full_logits(model, tokens, arch.vocab_size)
    ref = hf_logits(smollm2_dir, tokens)
    assert (ours - ref).abs().max().item() <= 1e-3
    assert torch.equal(ours.argmax(-1), ref.argmax(-1))


@pytest.mark.distributed
def test_tp1_checkpoint_loads_at_pp2(smol_ckpt, smollm2_dir, tokens, tmp_path, world):
    from minitron.checkpoint.load import load_model
    from minitron.eval.logits import full_logits

    torch.save(tokens, tmp_path / "t.pt")
    torchrun(
        2,
        [
            WORKER,
            "--pp",
            "2",
            "--tokens",
            str(tmp_path / "t.pt"),
            "--out",
            str(tmp_path / "r.pt"),
            "--load",
            str(smol_ckpt),
        ],
    )
    pp2 = torch.load(tmp_path / "r.pt")["load:ckpt"]
    model, arch, _ = load_model(str(smol_ckpt))
    tp1 = full_logits(model, tokens, arch.vocab_size)
    assert (pp2 - tp1).abs().max().item() <= 1e-4
    assert (pp2 - hf_logits(smollm2_dir, tokens)).abs().max().item() <= 1e-3


def test_export_loads_in_transformers(smol_ckpt, smollm2_dir, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    minitron(["export", "--ckpt", str(smol_ckpt), "--format", "hf", "--out", str(tmp_path / "hf")])
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    assert model.config.num_hidden_layers == 30 and model.config.tie_word_embeddings
    assert AutoTokenizer.from_pretrained(tmp_path / "hf")("hello").input_ids
    a = load_file(str(smollm2_dir / "model.safetensors"))
    b = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_pruned_smollm2_exports_and_matches_transformers(
    smol_ckpt, smollm2_dir, tokens, tmp_path, world
):
    """Width (magnitude) and depth (lm_loss) pruning of the real model, exported to HF."""
    from transformers import AutoModelForCausalLM

    from minitron.checkpoint.load import load_model
    from minitron.eval.logits import full_logits

    data = tmp_path / "data"
    minitron(
        [
            "data",
            "prepare",
            "--input",
            "builtin:news",
            "--tokenizer",
            str(smol_ckpt),
            "--out",
            str(data),
            "eod_token=<|endoftext|>",
        ]
    )
    out = tmp_path / "pruned"
    minitron(
        [
            "prune",
            "--model",
            str(smol_ckpt),
            "--out",
            str(out),
            "width_method=magnitude",
            "target.hidden_size=384",
            "target.ffn_hidden_size=1024",
            "target.num_attention_heads=6",
            "target.num_layers=24",
            "depth.criterion=lm_loss",
            "depth.loss={name: news, data: {paths: [" + str(data) + "], seq_length: 64}, "
            "num_samples: 2}",
        ]
    )
    minitron(["export", "--ckpt", str(out), "--out", str(tmp_path / "hf")])
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    cfg = hf.config
    assert (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.num_hidden_layers,
        cfg.head_dim,
    ) == (384, 1024, 6, 3, 24, 64)
    model, arch, _ = load_model(str(out))
    ours = full_logits(model, tokens, arch.vocab_size)
    with torch.no_grad():
        ref = hf(tokens).logits
    assert (ours - ref).abs().max().item() <= 1e-3
