"""TP=2, PP=2 and TP2xPP2 (gloo) equal transformers and TP=1; checkpoints reshard."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minitron.config import loader, schema
from minitron.recipes import export, import_hf

from helpers import hf_logits, torchrun

pytestmark = pytest.mark.distributed
WORKER = str(Path(__file__).with_name("worker.py"))
VARIANTS = ("llama-untied", "llama-tied", "mistral-headdim", "llama31-rope")
TOKENS = torch.randint(0, 300, (2, 20), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def tp1_ckpt(tiny_models, tmp_path_factory, world):
    out = tmp_path_factory.mktemp("tp1") / "llama-tied-tp1"
    import_hf.main(
        loader.load(
            schema.ImportConfig, values={"hf": str(tiny_models["llama-tied"]), "out": str(out)}
        ),
        log=lambda s: None,
    )
    return out


@pytest.mark.parametrize("tp,pp", [(2, 1), (1, 2), (2, 2)])
def test_layout_equals_transformers_and_round_trips(tp, pp, tiny_models, tp1_ckpt, tmp_path, world):
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
            "--load",
            str(tp1_ckpt),
            "--hf",
            *(str(tiny_models[v]) for v in VARIANTS),
        ],
    )
    res = torch.load(tmp_path / "r.pt")
    assert res["layout"] == {"tp": tp, "pp": pp, "dp": 1}
    assert sum(k.startswith("ckpt:") for k in res) == len(VARIANTS)
    for v in VARIANTS:
        ref = hf_logits(tiny_models[v], TOKENS)
        for kind in ("mem", "ckpt"):
            diff = (res[f"{kind}:{v}"] - ref).abs().max().item()
            assert diff <= 1e-4, f"{kind}:{v} at tp={tp} pp={pp}: {diff}"
        # saved at this layout, exported at TP=1: the HF tensors come back bit for bit
        export.main(
            loader.load(
                schema.ExportConfig,
                values={"ckpt": str(tmp_path / "ck" / v), "out": str(tmp_path / "hf" / v)},
            ),
            log=lambda s: None,
        )
        a = load_file(str(tiny_models[v] / "model.safetensors"))
        b = load_file(str(tmp_path / "hf" / v / "model.safetensors"))
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a), v
    # a checkpoint saved at TP=1 loads at this layout with the same logits
    assert res["saved_layout:llama-tied-tp1"]["tp"] == 1
    diff = (res["load:llama-tied-tp1"] - hf_logits(tiny_models["llama-tied"], TOKENS)).abs().max()
    assert diff.item() <= 1e-4
