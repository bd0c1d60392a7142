"""Megatron-LM, Megatron-Bridge and NeMo 2 checkpoints read at TP=2, PP=2 and TP2xPP2 give the
source model's logits, in memory and imported at that layout."""

import shutil
from pathlib import Path

import pytest
import torch

from minitron.eval.logits import full_logits

import megatron_fixtures as fx
from helpers import make_tiny_model, make_tiny_tokenizer, torchrun

pytestmark = pytest.mark.distributed
WORKER = str(Path(__file__).with_name("worker.py"))
TOKENS = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(5))
KINDS = {
    "ours-tied": ("ours", "llama-tied"),  # minitron's own export --format megatron
    "mlm-untied": ("megatron_lm", "llama-untied"),
    "bridge-tied": ("bridge", "llama-tied"),
    "nemo-rope": ("nemo2", "llama31-rope"),
    "mlm-mcore-rope": ("megatron_lm", "llama31-mcore"),
}


def ours(hf, out):
    from minitron.config import loader, schema
    from minitron.recipes import export, import_hf

    ck = out.with_name(out.name + "-ck")
    import_hf.main(
        loader.load(schema.ImportConfig, values={"hf": str(hf), "out": str(ck)}), log=lambda s: None
    )
    export.main(
        loader.load(
            schema.ExportConfig, values={"ckpt": str(ck), "format": "megatron", "out": str(out)}
        ),
        log=lambda s: None,
    )
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory, world):
    """{name: (Megatron-family directory, source logits)}."""
    root = tmp_path_factory.mktemp("megsrc")
    tok = make_tiny_tokenizer(root / "tok")
    out = {}
    for name, (writer, variant) in KINDS.items():
        hf = make_tiny_model(root / f"hf-{variant}", variant)
        for f in tok.iterdir():
            shutil.copy2(f, hf / f.name)
        src = ours(hf, root / name) if writer == "ours" else getattr(fx, writer)(hf, root / name)
        model, arch = fx._model(hf, 384)
        out[name] = (src, full_logits(model, TOKENS, arch.vocab_size))
    return out


@pytest.mark.parametrize("tp,pp", [(2, 1), (1, 2), (2, 2)])
def test_megatron_sources_at_every_layout_give_the_source_logits(tp, pp, sources, tmp_path):
    torch.save(TOKENS, tmp_path / "tokens.pt")
    torchrun(
        tp * pp,
        [
            WORKER,
            "--tp",
            str(tp),
            "--pp",
            str(pp),
            "--tokens",
            str(tmp_path / "tokens.pt"),
            "--out",
            str(tmp_path / "r.pt"),
            "--ckpt-root",
            str(tmp_path / "ck"),
            "--megatron",
            *(str(src) for src, _ in sources.values()),
        ],
    )
    res = torch.load(tmp_path / "r.pt")
    assert res["layout"] == {"tp": tp, "pp": pp, "dp": 1}
    assert sum(k.startswith("megck:") for k in res) == len(sources)
    for name, (src, ref) in sources.items():
        for kind in ("meg", "megck"):
            diff = (res[f"{kind}:{src.name}"] - ref).abs().max().item()
            assert diff <= 1e-5, f"{kind}:{name} at tp={tp} pp={pp}: {diff}"
