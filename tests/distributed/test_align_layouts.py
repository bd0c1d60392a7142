"""A preference step (and packed SFT) at TP=2 / PP=2 equals TP=1 on a tiny model."""

import csv
import json

import pytest
from test_cli_torchrun import launch

from helpers import minitron, read_json

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("align")
    pref = [
        {
            "prompt": f"Colour of item {i}?",
            "chosen": f"It is red {i}.",
            "rejected": f"It is blue {i}.",
            "chosen_reward": 1.0,
            "rejected_reward": 0.3,
        }
        for i in range(16)
    ]
    sft = [
        {
            "messages": [
                {"role": "user", "content": f"Say {i}"},
                {"role": "assistant", "content": f"{i} {i} {i}"},
            ]
        }
        for i in range(16)
    ]
    (root / "pref.jsonl").write_text("\n".join(json.dumps(r) for r in pref))
    (root / "sft.jsonl").write_text("\n".join(json.dumps(r) for r in sft))
    return root


def args(model, out, data, algorithm):
    return [
        "align",
        "--model",
        str(model),
        "--out",
        str(out),
        "--data",
        str(data),
        "--algorithm",
        algorithm,
        f"valid_data={data}",
        "seq_length=48",
        "schedule.steps=2",
        "schedule.global_batch_size=4",
        "schedule.micro_batch_size=2",
        "optim.lr=1e-3",
        "optim.warmup_steps=1",
        "validation_samples=8",
        "progress=false",
        "tensorboard=false",
    ]


def rows(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    "algorithm,data,layout",
    [("rpo", "pref.jsonl", "tp=2"), ("dpo", "pref.jsonl", "pp=2"), ("sft", "sft.jsonl", "pp=2")],
)
def test_align_layout_equals_tp1(algorithm, data, layout, tiny_models, files, tmp_path):
    model = tiny_models["llama-tied"]
    minitron(args(model, tmp_path / "tp1", files / data, algorithm))
    launch(2, args(model, tmp_path / "other", files / data, algorithm) + [layout])
    ref, got = rows(tmp_path / "tp1"), rows(tmp_path / "other")
    assert len(ref) == len(got) > 0
    saved = read_json(tmp_path / "other" / "final" / "policy" / "manifest.json")["saved_layout"]
    assert (saved["tp"], saved["pp"], saved["dp"]) == ((2, 1, 1) if layout == "tp=2" else (1, 2, 1))
    for a, b in zip(ref, got):
        for key in ("loss", "grad_norm") + (
            ("reward_accuracy", "kl_to_reference") if algorithm != "sft" else ()
        ):
            assert abs(float(a[key]) - float(b[key])) <= 1e-5 * max(1.0, abs(float(a[key]))), key
