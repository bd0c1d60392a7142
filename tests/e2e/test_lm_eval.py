"""The lm-eval adapter runs a local jsonl task offline and agrees with minitron's own evaluator."""

import json

import pytest

from helpers import minitron, read_json, write_lm_eval_task

lm_eval = pytest.importorskip("lm_eval")

ITEMS = [
    {
        "context": f"Question {i}: which word follows the fox?",
        "choices": ["ran", "jumped over", "sat", "flew away quickly"],
        "gold": i % 4,
    }
    for i in range(24)
]


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("lmeval_tasks")
    data = d / "items.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ITEMS) + "\n")
    write_lm_eval_task(d, "tiny_mc", data)
    return d


def test_lm_eval_task_matches_minitron_eval(tiny_models, task_dir, tmp_path):
    model = str(tiny_models["llama-untied"])
    minitron(
        [
            "lm-eval",
            "--model",
            model,
            "--tasks",
            "tiny_mc",
            "--include-path",
            str(task_dir),
            "--out",
            str(tmp_path / "lm.json"),
        ],
        timeout=900,
    )
    theirs = read_json(tmp_path / "lm.json")["tiny_mc"]
    minitron(
        [
            "eval",
            "--model",
            model,
            "--task",
            str(task_dir / "items.jsonl"),
            "--out",
            str(tmp_path / "ours.json"),
            "progress=false",
        ]
    )
    ours = {r["metric"]: r["value"] for r in read_json(tmp_path / "ours.json")}
    assert theirs["acc,none"] == pytest.approx(ours["acc"])
    assert theirs["acc_norm,none"] == pytest.approx(ours["acc_norm"])


def test_unknown_task_is_a_clear_error(tiny_models, task_dir):
    res = minitron(
        [
            "lm-eval",
            "--model",
            str(tiny_models["llama-untied"]),
            "--tasks",
            "nope_task",
            "--include-path",
            str(task_dir),
        ],
        check=False,
        timeout=900,
    )
    assert res.returncode == 2 and "unknown lm-eval task(s): nope_task" in res.stderr
