"""`minitron eval` and `minitron lm-eval` at TP=2 and PP=2 equal TP=1 on a tiny model."""

import json

import pytest
from test_cli_torchrun import data, launch  # noqa: F401  (fixture and launcher shared)

from helpers import minitron, read_json, write_lm_eval_task

pytestmark = pytest.mark.distributed

ITEMS = [
    {"context": f"Item {i}: the fox", "choices": ["ran", "jumped over it", "sat"], "gold": i % 3}
    for i in range(20)
]


@pytest.fixture(scope="module")
def setup(tiny_models, data, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("evl")
    (root / "items.jsonl").write_text("\n".join(json.dumps(r) for r in ITEMS) + "\n")
    (root / "eval.yaml").write_text(f"""
tasks:
  - {{name: generic, path: {root / "items.jsonl"}, num_fewshot: 2}}
  - {{name: winogrande, path: "builtin:winogrande", limit: 16, num_fewshot: 1}}
loss:
  - name: stories
    data: {{paths: [{data}], seq_length: 32, split: "90,10,0"}}
    num_samples: 6
batch_size: 5
progress: false
""")
    minitron(["import", "--hf", str(tiny_models["llama-tied"]), "--out", str(root / "ck")])
    minitron(
        [
            "eval",
            "--config",
            str(root / "eval.yaml"),
            "--model",
            str(root / "ck"),
            "--out",
            str(root / "tp1.json"),
        ]
    )
    return root


@pytest.mark.parametrize("layout", ["tp=2", "pp=2"])
def test_eval_layout_equals_tp1(setup, layout):
    out = setup / f"{layout.replace('=', '')}.json"
    launch(
        2,
        [
            "eval",
            "--config",
            str(setup / "eval.yaml"),
            "--model",
            str(setup / "ck"),
            layout,
            "--out",
            str(out),
        ],
    )
    ref, got = read_json(setup / "tp1.json"), read_json(out)
    assert [(r["task"], r["metric"], r["n"]) for r in ref] == [
        (r["task"], r["metric"], r["n"]) for r in got
    ]
    for a, b in zip(ref, got):
        assert abs(a["value"] - b["value"]) <= 1e-5, (a, b)
    assert got[0]["layout"] == ({"tp": 2, "pp": 1} if layout == "tp=2" else {"tp": 1, "pp": 2})


def test_lm_eval_adapter_at_tp2(setup):
    pytest.importorskip("lm_eval")
    tasks = write_lm_eval_task(setup / "lm_tasks", "gen_mc", setup / "items.jsonl")
    args = [
        "lm-eval",
        "--model",
        str(setup / "ck"),
        "--tasks",
        "gen_mc",
        "--include-path",
        str(tasks),
    ]
    minitron(args + ["--out", str(setup / "lm1.json")], timeout=900)
    launch(2, args + ["tp=2", "--out", str(setup / "lm2.json")])
    a = read_json(setup / "lm1.json")["gen_mc"]["acc,none"]
    b = read_json(setup / "lm2.json")["gen_mc"]["acc,none"]
    assert a == b
