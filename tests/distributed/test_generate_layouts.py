"""`minitron generate` at TP=2 and PP=2 equals TP=1 on a tiny model (greedy, batched prompts of
different lengths, a stop string), and each run reports the layout it used."""

import json

import pytest
from test_cli_torchrun import launch

from helpers import minitron

pytestmark = pytest.mark.distributed

PROMPTS = [
    "The fox",
    "Yesterday the market fell and the minister said that",
    "Rain",
    "A new report on the city's budget",
    "Scientists",
    "The quick brown fox jumps over",
]


@pytest.fixture(scope="module")
def setup(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    (root / "p.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    minitron(["import", "--hf", str(tiny_models["llama-untied"]), "--out", str(root / "ck")])
    return root


def _run(setup, name, layout=None):
    out = setup / f"{name}.jsonl"
    args = [
        "generate",
        "--model",
        str(setup / "ck"),
        "--input",
        str(setup / "p.jsonl"),
        "--out",
        str(out),
        "batch_size=4",
        "sampling.max_new_tokens=12",
        'sampling.stop=["ing"]',
    ]
    res = launch(2, args + [layout]) if layout else minitron(args)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    return res.stdout, rows


@pytest.mark.parametrize("layout,expect", [("tp=2", "tp=2 pp=1 dp=1"), ("pp=2", "tp=1 pp=2 dp=1")])
def test_generate_layout_equals_tp1(setup, layout, expect):
    log1, ref = _run(setup, "tp1")
    assert "layout tp=1 pp=1 dp=1" in log1
    log2, got = _run(setup, layout.replace("=", ""), layout)
    assert f"layout {expect}" in log2
    assert len(ref) == len(got) == len(PROMPTS)
    keys = ("id", "completion", "prompt_tokens", "completion_tokens", "finish")
    assert [[r[k] for k in keys] for r in got] == [[r[k] for k in keys] for r in ref]
    assert len({r["prompt_tokens"] for r in ref}) >= 5 and any(r["completion_tokens"] for r in ref)
