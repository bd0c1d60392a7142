"""Sub-commands run the same under torchrun: import at TP=2 and loss at TP=2 / PP=2 equal TP=1."""

import json
import subprocess
import sys

import pytest

from helpers import ROOT, clean_env, free_port, minitron, read_json, search_args

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def data(tiny_tokenizer, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    corpus = root / "c.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"text": f"Story {i}: the fox ran past {i} trees."}) for i in range(300)
        )
    )
    minitron(
        [
            "data",
            "prepare",
            "--input",
            str(corpus),
            "--tokenizer",
            str(tiny_tokenizer),
            "--out",
            str(root / "prepared"),
        ]
    )
    return root / "prepared"


def launch(nproc, args):
    """launch/torchrun.sh, as a user runs it."""
    env = clean_env(
        MASTER_PORT=str(free_port()),
        OMP_NUM_THREADS="1",
        PATH=f"{sys.executable.rsplit('/', 1)[0]}:" + clean_env()["PATH"],
    )
    res = subprocess.run(
        ["bash", str(ROOT / "launch" / "torchrun.sh"), str(nproc), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return res


def test_import_and_loss_under_torchrun(tiny_models, data, tmp_path):
    loss_args = [
        f"data.paths=[{data}]",
        "data.seq_length=32",
        "num_samples=6",
        "micro_batch_size=2",
        "data.split=90,10,0",
    ]
    launch(
        2,
        [
            "import",
            "--hf",
            str(tiny_models["llama-tied"]),
            "--out",
            str(tmp_path / "ck"),
            "--tp",
            "2",
        ],
    )
    assert read_json(tmp_path / "ck" / "manifest.json")["saved_layout"]["tp"] == 2
    minitron(["loss", "--model", str(tmp_path / "ck"), *loss_args, f"out={tmp_path}/tp1.json"])
    launch(
        2, ["loss", "--model", str(tmp_path / "ck"), "tp=2", *loss_args, f"out={tmp_path}/tp2.json"]
    )
    launch(
        2, ["loss", "--model", str(tmp_path / "ck"), "pp=2", *loss_args, f"out={tmp_path}/pp2.json"]
    )
    ref = read_json(tmp_path / "tp1.json")
    for name in ("tp2", "pp2"):
        other = read_json(tmp_path / f"{name}.json")
        assert other["tokens"] == ref["tokens"] == 6 * 32
        assert abs(other["loss"] - ref["loss"]) <= 1e-5, name


def test_search_under_torchrun_ranks_as_one_process(tiny_models, calib, tmp_path):
    """`minitron search` at TP=2 (every rank prunes, scores and distils its shard of each
    model; rank 0 writes the ranking) finds the same candidates, with the same losses, as
    one process."""
    teacher = tiny_models["llama-untied"]
    minitron(search_args(teacher, calib, tmp_path / "tp1"), timeout=1200)
    launch(2, search_args(teacher, calib, tmp_path / "tp2", "tp=2"))
    one, two = (read_json(tmp_path / d / "ranking.json") for d in ("tp1", "tp2"))
    by_name = {c["name"]: c for c in two["candidates"]}
    assert sorted(by_name) == sorted(c["name"] for c in one["candidates"]) and len(by_name) == 4
    for c in one["candidates"]:
        other = by_name[c["name"]]
        assert abs(other["zero_shot"] - c["zero_shot"]) <= 1e-4, c["name"]
        assert abs(other["distilled"] - c["distilled"]) <= 1e-4, c["name"]
