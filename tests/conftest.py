import os
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", message=".*(Apex|Transformer Engine).*not installed.*")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_tokenizer):
    """{variant: HF directory} for every tiny variant, each with the tiny tokenizer."""
    import shutil

    from helpers import VARIANTS, make_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for v in VARIANTS:
        out[v] = make_tiny_model(root / v, v)
        for f in tiny_tokenizer.iterdir():
            shutil.copy2(f, out[v] / f.name)
    return out


@pytest.fixture(scope="session")
def smollm2_dir():
    """The embedded SmolLM2-135M as a HF directory (converted once per machine)."""
    from minitron.models.sources import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def world():
    """A one-process torch.distributed + megatron-core world (TP=1, PP=1) for in-process tests."""
    from minitron.cli import quiet_megatron
    from minitron.parallel import runtime

    quiet_megatron()
    return runtime.init(1, 1)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from helpers import make_tiny_tokenizer

    return make_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="session")
def calib(tiny_tokenizer, tmp_path_factory):
    """A small prepared corpus in the tiny tokenizer (calibration and held-out text)."""
    import json

    from helpers import minitron

    root = tmp_path_factory.mktemp("calib")
    rows = [json.dumps({"text": f"Story {i}: the quick brown fox jumps over {i} lazy dogs."})
            for i in range(300)]
    (root / "c.jsonl").write_text("\n".join(rows))
    minitron(["data", "prepare", "--input", str(root / "c.jsonl"), "--tokenizer",
              str(tiny_tokenizer), "--out", str(root / "data")])
    return root / "data"
